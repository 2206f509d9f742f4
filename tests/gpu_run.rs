//! `flashattn run` on the GPU: a file of random bf16 / f16 q, k, v, do goes through
//! `flashattn::io::run_file`; the o, lse, dq, dk, dv read back from the output file pass
//! FlashAttention's rules against the f64 CPU reference (host/accuracy.rs: 2x for o, 3x for the
//! gradients). Needs a CUDA GPU (ignored without one).
use std::path::PathBuf;

use flashattn::accuracy::{check_backward, check_forward, random_qkv};
use flashattn::io::{run_file, Backend, FileElement};
use flashattn::reference::{RefOptions, Shape};
use flashattn::AttentionOptions;
use half::{bf16, f16};
use safetensors::tensor::{SafeTensors, TensorView};

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flashattn-gpu-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn read<T: FileElement>(file: &SafeTensors, name: &str, shape: &[usize]) -> Vec<T> {
    let t = file.tensor(name).unwrap_or_else(|e| panic!("output `{name}`: {e}"));
    assert_eq!((t.dtype(), t.shape()), (T::FILE_DTYPE, shape), "output `{name}`");
    T::decode(t.data())
}

fn round_trip<T: FileElement>(shape: Shape, causal: bool, seed: u64) {
    let dir = temp_dir();
    let (q, k, v) = random_qkv::<T>(&shape, seed);
    let d_o = random_qkv::<T>(&shape, seed + 1).0;
    let q_shape = vec![shape.batch, shape.seqlen_q, shape.heads, shape.head_dim];
    let kv_shape = vec![shape.batch, shape.seqlen_k, shape.heads_kv, shape.head_dim];
    let bytes = [T::encode(&q), T::encode(&k), T::encode(&v), T::encode(&d_o)];
    let views = [
        ("q", &q_shape, &bytes[0]),
        ("k", &kv_shape, &bytes[1]),
        ("v", &kv_shape, &bytes[2]),
        ("do", &q_shape, &bytes[3]),
    ]
    .map(|(n, s, b)| (n, TensorView::new(T::FILE_DTYPE, s.clone(), b).unwrap()));
    let (input, output) = (dir.join(format!("in-{seed}.safetensors")), dir.join(format!("out-{seed}.safetensors")));
    std::fs::write(&input, safetensors::tensor::serialize(views, None).unwrap()).unwrap();

    let opts = AttentionOptions { causal, ..Default::default() };
    let summary = run_file(&input, &output, &opts, Backend::Gpu(0)).unwrap();
    assert!(summary.gradients);
    let out_bytes = std::fs::read(&output).unwrap();
    let file = SafeTensors::deserialize(&out_bytes).unwrap();
    let o = read::<T>(&file, "o", &q_shape);
    let lse = read::<f32>(&file, "lse", &[shape.batch, shape.heads, shape.seqlen_q]);
    let (dq, dk, dv) =
        (read::<T>(&file, "dq", &q_shape), read::<T>(&file, "dk", &kv_shape), read::<T>(&file, "dv", &kv_shape));

    let ref_opts = RefOptions { causal, ..RefOptions::new(shape.head_dim) };
    let fwd = check_forward(&q, &k, &v, &shape, &ref_opts, &o, &lse);
    assert!(fwd.passed(), "{} {shape:?} causal {causal}: {fwd}", T::NAME);
    let bwd = check_backward(&q, &k, &v, &d_o, &shape, &ref_opts, &dq, &dk, &dv);
    assert!(bwd.passed(), "{} {shape:?} causal {causal}: {bwd}", T::NAME);
    let _ = std::fs::remove_file(&input);
    let _ = std::fs::remove_file(&output);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn run_file_round_trip_matches_the_reference() {
    let shapes = [
        Shape { batch: 2, seqlen_q: 97, seqlen_k: 97, heads: 4, heads_kv: 4, head_dim: 64 },
        Shape { batch: 1, seqlen_q: 130, seqlen_k: 257, heads: 4, heads_kv: 2, head_dim: 128 },
    ];
    for (i, shape) in shapes.into_iter().enumerate() {
        for causal in [false, true] {
            round_trip::<bf16>(shape, causal, 10 * i as u64 + causal as u64);
        }
    }
    round_trip::<f16>(shapes[0], true, 100);
}
