//! Each instruction wrapper alone, in a one-warp kernel (`kernels/src/instruction_tests.rs`):
//! the tests check which lane holds which element, against the layouts documented on the
//! wrappers, which the attention kernels rely on. Need a CUDA GPU (ignored without one).
use cudarc::driver::{LaunchConfig, PushKernelArg};
use flashattn::Device;
use half::{bf16, f16};
use rand::{Rng, SeedableRng};

fn device() -> Device {
    Device::new(0).unwrap_or_else(|e| panic!("this test needs a CUDA GPU: {e}"))
}

fn one_warp(smem: u32) -> LaunchConfig {
    LaunchConfig { grid_dim: (1, 1, 1), block_dim: (32, 1, 1), shared_mem_bytes: smem }
}

/// 32 rows x 8 columns of distinct b16 values (row * 8 + col + 1).
fn matrix_32x8() -> Vec<u16> {
    (0..256u16).map(|i| i + 1).collect()
}

fn halves(x: u32) -> (u16, u16) {
    (x as u16, (x >> 16) as u16)
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn ldmatrix_x4_and_cp_async_zero_fill_lane_layout() {
    let dev = device();
    let src = matrix_32x8();
    let zero_rows: u32 = (1 << 5) | (1 << 17); // copied with source size 0: must read as zeros
    let s = dev.stream();
    let d_src = s.clone_htod(&src).unwrap();
    let mut d_out = s.alloc_zeros::<u32>(128).unwrap();
    let f = dev.load_kernel("test_ldmatrix_x4", 0).unwrap();
    let mut b = s.launch_builder(&f);
    b.arg(&d_src).arg(&zero_rows).arg(&mut d_out);
    unsafe { b.launch(one_warp(512)) }.unwrap();
    let out = s.clone_dtoh(&d_out).unwrap();
    let elem = |row: usize, col: usize| if zero_rows >> row & 1 == 1 { 0 } else { src[row * 8 + col] };
    for lane in 0..32 {
        for i in 0..4 {
            // Register i = matrix i (rows 8i..8i+7); lane l holds row l/4, columns 2(l%4), 2(l%4)+1.
            let (row, col) = (8 * i + lane / 4, 2 * (lane % 4));
            assert_eq!(halves(out[lane * 4 + i]), (elem(row, col), elem(row, col + 1)), "lane {lane} reg {i}");
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn ldmatrix_x4_trans_lane_layout() {
    let dev = device();
    let src = matrix_32x8();
    let s = dev.stream();
    let d_src = s.clone_htod(&src).unwrap();
    let mut d_out = s.alloc_zeros::<u32>(128).unwrap();
    let f = dev.load_kernel("test_ldmatrix_x4_trans", 0).unwrap();
    let mut b = s.launch_builder(&f);
    b.arg(&d_src).arg(&mut d_out);
    unsafe { b.launch(one_warp(512)) }.unwrap();
    let out = s.clone_dtoh(&d_out).unwrap();
    for lane in 0..32 {
        for i in 0..4 {
            // Transposed: lane l holds rows 2(l%4) and 2(l%4)+1 of column l/4 of matrix i.
            let (row, col) = (8 * i + 2 * (lane % 4), lane / 4);
            assert_eq!(
                halves(out[lane * 4 + i]),
                (src[row * 8 + col], src[(row + 1) * 8 + col]),
                "lane {lane} reg {i}"
            );
        }
    }
}

/// D = A B + C with the fragment layout of `mma_m16n8k16_*`, on small integers (exact in f32).
fn check_mma(is_bf16: bool) {
    let dev = device();
    let mut rng = rand::rngs::StdRng::seed_from_u64(if is_bf16 { 1 } else { 2 });
    let a: Vec<f32> = (0..16 * 16).map(|_| rng.random_range(-3..=3) as f32).collect(); // [m][k]
    let bm: Vec<f32> = (0..16 * 8).map(|_| rng.random_range(-3..=3) as f32).collect(); // [k][n]
    let c: Vec<f32> = (0..16 * 8).map(|_| rng.random_range(-8..=8) as f32).collect(); // [m][n]
    let bits = |x: f32| -> u32 {
        if is_bf16 {
            bf16::from_f32(x).to_bits() as u32
        } else {
            f16::from_f32(x).to_bits() as u32
        }
    };
    let pack = |lo: f32, hi: f32| bits(lo) | bits(hi) << 16;
    let (mut af, mut bf, mut cf) = (vec![0u32; 128], vec![0u32; 64], vec![0f32; 128]);
    for l in 0..32 {
        let (g, t) = (l / 4, l % 4);
        let at = |r: usize, k: usize| pack(a[r * 16 + k], a[r * 16 + k + 1]);
        af[4 * l..4 * l + 4].copy_from_slice(&[at(g, 2 * t), at(g + 8, 2 * t), at(g, 2 * t + 8), at(g + 8, 2 * t + 8)]);
        let bt = |k: usize, n: usize| pack(bm[k * 8 + n], bm[(k + 1) * 8 + n]);
        bf[2 * l..2 * l + 2].copy_from_slice(&[bt(2 * t, g), bt(2 * t + 8, g)]);
        cf[4 * l..4 * l + 4].copy_from_slice(&[
            c[g * 8 + 2 * t],
            c[g * 8 + 2 * t + 1],
            c[(g + 8) * 8 + 2 * t],
            c[(g + 8) * 8 + 2 * t + 1],
        ]);
    }
    let s = dev.stream();
    let (da, db) = (s.clone_htod(&af).unwrap(), s.clone_htod(&bf).unwrap());
    let mut dc = s.clone_htod(&cf).unwrap();
    let f = dev.load_kernel("test_mma_m16n8k16", 0).unwrap();
    let flag = is_bf16 as u32;
    let mut b = s.launch_builder(&f);
    b.arg(&da).arg(&db).arg(&mut dc).arg(&flag);
    unsafe { b.launch(one_warp(0)) }.unwrap();
    let out = s.clone_dtoh(&dc).unwrap();
    let expect = |m: usize, n: usize| c[m * 8 + n] + (0..16).map(|k| a[m * 16 + k] * bm[k * 8 + n]).sum::<f32>();
    for l in 0..32 {
        let (g, t) = (l / 4, l % 4);
        let want = [expect(g, 2 * t), expect(g, 2 * t + 1), expect(g + 8, 2 * t), expect(g + 8, 2 * t + 1)];
        assert_eq!(&out[4 * l..4 * l + 4], &want, "lane {l}");
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn mma_m16n8k16_bf16_fragment_layout() {
    check_mma(true);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn mma_m16n8k16_f16_fragment_layout() {
    check_mma(false);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn shfl_xor_reads_the_butterfly_partner() {
    let dev = device();
    let s = dev.stream();
    let f = dev.load_kernel("test_shfl_xor", 0).unwrap();
    for mask in [1u32, 2, 16] {
        let mut d_out = s.alloc_zeros::<f32>(32).unwrap();
        let mut b = s.launch_builder(&f);
        b.arg(&mask).arg(&mut d_out);
        unsafe { b.launch(one_warp(0)) }.unwrap();
        let out = s.clone_dtoh(&d_out).unwrap();
        for l in 0..32u32 {
            assert_eq!(out[l as usize], ((l ^ mask) * 10) as f32, "mask {mask} lane {l}");
        }
    }
}

/// `prmt.b32`: every lane's bytes against a model of the default mode, selectors with and
/// without sign replication (the dropout masks use `0x8`-nibbles on flags at bit 7).
#[test]
#[ignore = "needs a CUDA GPU"]
fn prmt_picks_and_sign_replicates_bytes() {
    use flashattn_kernels::philox::{pair_mask_selector, prmt_model};
    let dev = device();
    let s = dev.stream();
    let f = dev.load_kernel("test_prmt", 0).unwrap();
    let (a, b) = (0x80_7f_01_ffu32, 0x12_93_c4_05u32);
    let sel: Vec<u32> =
        (0..32u32).map(|l| if l < 4 { pair_mask_selector(l) } else { l.wrapping_mul(0x9e37_79b9) >> 16 }).collect();
    let d_sel = s.clone_htod(&sel).unwrap();
    let mut d_out = s.alloc_zeros::<u32>(32).unwrap();
    let mut builder = s.launch_builder(&f);
    builder.arg(&a).arg(&b).arg(&d_sel).arg(&mut d_out);
    unsafe { builder.launch(one_warp(0)) }.unwrap();
    let out = s.clone_dtoh(&d_out).unwrap();
    for l in 0..32u32 {
        let expected = prmt_model(a.wrapping_add(l), b ^ l, sel[l as usize]);
        assert_eq!(out[l as usize], expected, "lane {l} selector {:04x}", sel[l as usize]);
    }
}

/// `warp_uniform_u32` (`redux.sync.min.u32`): every lane reads the warp's minimum, on values
/// that differ per lane (unsigned: 0xffff_fff0 is large, not negative), all equal, and with the
/// minimum at the first, a middle and the last lane. The masked forward takes its block-mask
/// scan's answer through it, so a wrong lane would skip or repeat key blocks.
#[test]
#[ignore = "needs a CUDA GPU"]
fn warp_uniform_u32_gives_every_lane_the_minimum() {
    let dev = device();
    let s = dev.stream();
    let f = dev.load_kernel("test_warp_uniform_u32", 0).unwrap();
    let patterns: Vec<Vec<u32>> = vec![
        (0..32u32).map(|l| 1000 - 7 * l).collect(),
        vec![0xdead_beef; 32],
        (0..32u32).map(|l| if l == 0 { 5 } else { 0xffff_fff0 - l }).collect(),
        (0..32u32).map(|l| if l == 17 { 3 } else { 40 + l.wrapping_mul(2_654_435_761) % 1000 }).collect(),
        (0..32u32).map(|l| if l == 31 { 0 } else { 0x8000_0000 | l }).collect(),
    ];
    let vals: Vec<u32> = patterns.concat();
    let d_vals = s.clone_htod(&vals).unwrap();
    let mut d_out = s.alloc_zeros::<u32>(vals.len()).unwrap();
    let n = patterns.len() as u32;
    let mut b = s.launch_builder(&f);
    b.arg(&d_vals).arg(&n).arg(&mut d_out);
    unsafe { b.launch(one_warp(0)) }.unwrap();
    let out = s.clone_dtoh(&d_out).unwrap();
    for (k, p) in patterns.iter().enumerate() {
        let min = *p.iter().min().unwrap();
        for lane in 0..32 {
            assert_eq!(out[32 * k + lane], min, "pattern {k} lane {lane}");
        }
    }
}

/// Philox4x32-10 and the dropout keep bits computed on the device agree with the host's
/// (`flashattn_kernels::philox`), bit for bit: the backward and the CPU reference rely on it.
#[test]
#[ignore = "needs a CUDA GPU"]
fn philox_and_dropout_bits_match_the_host() {
    use flashattn_kernels::philox::{keep_threshold, philox4x32_10, DropoutRng};
    let dev = device();
    let s = dev.stream();
    let f = dev.load_kernel("test_philox", 0).unwrap();
    let (c1, c2, c3, k0, k1) = (0x85a308d3u32, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0);
    let (seed, offset) = (0x0123_4567_89ab_cdefu64, 1u64 << 33);
    let threshold = keep_threshold(0.3) as u32;
    let mut d_out = s.alloc_zeros::<u32>(128).unwrap();
    let mut d_keep = s.alloc_zeros::<u32>(32).unwrap();
    let mut b = s.launch_builder(&f);
    b.arg(&c1).arg(&c2).arg(&c3).arg(&k0).arg(&k1).arg(&seed).arg(&offset).arg(&threshold);
    b.arg(&mut d_out).arg(&mut d_keep);
    unsafe { b.launch(one_warp(0)) }.unwrap();
    let (out, keep) = (s.clone_dtoh(&d_out).unwrap(), s.clone_dtoh(&d_keep).unwrap());
    let rng = DropoutRng::new(seed, offset, 1, 2, 3);
    for lane in 0..32u32 {
        let l = lane as usize;
        assert_eq!(out[4 * l..4 * l + 4], philox4x32_10([lane, c1, c2, c3], [k0, k1]), "lane {lane}");
        assert_eq!(keep[l], rng.keep_bits([lane % 4 + 4, lane / 4], threshold as u8) as u32, "lane {lane}");
    }
}
