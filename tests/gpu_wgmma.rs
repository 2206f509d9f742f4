//! The Hopper (`wgmma`, sm_90a) path on the GPU. Two parts:
//! 1. Instruction tests: one warpgroup, the wrappers of `kernels/src/arch/sm90.rs` on operands
//!    laid out in shared memory exactly as the forward lays them out
//!    (`kernels/src/instruction_tests_sm90.rs`), small integers (exact), every accumulator
//!    register of every thread checked against the documented fragment layout. A failure prints
//!    the first wrong elements and which descriptor strides (LBO, SBO) would have worked.
//! 2. The forward (`ForwardKernel::Wgmma`) against the f64 CPU reference by FlashAttention's
//!    2x rule, outputs NaN-poisoned before each launch.
//!
//! They need an sm_90 GPU (H100/H200): `#[ignore]`d here; on another GPU they say so and pass.
use cudarc::driver::{LaunchConfig, PushKernelArg};
use flashattn::Device;
use flashattn_kernels::smem_layout::{sw128_k_major_strides, sw128_mn_major_strides};
use half::{bf16, f16};
use rand::{Rng, SeedableRng};

/// The device, or None (with a note) when it is not compute capability 9.0.
fn hopper() -> Option<Device> {
    let dev = Device::new(0).unwrap_or_else(|e| panic!("this test needs a CUDA GPU: {e}"));
    if dev.compute_capability() != (9, 0) {
        eprintln!(
            "skipped: {} is sm_{}{}, the wgmma kernels need sm_90",
            dev.name(),
            dev.compute_capability().0,
            dev.compute_capability().1
        );
        return None;
    }
    Some(dev)
}

fn one_warpgroup(smem: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (1, 1, 1), block_dim: (128, 1, 1), shared_mem_bytes: smem as u32 }
}

fn bits(x: f32, is_bf16: bool) -> u16 {
    if is_bf16 {
        bf16::from_f32(x).to_bits()
    } else {
        f16::from_f32(x).to_bits()
    }
}

fn small_ints(n: usize, range: i32, rng: &mut impl Rng) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-range..=range) as f32).collect()
}

/// (row, column) of accumulator register `i` of warpgroup thread `tid` (module doc of sm90.rs):
/// warp w = tid / 32 owns rows 16 w .. 16 w + 15; lane 4 g + t; i = 4 j + e.
fn acc_coord(tid: usize, i: usize) -> (usize, usize) {
    let (w, lane) = (tid / 32, tid % 32);
    let (g, t) = (lane / 4, lane % 4);
    let (j, e) = (i / 4, i % 4);
    (16 * w + g + 8 * (e / 2), 8 * j + 2 * t + e % 2)
}

/// Compares thread-major accumulators with `want(row, col)`; returns the mismatches (up to 8
/// described) and their count.
fn compare(out: &[f32], n: usize, want: impl Fn(usize, usize) -> f32) -> (usize, Vec<String>) {
    let mut bad = 0;
    let mut first = Vec::new();
    for tid in 0..128 {
        for i in 0..n / 2 {
            let (r, c) = acc_coord(tid, i);
            let (got, w) = (out[tid * (n / 2) + i], want(r, c));
            if got != w {
                bad += 1;
                if first.len() < 8 {
                    first.push(format!("thread {tid} reg {i} = D[{r}][{c}]: got {got}, want {w}"));
                }
            }
        }
    }
    (bad, first)
}

/// `S = A B^T` (A 64 x K, B N x K, both as Q and K are stored) through `test_wgmma_ss_*`.
fn check_ss(is_bf16: bool, n: usize, k: usize) {
    let Some(dev) = hopper() else { return };
    let name: &'static str = match (is_bf16, n, k) {
        (true, 64, 64) => "test_wgmma_ss_bf16_n64_k64",
        (false, 64, 64) => "test_wgmma_ss_f16_n64_k64",
        (true, 128, 128) => "test_wgmma_ss_bf16_n128_k128",
        (false, 128, 128) => "test_wgmma_ss_f16_n128_k128",
        _ => unreachable!(),
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64 * 7 + is_bf16 as u64);
    let a = small_ints(64 * k, 3, &mut rng);
    let b = small_ints(n * k, 3, &mut rng);
    let want = |r: usize, c: usize| (0..k).map(|x| a[r * k + x] * b[c * k + x]).sum::<f32>();
    let s = dev.stream();
    let da = s.clone_htod(&a.iter().map(|&x| bits(x, is_bf16)).collect::<Vec<_>>()).unwrap();
    let db = s.clone_htod(&b.iter().map(|&x| bits(x, is_bf16)).collect::<Vec<_>>()).unwrap();
    let smem = 1024 + (64 + n) * k * 2;
    let f = dev.load_kernel(name, smem).unwrap();
    let run = |lbo: u32, sbo: u32| -> Vec<f32> {
        let mut dout = s.alloc_zeros::<f32>(128 * n / 2).unwrap();
        let mut bld = s.launch_builder(&f);
        bld.arg(&da).arg(&db).arg(&mut dout).arg(&lbo).arg(&sbo);
        unsafe { bld.launch(one_warpgroup(smem)) }.unwrap();
        s.clone_dtoh(&dout).unwrap()
    };
    let (lbo, sbo) = sw128_k_major_strides();
    let (bad, first) = compare(&run(lbo, sbo), n, want);
    if bad > 0 {
        let alternatives: Vec<(u32, u32)> = vec![(sbo, lbo), (1024, 1024), (0, 1024), (16, 512), (16, 2048)];
        let works: Vec<_> = alternatives.into_iter().filter(|&(l, s_)| compare(&run(l, s_), n, &want).0 == 0).collect();
        panic!(
            "{name}: {bad} of {} accumulators wrong with (LBO, SBO) = ({lbo}, {sbo}); strides that work: {works:?}\n{}",
            64 * n,
            first.join("\n")
        );
    }
}

