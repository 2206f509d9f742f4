//! Dropout on the host: the keep-mask of a call, built on the CPU from the same Philox4x32-10
//! function the kernels use (`flashattn_kernels::philox`, re-exported here), in the layout the
//! f64 reference takes (`[batch, heads, seqlen_q, seqlen_k]`, `true` = kept).
//!
//! Element `(b, h, row, col)` is kept iff its random byte is `<= keep_threshold(p)`: Philox
//! with key = `seed` and counter = `[call_of(row, col), offset + b * heads + h (two words)]`;
//! see the `philox` module for the mapping and why. This is the oracle the kernels' dropout is
//! tested against.
//!
//! ```
//! use flashattn::dropout::{dropout_mask, reference_p};
//! use flashattn::reference::{self, RefOptions, Shape};
//! let shape = Shape { batch: 1, seqlen_q: 3, seqlen_k: 5, heads: 2, heads_kv: 1, head_dim: 4 };
//! let p = 0.25;
//! let mask = dropout_mask(&shape, p, 42, 0);
//! let opts = RefOptions { dropout: Some((&mask, reference_p(p))), ..RefOptions::new(4) };
//! let (q, kv) = (vec![0.5; shape.q_len()], vec![0.25; shape.kv_len()]);
//! let out = reference::forward(&q, &kv, &kv, &shape, &opts);
//! assert_eq!(out.o.len(), shape.q_len());
//! ```
pub use flashattn_kernels::philox::{
    byte_of, call_of, col_parity_half, dropout_keep, element_of, keep_bits_of, keep_probability, keep_threshold,
    philox4x32_10, row_parity_half, DropoutRng,
};

use crate::shape::Shape;

/// The keep-mask of a call, `[batch, heads, seqlen_q, seqlen_k]` row-major, `true` = kept: what
/// `RefOptions::dropout` takes (with [`reference_p`]`(p)`). `p` in `[0, 1)`; `p = 0` keeps all.
pub fn dropout_mask(shape: &Shape, p: f32, seed: u64, offset: u64) -> Vec<bool> {
    let threshold = keep_threshold(p);
    let (n_q, n_k) = (shape.seqlen_q, shape.seqlen_k);
    let mut mask = vec![false; shape.mask_len()];
    // One Philox call per 16 elements: the 16 calls of every 16 x 16 tile (padded at the edges).
    let (call_rows, call_cols) = (n_q.div_ceil(16) * 4, n_k.div_ceil(16) * 4);
    for b in 0..shape.batch {
        for h in 0..shape.heads {
            let rng = DropoutRng::new(seed, offset, b as u32, h as u32, shape.heads as u32);
            let head = &mut mask[(b * shape.heads + h) * n_q * n_k..][..n_q * n_k];
            for c1 in 0..call_rows as u32 {
                for c0 in 0..call_cols as u32 {
                    let bits = rng.keep_bits([c0, c1], threshold);
                    for k in 0..16 {
                        let (row, col) = element_of([c0, c1], k);
                        if (row as usize) < n_q && (col as usize) < n_k {
                            head[row as usize * n_k + col as usize] = (bits >> k) & 1 == 1;
                        }
                    }
                }
            }
        }
    }
    mask
}

/// The drop probability the reference must be given for a requested `p`: the kernels keep an
/// element with probability `keep_probability(keep_threshold(p))` (`1 - p` rounded to a multiple
/// of 1/256) and scale kept elements by its inverse, so the reference scales by the same.
pub fn reference_p(p: f32) -> f64 {
    1.0 - keep_probability(keep_threshold(p)) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> Shape {
        Shape { batch: 2, seqlen_q: 37, seqlen_k: 131, heads: 3, heads_kv: 1, head_dim: 8 }
    }

    #[test]
    fn mask_is_the_pure_function_of_each_element() {
        let s = shape();
        let (p, seed, offset) = (0.3, 0xfeed_beef_u64, 5);
        let mask = dropout_mask(&s, p, seed, offset);
        let t = keep_threshold(p);
        let mut i = 0;
        for b in 0..s.batch as u32 {
            for h in 0..s.heads as u32 {
                for row in 0..s.seqlen_q as u32 {
                    for col in 0..s.seqlen_k as u32 {
                        assert_eq!(mask[i], dropout_keep(seed, offset, b, h, s.heads as u32, row, col, t));
                        i += 1;
                    }
                }
            }
        }
        assert_eq!(i, mask.len());
    }

    #[test]
    fn p_zero_keeps_everything_and_reference_p_is_exact_for_halves() {
        assert!(dropout_mask(&shape(), 0.0, 1, 2).iter().all(|&k| k));
        assert_eq!(reference_p(0.0), 0.0);
        assert_eq!(reference_p(0.5), 0.5);
        assert!((reference_p(0.1) - 0.1).abs() <= 1.0 / 512.0);
    }

    #[test]
    fn options_reject_bad_p() {
        use crate::{AttentionOptions, Error};
        assert!(AttentionOptions::default().check_masks().is_ok());
        assert!(AttentionOptions { dropout_p: 0.1, ..Default::default() }.check_masks().is_ok());
        for p in [-0.1, 1.0, 1.5, f32::NAN, f32::INFINITY] {
            let opts = AttentionOptions { dropout_p: p, ..Default::default() };
            match opts.check_masks() {
                Err(e @ Error::InvalidArgument { arg: "dropout_p", .. }) => {
                    assert!(e.to_string().contains("must be in [0, 1)"), "{e}");
                }
                other => panic!("p = {p}: {other:?}"),
            }
        }
    }

    #[test]
    fn drop_fraction_within_a_hundredth_of_p() {
        let s = Shape { batch: 2, seqlen_q: 256, seqlen_k: 1025, heads: 2, heads_kv: 2, head_dim: 8 };
        for p in [0.1f32, 0.5] {
            let mask = dropout_mask(&s, p, 7, 0);
            let dropped = mask.iter().filter(|&&k| !k).count() as f64 / mask.len() as f64;
            assert!((dropped - p as f64).abs() <= 0.01, "p {p}: dropped {dropped}");
        }
    }
}
