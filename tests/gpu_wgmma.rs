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
use flashattn::accuracy::{check_forward, random_qkv};
use flashattn::reference::RefOptions;
use flashattn::{forward, AttentionOptions, Device, Element, Error, ForwardKernel, Tensor};
use flashattn_kernels::smem_layout::{sw128_k_major_strides, sw128_mn_major_strides};
use half::{bf16, f16};
use rand::{Rng, SeedableRng};

mod common;
use common::{run_cases, shape, upload_qkv, Case, TableRow};

/// The device, or None (with a note) when it is not compute capability 9.0.
fn hopper() -> Option<Device> {
    let dev = common::device();
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

// ---------------------------------------------------------------------------------------------
// The forward

const WG: ForwardKernel = ForwardKernel::Wgmma;
/// The serial schedule (no softmax / MMA overlap): the simplest path, to tell schedule bugs from
/// layout bugs.
const SERIAL: ForwardKernel = ForwardKernel::WgmmaConfig { block_m: 128, block_n: 128, pipelined: false };

/// Runs every case on the sm_90 device (nothing without one, as `hopper` says).
fn run_all<T: Element>(cases: &[Case], kernel: ForwardKernel) {
    if let Some(dev) = hopper() {
        run_cases::<T>(&dev, cases, kernel)
    }
}

const SEQLENS: [usize; 6] = [1, 17, 97, 128, 1025, 4096];

/// Square cases at head dims `dims`; N = 4096 with one batch and head (the f64 reference
/// dominates).
fn square_cases(dims: &[usize]) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut seed = 7000;
    for &d in dims {
        for n in SEQLENS {
            for causal in [false, true] {
                seed += 1;
                let (b, h) = if n >= 4096 { (1, 1) } else { (2, 2) };
                cases.push(Case { shape: shape(b, n, n, h, h, d), causal, seed });
            }
        }
    }
    cases
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn wgmma_forward_bf16_matches_reference() {
    run_all::<bf16>(&square_cases(&[64, 128, 256]), WG);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn wgmma_serial_forward_bf16_matches_reference() {
    run_all::<bf16>(&square_cases(&[64, 128]), SERIAL); // (no serial d = 256 build)
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn wgmma_forward_f16_matches_reference() {
    run_all::<f16>(&square_cases(&[64, 128, 256]), WG);
}

/// seqlen_q != seqlen_k both ways (causal aligned bottom-right; rows that see no key give zeros
/// and LSE -inf), including partial last blocks on both sides.
#[test]
#[ignore = "needs a CUDA GPU"]
fn wgmma_forward_seqlen_q_differs_from_seqlen_k() {
    let pairs = [(1, 97), (97, 1), (17, 1025), (1025, 17), (128, 97), (97, 128), (64, 65), (300, 1000), (1000, 300)];
    let mut cases = Vec::new();
    for d in [64, 128, 256] {
        for (i, &(nq, nk)) in pairs.iter().enumerate() {
            for causal in [false, true] {
                cases.push(Case { shape: shape(1, nq, nk, 2, 2, d), causal, seed: 7500 + i as u64 });
            }
        }
    }
    run_all::<bf16>(&cases, WG);
    run_all::<f16>(&cases[..cases.len() / 2], WG);
    let serial: Vec<Case> = cases.iter().filter(|c| c.shape.head_dim <= 128).cloned().collect();
    run_all::<bf16>(&serial, SERIAL);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn wgmma_forward_gqa_and_mqa() {
    let cases: Vec<Case> = [(8, 2, 64), (8, 1, 128), (6, 3, 128), (4, 4, 64), (4, 2, 256)]
        .iter()
        .flat_map(|&(h, hkv, d)| {
            [false, true].map(|causal| Case {
                shape: shape(2, 197, 300, h, hkv, d),
                causal,
                seed: 7800 + h as u64 + hkv as u64,
            })
        })
        .collect();
    run_all::<bf16>(&cases, WG);
}

/// Real head dims below 64 / 128 / 256 are zero-padded inside the kernel.
#[test]
#[ignore = "needs a CUDA GPU"]
fn wgmma_forward_every_head_dim() {
    let cases: Vec<Case> = (8..=256)
        .step_by(8)
        .map(|d| Case { shape: shape(1, 97, 113, 4, 2, d), causal: d % 16 == 0, seed: 7900 + d as u64 })
        .collect();
    run_all::<bf16>(&cases, WG);
    run_all::<f16>(&cases, WG);
}

/// q, k, v as views into one packed `[batch, seqlen, 3, heads, d]` buffer.
#[test]
#[ignore = "needs a CUDA GPU"]
fn wgmma_forward_strided_packed_qkv() {
    let Some(dev) = hopper() else { return };
    for d in [64, 128, 256] {
        for causal in [false, true] {
            let s = shape(2, 197, 197, 4, 4, d);
            let (qh, kh, vh) = random_qkv::<bf16>(&s, 77);
            let h = s.heads;
            let mut packed = vec![bf16::ZERO; s.batch * s.seqlen_q * 3 * h * d];
            for b in 0..s.batch {
                for i in 0..s.seqlen_q {
                    for hh in 0..h {
                        for c in 0..d {
                            let src = ((b * s.seqlen_q + i) * h + hh) * d + c;
                            let dst = |which: usize| (((b * s.seqlen_q + i) * 3 + which) * h + hh) * d + c;
                            packed[dst(0)] = qh[src];
                            packed[dst(1)] = kh[src];
                            packed[dst(2)] = vh[src];
                        }
                    }
                }
            }
            let strides = [s.seqlen_q * 3 * h * d, 3 * h * d, d, 1];
            let view = |which: usize| {
                dev.upload_strided(&packed[which * h * d..], &[s.batch, s.seqlen_q, h, d], &strides).unwrap()
            };
            let (q, k, v) = (view(0), view(1), view(2));
            assert!(!q.is_contiguous());
            let kernels: &[ForwardKernel] = if d <= 128 { &[WG, WS] } else { &[WG] };
            for &kernel in kernels {
                let (o, lse) = forward(&q, &k, &v, &AttentionOptions { causal, kernel, ..Default::default() }).unwrap();
                let ref_opts = RefOptions { causal, ..RefOptions::new(d) };
                let check = check_forward(&qh, &kh, &vh, &s, &ref_opts, &o.to_host().unwrap(), &lse.to_host().unwrap());
                println!("{kernel:?} strided d={d} causal={causal}: {check}");
                assert!(check.passed(), "{check}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The warp-specialized forward (TMA producer warpgroup, two consumer warpgroups in turns)

const WS: ForwardKernel = ForwardKernel::WarpSpecialized;

#[test]
#[ignore = "needs a CUDA GPU"]
fn ws_forward_matches_reference() {
    run_all::<bf16>(&square_cases(&[64, 128]), WS);
    run_all::<f16>(&square_cases(&[64, 128]), WS);
}

/// seqlen_q != seqlen_k both ways (the TMA zero-fills rows past either end), GQA / MQA, and
/// every head dim up to 128 (columns past it zero-filled by the TMA, not stored).
#[test]
#[ignore = "needs a CUDA GPU"]
fn ws_forward_seqlens_gqa_and_head_dims() {
    let pairs = [(1, 97), (97, 1), (17, 1025), (1025, 17), (128, 97), (97, 128), (64, 65), (300, 1000), (1000, 300)];
    let mut cases = Vec::new();
    for d in [64, 128] {
        for (i, &(nq, nk)) in pairs.iter().enumerate() {
            for causal in [false, true] {
                cases.push(Case { shape: shape(1, nq, nk, 2, 2, d), causal, seed: 9500 + i as u64 });
            }
        }
    }
    for (h, hkv, d) in [(8, 2, 64), (8, 1, 128), (6, 3, 128)] {
        for causal in [false, true] {
            cases.push(Case { shape: shape(2, 197, 300, h, hkv, d), causal, seed: 9600 + h as u64 + hkv as u64 });
        }
    }
    for d in (8..=128).step_by(8) {
        cases.push(Case { shape: shape(1, 97, 113, 4, 2, d), causal: d % 16 == 0, seed: 9700 + d as u64 });
    }
    run_all::<bf16>(&cases, WS);
    run_all::<f16>(&cases[..18], WS);
}

/// One small case of each warp-specialized head dim, causal and not, for compute-sanitizer
/// (racecheck, synccheck: the named-barrier turns and the mbarrier stages).
#[test]
#[ignore = "needs a CUDA GPU"]
fn ws_forward_small_case_for_sanitizer() {
    let cases: Vec<_> = [(64, false), (128, true)]
        .iter()
        .map(|&(d, causal)| Case { shape: shape(1, 200, 330, 2, 1, d), causal, seed: 9900 + d as u64 })
        .collect();
    run_all::<bf16>(&cases, WS);
}

/// The descriptors live in one device buffer rewritten when the tensors change: calls on two
/// sets of inputs of one shape, queued A B A B before any download, must each read their own
/// (a stale descriptor, from the copy unit's cache or a rewrite racing a launch, would give the
/// third call B's output).
#[test]
#[ignore = "needs a CUDA GPU"]
fn ws_forward_follows_new_tensors_at_the_same_shape() {
    let Some(dev) = hopper() else { return };
    let s = shape(2, 300, 300, 4, 2, 128);
    let inputs: Vec<_> = [41, 42]
        .iter()
        .map(|&seed| {
            let (qh, kh, vh) = random_qkv::<bf16>(&s, seed);
            upload_qkv(&dev, &s, &qh, &kh, &vh)
        })
        .collect();
    let opts = AttentionOptions { causal: true, kernel: WS, ..Default::default() };
    let outs: Vec<_> = (0..4)
        .map(|i| {
            let (q, k, v) = &inputs[i % 2];
            forward(q, k, v, &opts).unwrap()
        })
        .collect();
    let host: Vec<Vec<bf16>> = outs.iter().map(|(o, _)| o.to_host().unwrap()).collect();
    let same = |a: &[bf16], b: &[bf16]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
    assert!(!same(&host[0], &host[1]), "inputs A and B gave the same output");
    assert!(same(&host[0], &host[2]), "the second call on A differs from the first");
    assert!(same(&host[1], &host[3]), "the second call on B differs from the first");
    // And A's output is attention of A (the same call through the wgmma forward).
    let (q, k, v) = &inputs[0];
    let (o_wg, _) = forward(q, k, v, &AttentionOptions { kernel: WG, ..opts }).unwrap();
    let err =
        o_wg.to_host().unwrap().iter().zip(&host[0]).map(|(a, b)| (a.to_f32() - b.to_f32()).abs()).fold(0.0, f32::max);
    assert!(err < 2e-2, "warp-specialized vs wgmma forward: max |diff| {err}");
}

/// Head dims above 128 have no warp-specialized build: an error value, no launch.
#[test]
#[ignore = "needs a CUDA GPU"]
fn ws_forward_rejects_head_dims_above_128() {
    let Some(dev) = hopper() else { return };
    let x: Tensor<bf16> = dev.upload(&vec![bf16::ONE; 16 * 2 * 136], &[1, 16, 2, 136]).unwrap();
    let r = forward(&x, &x, &x, &AttentionOptions { kernel: WS, ..Default::default() });
    assert!(matches!(r, Err(Error::UnsupportedHeadDim { head_dim: 136, .. })), "{r:?}");
}

/// Same inputs, same bits (no atomics, no order-dependent reductions).
#[test]
#[ignore = "needs a CUDA GPU"]
fn wgmma_forward_is_deterministic() {
    let Some(dev) = hopper() else { return };
    let s = shape(2, 1025, 1025, 4, 4, 128);
    let (qh, kh, vh) = random_qkv::<bf16>(&s, 3);
    let (q, k, v) = upload_qkv(&dev, &s, &qh, &kh, &vh);
    let opts = AttentionOptions { causal: true, kernel: WG, ..Default::default() };
    let (o0, l0) = forward(&q, &k, &v, &opts).unwrap();
    let (o0, l0) = (o0.to_host().unwrap(), l0.to_host().unwrap());
    for _ in 0..10 {
        let (o, l) = forward(&q, &k, &v, &opts).unwrap();
        assert!(o.to_host().unwrap().iter().zip(&o0).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert!(l.to_host().unwrap().iter().zip(&l0).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}

/// Every compiled wgmma kernel (table row) once, on a shape with partial blocks and GQA.
#[test]
#[ignore = "needs a CUDA GPU"]
fn wgmma_forward_every_table_row() {
    let Some(dev) = hopper() else { return };
    let rows: Vec<TableRow> = flashattn::forward::wgmma_kernel_rows()
        .iter()
        .map(|r| TableRow {
            name: r.name,
            dtype: r.dtype,
            kernel: r.kernel_choice(),
            head_dim: r.config.head_dim,
            causal: r.causal,
        })
        .collect();
    common::run_table_rows(&dev, &rows, 200, 331, 8000);
}

/// Head dims above 256 have no wgmma kernel: an error value naming it, no launch.
#[test]
#[ignore = "needs a CUDA GPU"]
fn wgmma_forward_rejects_unsupported_head_dim() {
    let Some(dev) = hopper() else { return };
    let t = |shape: &[usize]| -> Tensor<bf16> {
        let n: usize = shape.iter().product();
        dev.upload(&vec![bf16::ONE; n], shape).unwrap()
    };
    let x = t(&[1, 16, 2, 264]);
    let r = forward(&x, &x, &x, &AttentionOptions { kernel: WG, ..Default::default() });
    assert!(matches!(r, Err(Error::UnsupportedHeadDim { head_dim: 264, .. })), "{r:?}");
}

/// The warp-specialized forward's copy path alone (`test_tma_box_sw128`): a descriptor from
/// `tensor_map::encode`, one TMA box into the SW128 tile, read back through the layout the MMA
/// descriptors assume. Head dims 72 (the second 64-column box partly outside) and 40 (a box
/// wider than the tensor); boxes inside the tensor, past the end of its rows and of its head dim,
/// wholly outside it, before its first row (the causal forward's shifted first tile); 64 and 128
/// rows; all of a packed-QKV view (row stride 3 heads x d, larger than the head stride). Every
/// value must be the tensor's, or zero outside it.
#[test]
#[ignore = "needs a CUDA GPU"]
fn tma_box_lands_in_the_sw128_layout() {
    let Some(dev) = hopper() else { return };
    // 72: the second 64-column box partly outside; 40: a box wider than the tensor.
    for head_dim in [72usize, 40] {
        check_tma_boxes(&dev, head_dim);
    }
}

fn check_tma_boxes(dev: &Device, head_dim: usize) {
    use cudarc::driver::DevicePtr;
    use flashattn::tensor_map::{encode, TiledTensor};
    use flashattn_kernels::params::Strides;
    let s = dev.stream();
    let (batch, seqlen, heads) = (2usize, 150usize, 3usize);
    // [batch, seqlen, 3 (q, k, v), heads, head_dim], every value non-zero and distinct (mod 2^16).
    let n = batch * seqlen * 3 * heads * head_dim;
    let host: Vec<u16> = (0..n).map(|i| (i % 65535 + 1) as u16).collect();
    let src = s.clone_htod(&host).unwrap();
    let (base, _g) = src.device_ptr(s);
    let packed = Strides {
        batch: (seqlen * 3 * heads * head_dim) as u64,
        row: (3 * heads * head_dim) as u64,
        head: head_dim as u64,
    };
    let f = dev.load_kernel("test_tma_box_sw128", 1024 + 128 * 128 + 8).unwrap();
    // (which of q / k / v, box rows, column, first row, head, batch)
    let cases = [
        (0usize, 128usize, 0i32, 0i32, 0i32, 0i32),
        (1, 128, 64, 100, 2, 1),
        (2, 128, 0, -37, 1, 1),
        (1, 64, 0, 120, 0, 0),
        (0, 64, 64, -63, 2, 0),
        (2, 64, 64, 149, 1, 1),
    ];
    for (which, rows, col, row, head, b) in cases {
        let t = TiledTensor {
            ptr: base + (which * heads * head_dim * 2) as u64,
            dtype: flashattn::Dtype::Bf16,
            batch,
            seqlen,
            heads,
            head_dim,
            strides: packed,
            box_rows: rows,
        };
        let map = s.clone_htod(&encode(&t).unwrap()).unwrap();
        let (map_ptr, _gm) = map.device_ptr(s);
        let mut out = s.alloc_zeros::<u16>(rows * 64).unwrap();
        let mut bld = s.launch_builder(&f);
        let rows_arg = rows as u32;
        bld.arg(&map_ptr).arg(&mut out).arg(&col).arg(&row).arg(&head).arg(&b).arg(&rows_arg);
        unsafe { bld.launch(one_warpgroup(1024 + rows * 128 + 8)) }.unwrap();
        let got = s.clone_dtoh(&out).unwrap();
        let mut bad = Vec::new();
        for r in 0..rows {
            for c in 0..64 {
                let (sr, sc) = (row as i64 + r as i64, col as usize + c);
                let want = if sr >= 0 && (sr as usize) < seqlen && sc < head_dim {
                    let i = b as usize * packed.batch as usize
                        + sr as usize * packed.row as usize
                        + which * heads * head_dim
                        + head as usize * head_dim
                        + sc;
                    host[i]
                } else {
                    0
                };
                if got[r * 64 + c] != want {
                    bad.push(format!("[{r}][{c}]: got {:#06x}, want {want:#06x}", got[r * 64 + c]));
                }
            }
        }
        assert!(
            bad.is_empty(),
            "head dim {head_dim}, box {rows} x 64 at (col {col}, row {row}, head {head}, batch {b}) of {}: {} of {} \
             values wrong, first: {:?}",
            ["q", "k", "v"][which],
            bad.len(),
            rows * 64,
            &bad[..bad.len().min(8)]
        );
    }
}