/// `O = C + P V` (P 64 x K as per-thread A fragments, V K x N as stored) through `test_wgmma_rs_*`.
fn check_rs(is_bf16: bool, n: usize, k: usize) {
    let Some(dev) = hopper() else { return };
    let name: &'static str = match (is_bf16, n, k) {
        (true, 64, 128) => "test_wgmma_rs_bf16_n64_k128",
        (false, 64, 128) => "test_wgmma_rs_f16_n64_k128",
        (true, 128, 64) => "test_wgmma_rs_bf16_n128_k64",
        (false, 128, 64) => "test_wgmma_rs_f16_n128_k64",
        _ => unreachable!(),
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64 * 11 + is_bf16 as u64);
    let p = small_ints(64 * k, 3, &mut rng);
    let v = small_ints(k * n, 3, &mut rng);
    let c = small_ints(64 * n, 8, &mut rng);
    let want = |r: usize, col: usize| c[r * n + col] + (0..k).map(|x| p[r * k + x] * v[x * n + col]).sum::<f32>();
    // A fragments (module doc of sm90.rs): k-step kk, row 16 w + g (+ 8), columns 2 t, 2 t + 1 (+ 8).
    let pack =
        |r: usize, col: usize| bits(p[r * k + col], is_bf16) as u32 | (bits(p[r * k + col + 1], is_bf16) as u32) << 16;
    let mut frags = Vec::with_capacity(128 * k / 16 * 4);
    for tid in 0..128 {
        let (w, lane) = (tid / 32, tid % 32);
        let (g, t) = (lane / 4, lane % 4);
        let row = 16 * w + g;
        for kk in 0..k / 16 {
            let col = 16 * kk + 2 * t;
            frags.extend([pack(row, col), pack(row + 8, col), pack(row, col + 8), pack(row + 8, col + 8)]);
        }
    }
    let mut c_frag = vec![0f32; 128 * n / 2];
    for tid in 0..128 {
        for i in 0..n / 2 {
            let (r, col) = acc_coord(tid, i);
            c_frag[tid * (n / 2) + i] = c[r * n + col];
        }
    }
    let s = dev.stream();
    let dp = s.clone_htod(&frags).unwrap();
    let dv = s.clone_htod(&v.iter().map(|&x| bits(x, is_bf16)).collect::<Vec<_>>()).unwrap();
    let dc = s.clone_htod(&c_frag).unwrap();
    let smem = 1024 + k * n * 2;
    let f = dev.load_kernel(name, smem).unwrap();
    let run = |lbo: u32, sbo: u32| -> Vec<f32> {
        let mut dout = s.alloc_zeros::<f32>(128 * n / 2).unwrap();
        let mut bld = s.launch_builder(&f);
        bld.arg(&dp).arg(&dv).arg(&dc).arg(&mut dout).arg(&lbo).arg(&sbo);
        unsafe { bld.launch(one_warpgroup(smem)) }.unwrap();
        s.clone_dtoh(&dout).unwrap()
    };
    let (lbo, sbo) = sw128_mn_major_strides(k);
    let (bad, first) = compare(&run(lbo, sbo), n, want);
    if bad > 0 {
        let alternatives: Vec<(u32, u32)> = vec![(sbo, lbo), (1024, 1024), (lbo, 2048), (2048, lbo)];
        let works: Vec<_> = alternatives.into_iter().filter(|&(l, s_)| compare(&run(l, s_), n, &want).0 == 0).collect();
        panic!(
            "{name}: {bad} of {} accumulators wrong with (LBO, SBO) = ({lbo}, {sbo}); strides that work: {works:?}\n{}",
            64 * n,
            first.join("\n")
        );
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn wgmma_ss_m64n64k16_k_major_sw128() {
    check_ss(true, 64, 64);
    check_ss(false, 64, 64);
}

/// K = 128: two 64-column blocks, so k-steps 4..7 move the descriptor to the second block.
#[test]
#[ignore = "needs a CUDA GPU"]
fn wgmma_ss_m64n128k16_k_major_sw128() {
    check_ss(true, 128, 128);
    check_ss(false, 128, 128);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn wgmma_rs_m64n64k16_mn_major_b_sw128() {
    check_rs(true, 64, 128);
    check_rs(false, 64, 128);
}

/// N = 128: two 64-column blocks of V along N, reached through the descriptor's LBO.
#[test]
#[ignore = "needs a CUDA GPU"]
fn wgmma_rs_m64n128k16_mn_major_b_sw128() {
    check_rs(true, 128, 64);
    check_rs(false, 128, 64);
}
