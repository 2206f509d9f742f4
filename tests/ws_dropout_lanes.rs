//! The warp-specialized forward's dropout wiring, lane by lane, on the CPU: the query tiles
//! (`ws_schedule::tile_first_row` / `tile_key_end`), each consumer warp's first row
//! (`row0 + 64 w + 16 warp`), the Philox call of each lane and the row-pair exchange (`Dropout::s_bits`: the
//! shuffle is `lane ^ 4`), the flag words (`merge_flag_words`, `half_flags`), the `prmt` masks
//! applied to the packed weights (`drop_packed`, `pack_p`'s layout) and the rows `write_output`
//! stores, composed as `forward_ws` composes them (those kernel functions use shuffles and
//! `prmt`, so the composition is restated here from the same `philox` pieces, `prmt` through its
//! host model). Every visible element must get exactly `DropoutRng::keep`'s bit, once, and every
//! row be stored once. No GPU needed.
use flashattn_kernels::philox::{
    half_flags, keep_threshold, merge_flag_words, pair_mask_selector, prmt_model, s_lane_call, s_own_send, DropoutRng,
};
use flashattn_kernels::ws_schedule::{tile_first_row, tile_key_end};

const BM: usize = 128;
const BN: usize = 128;

/// Errors of the wiring for one (batch, head) of an `n_q` x `n_k` problem, tiles starting at
/// `first_row(cta)`.
fn wiring_errors(n_q: usize, n_k: usize, causal: bool, p: f32, first_row: impl Fn(usize) -> usize) -> usize {
    let threshold = keep_threshold(p);
    let rng = DropoutRng::new(0x1234_5678_9abc, 3, 1, 3, 4);
    let visible = |row: usize, col: usize| col < n_k && (!causal || col as i64 <= row as i64 + n_k as i64 - n_q as i64);
    let mut stored = vec![0u32; n_q];
    let mut seen = vec![false; n_q * n_k];
    let mut errors = 0;
    for cta in 0..n_q.div_ceil(BM) {
        let row0 = first_row(cta);
        let n_blocks = tile_key_end::<BM>(row0, n_q, n_k, causal).div_ceil(BN);
        for w in 0..2 {
            for warp in 0..4 {
                let warp_first_row = row0.wrapping_add(w * 64 + warp * 16);
                for g in 0..8 {
                    for half in 0..2 {
                        let row = warp_first_row.wrapping_add(g + 8 * half);
                        // write_output: lane t = 0 of the quad stores the row (and its LSE).
                        if let Some(s) = stored.get_mut(row) {
                            *s += 1;
                        }
                    }
                }
                for j in 0..n_blocks {
                    // Each lane's call per 32 keys: the words it keeps and the ones it sends.
                    let own_send: Vec<Vec<([u32; 2], [u32; 2])>> = (0..BN / 32)
                        .map(|kp| {
                            (0..32u32)
                                .map(|lane| {
                                    let call = s_lane_call(warp_first_row as u32, (j * BN + 32 * kp) as u32, lane);
                                    s_own_send(rng.drop_flags(call, threshold), (lane / 4) % 2 == 1)
                                })
                                .collect()
                        })
                        .collect();
                    for lane in 0..32 {
                        let (g, t) = (lane / 4, lane % 4);
                        let odd = (g % 2) as u32;
                        let flags: Vec<[u32; 2]> = (0..BN / 32)
                            .map(|kp| {
                                let (own, other) = (own_send[kp][lane].0, own_send[kp][lane ^ 4].1);
                                [merge_flag_words(own[0], other[0]), merge_flag_words(own[1], other[1])]
                            })
                            .collect();
                        // drop_packed on all-ones packed weights, read back through pack_p's layout.
                        for nt in 0..BN / 8 {
                            let (kp, upper, ntpar) = (nt / 4, (nt % 4) / 2 == 1, (nt % 2) as u32);
                            let words = [half_flags(flags[kp][0], odd, upper), half_flags(flags[kp][1], odd, upper)];
                            for half in 0..2 {
                                let dropped = prmt_model(words[0], words[1], pair_mask_selector(2 * half + ntpar));
                                let packed = !dropped;
                                for e in 0..2 {
                                    let row = warp_first_row.wrapping_add(g + 8 * half as usize);
                                    let col = j * BN + 8 * nt + 2 * t + e;
                                    if row >= n_q || !visible(row, col) {
                                        continue;
                                    }
                                    let kept = (packed >> (16 * e)) & 0xffff == 0xffff;
                                    errors += (kept != rng.keep(row as u32, col as u32, threshold)) as usize;
                                    errors += seen[row * n_k + col] as usize;
                                    seen[row * n_k + col] = true;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    errors += stored.iter().filter(|&&s| s != 1).count();
    for row in 0..n_q {
        errors += (0..n_k).filter(|&col| visible(row, col) && !seen[row * n_k + col]).count();
    }
    errors
}

#[test]
fn every_lane_gets_the_keep_bits_of_its_elements() {
    let mut failures = Vec::new();
    for n_q in (1..=300).step_by(7).chain([128, 129, 256, 1025]) {
        for n_k in [1, 100, 257] {
            for causal in [false, true] {
                let errors = wiring_errors(n_q, n_k, causal, 0.3, |cta| tile_first_row::<BM>(cta, n_q, causal, true));
                if errors > 0 {
                    failures.push(format!("n_q {n_q}, n_k {n_k}, causal {causal}: {errors} errors"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The model catches a misplaced tile: causal tiles ending exactly at the last row (the plain
/// builds' shift, not a multiple of 16) give rows each other's keep bits.
#[test]
fn the_lane_model_catches_an_unaligned_tile() {
    let (n_q, n_k) = (300, 300);
    let errors = wiring_errors(n_q, n_k, true, 0.3, |cta| tile_first_row::<BM>(cta, n_q, true, false));
    assert!(errors > 1000, "{errors}");
}
