//! `flashattn run`'s file plumbing without a GPU: every error path of the input file (each names
//! the tensor), exact read-back of the values, and the whole file -> compute -> file path through
//! the CPU reference backend.
use std::path::{Path, PathBuf};

use flashattn::accuracy::{randn, random_qkv, to_f64};
use flashattn::io::{parse_inputs, read_inputs, run_file, Backend, FileElement, FileError, Inputs};
use flashattn::reference::{self, RefOptions, Shape};
use flashattn::{AttentionOptions, Error};
use half::{bf16, f16};
use rand::SeedableRng;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

/// A fresh folder for one test's files.
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flashattn-run-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A tensor to write: dtype, shape, little-endian bytes.
type Raw = (Dtype, Vec<usize>, Vec<u8>);

/// A tensor of `dtype` and `shape` with arbitrary (finite) contents.
fn tensor(dtype: Dtype, shape: &[usize]) -> Raw {
    let n: usize = shape.iter().product();
    let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
    let bytes = match dtype {
        Dtype::F16 => f16::encode(&randn::<f16>(n, &mut rng)),
        Dtype::BF16 => bf16::encode(&randn::<bf16>(n, &mut rng)),
        Dtype::F32 => f32::encode(&randn::<f32>(n, &mut rng)),
        _ => vec![0; n * dtype.bitsize() / 8],
    };
    (dtype, shape.to_vec(), bytes)
}

fn serialize(tensors: &[(&str, Raw)]) -> Vec<u8> {
    let views: Vec<(&str, TensorView)> =
        tensors.iter().map(|(n, (d, s, b))| (*n, TensorView::new(*d, s.clone(), b).unwrap())).collect();
    safetensors::tensor::serialize(views, None).unwrap()
}

fn write(path: &Path, tensors: &[(&str, Raw)]) {
    std::fs::write(path, serialize(tensors)).unwrap();
}

const Q: [usize; 4] = [2, 9, 4, 8];
const KV: [usize; 4] = [2, 13, 2, 8];

/// A valid set: bf16 q [2, 9, 4, 8], k/v [2, 13, 2, 8] (GQA), do like q.
fn valid() -> Vec<(&'static str, Raw)> {
    vec![
        ("q", tensor(Dtype::BF16, &Q)),
        ("k", tensor(Dtype::BF16, &KV)),
        ("v", tensor(Dtype::BF16, &KV)),
        ("do", tensor(Dtype::BF16, &Q)),
    ]
}

/// `valid()` with tensor `name` replaced (or removed, for None).
fn with(name: &'static str, t: Option<Raw>) -> Vec<u8> {
    let mut set: Vec<_> = valid().into_iter().filter(|(n, _)| *n != name).collect();
    if let Some(t) = t {
        set.push((name, t));
    }
    serialize(&set)
}

fn err(bytes: &[u8]) -> FileError {
    match parse_inputs(bytes) {
        Ok(_) => panic!("a bad file was accepted"),
        Err(e) => e,
    }
}

#[test]
fn missing_tensors_are_named() {
    for name in ["q", "k", "v"] {
        let e = err(&with(name, None));
        assert!(matches!(&e, FileError::MissingTensor { name: n, .. } if *n == name), "{e}");
        assert!(e.to_string().contains(&format!("`{name}` is missing")), "{e}");
    }
    // do is optional.
    assert!(!parse_inputs(&with("do", None)).unwrap().has_grad_output());
}

#[test]
fn wrong_rank_is_named() {
    for (name, shape) in [("q", vec![2, 9, 32]), ("k", vec![2, 13, 2, 8, 1]), ("do", vec![9, 4, 8])] {
        let e = err(&with(name, Some(tensor(Dtype::BF16, &shape))));
        assert!(matches!(&e, FileError::WrongRank { name: n, shape: s } if *n == name && *s == shape), "{e}");
        assert!(e.to_string().contains("rank 4 [batch, seqlen, heads, head_dim]"), "{e}");
    }
}

#[test]
fn unsupported_dtypes_say_which_are_accepted() {
    for (name, shape) in [("q", Q), ("k", KV), ("do", Q)] {
        for dtype in [Dtype::F32, Dtype::F64, Dtype::I32] {
            let e = err(&with(name, Some(tensor(dtype, &shape))));
            let dt = format!("{dtype:?}");
            assert!(matches!(&e, FileError::UnsupportedDtype { name: n, dtype: d } if *n == name && *d == dt), "{e}");
            assert!(e.to_string().contains("accepted dtypes: F16, BF16"), "{e}");
        }
    }
    // All-F32 inputs: q is the one named.
    let all_f32: Vec<_> = valid().into_iter().map(|(n, (_, s, _))| (n, tensor(Dtype::F32, &s))).collect();
    assert!(matches!(err(&serialize(&all_f32)), FileError::UnsupportedDtype { name: "q", .. }));
}

#[test]
fn mixed_dtypes_are_named() {
    for (name, shape) in [("k", KV), ("v", KV), ("do", Q)] {
        let e = err(&with(name, Some(tensor(Dtype::F16, &shape))));
        assert!(matches!(&e, FileError::DtypeMismatch { name: n, .. } if *n == name), "{e}");
        assert!(e.to_string().contains("has dtype F16 but q has BF16"), "{e}");
    }
}

#[test]
fn disagreeing_shapes_are_named() {
    let cases: [(&str, [usize; 4], &str); 6] = [
        ("v", [2, 12, 2, 8], "differs from k's"),
        ("k", [1, 13, 2, 8], "batch 1 differs from q's batch 2"),
        ("k", [2, 13, 2, 16], "head_dim 16 differs"),
        ("k", [2, 13, 3, 8], "not a multiple"),
        ("do", [2, 9, 4, 16], "differs from q's"),
        ("q", [2, 0, 4, 8], "empty"),
    ];
    for (name, shape, msg) in cases {
        let mut set: Vec<_> = valid().into_iter().filter(|(n, _)| *n != name).collect();
        set.push((name, tensor(Dtype::BF16, &shape)));
        if name == "k" {
            // k and v change together, so that the k-against-q checks are the ones reached.
            set.retain(|(n, _)| *n != "v");
            set.push(("v", tensor(Dtype::BF16, &shape)));
        }
        let e = err(&serialize(&set));
        assert!(matches!(&e, FileError::BadShape { name: n, .. } if *n == name), "{name} {shape:?}: {e}");
        assert!(e.to_string().contains(msg), "{e}");
    }
}

#[test]
fn unreadable_and_malformed_files() {
    let dir = temp_dir("unreadable");
    let missing = dir.join("nope.safetensors");
    assert!(matches!(read_inputs(&missing), Err(FileError::Read { .. })));
    let r = run_file(&missing, &dir.join("out.safetensors"), &AttentionOptions::default(), Backend::Reference);
    assert!(matches!(r, Err(Error::File(FileError::Read { .. }))), "{r:?}");
    for bytes in [&b""[..], b"not a safetensors file at all", &[255, 0, 0, 0, 0, 0, 0, 0, b'{']] {
        assert!(matches!(err(bytes), FileError::Format(_)));
    }
    // Truncated data.
    let good = with("do", None);
    assert!(matches!(err(&good[..good.len() - 2]), FileError::Format(_)));
    // An output path in a folder that does not exist.
    let input = dir.join("in.safetensors");
    write(&input, &valid());
    let r =
        run_file(&input, &dir.join("no/such/dir/out.safetensors"), &AttentionOptions::default(), Backend::Reference);
    assert!(matches!(r, Err(Error::File(FileError::Write { .. }))), "{r:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn values_read_back_exactly_and_extra_tensors_are_listed() {
    let shape = Shape { batch: 2, seqlen_q: 9, seqlen_k: 13, heads: 4, heads_kv: 2, head_dim: 8 };
    let (q, k, v) = random_qkv::<f16>(&shape, 3);
    let raw = |d, s: &[usize], b: Vec<u8>| (d, s.to_vec(), b);
    let bytes = serialize(&[
        ("q", raw(Dtype::F16, &Q, f16::encode(&q))),
        ("k", raw(Dtype::F16, &KV, f16::encode(&k))),
        ("v", raw(Dtype::F16, &KV, f16::encode(&v))),
        ("dout", tensor(Dtype::F32, &[3])),
    ]);
    match parse_inputs(&bytes).unwrap() {
        Inputs::F16(i, ignored) => {
            assert_eq!(i.shape, shape);
            assert_eq!((i.q, i.k, i.v, i.d_o), (q, k, v, None));
            assert_eq!(ignored, ["dout"]);
        }
        other => panic!("read as {}", other.dtype_name()),
    }
}

/// Reads a tensor of an output file: (dtype, shape, values as f64).
fn output(file: &SafeTensors, name: &str) -> (Dtype, Vec<usize>, Vec<f64>) {
    let t = file.tensor(name).unwrap_or_else(|e| panic!("output `{name}`: {e}"));
    let values = match t.dtype() {
        Dtype::BF16 => to_f64(&bf16::decode(t.data())),
        Dtype::F16 => to_f64(&f16::decode(t.data())),
        Dtype::F32 => to_f64(&f32::decode(t.data())),
        d => panic!("output `{name}` has dtype {d:?}"),
    };
    (t.dtype(), t.shape().to_vec(), values)
}

/// The whole `run` path with the CPU reference as the backend: file in, file out, with and
/// without do, causal and not, GQA, a given scale.
#[test]
fn run_with_the_reference_backend_writes_every_output() {
    let dir = temp_dir("reference");
    let shape = Shape { batch: 2, seqlen_q: 9, seqlen_k: 13, heads: 4, heads_kv: 2, head_dim: 8 };
    let (q, k, v) = random_qkv::<bf16>(&shape, 5);
    let d_o = random_qkv::<bf16>(&shape, 6).0;
    let raw = |s: &[usize], x: &[bf16]| (Dtype::BF16, s.to_vec(), bf16::encode(x));
    for (with_do, causal, scale) in [(false, false, None), (true, true, Some(0.3f32)), (true, false, None)] {
        let mut set = vec![("q", raw(&Q, &q)), ("k", raw(&KV, &k)), ("v", raw(&KV, &v))];
        if with_do {
            set.push(("do", raw(&Q, &d_o)));
        }
        let (input, out) = (dir.join("in.safetensors"), dir.join("out.safetensors"));
        write(&input, &set);
        let opts = AttentionOptions { causal, softmax_scale: scale, ..Default::default() };
        let summary = run_file(&input, &out, &opts, Backend::Reference).unwrap();
        assert_eq!((summary.shape, summary.dtype, summary.gradients), (shape, "BF16", with_do));

        let bytes = std::fs::read(&out).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let mut names = file.names();
        names.sort();
        let expected_names: &[&str] = if with_do { &["dk", "dq", "dv", "lse", "o"] } else { &["lse", "o"] };
        assert_eq!(names, expected_names);
        let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
        let meta = meta.metadata().clone().unwrap();
        assert_eq!(meta["causal"], causal.to_string());
        assert_eq!(meta["softmax_scale"], scale.unwrap_or(1.0 / 8f32.sqrt()).to_string());

        let ref_opts =
            RefOptions { causal, softmax_scale: scale.map_or(1.0 / 8f64.sqrt(), f64::from), ..RefOptions::new(8) };
        let (qf, kf, vf) = (to_f64(&q), to_f64(&k), to_f64(&v));
        let fwd = reference::forward(&qf, &kf, &vf, &shape, &ref_opts);
        let round = |x: &[f64]| x.iter().map(|&x| bf16::from_f64(x).to_f64()).collect::<Vec<_>>();
        assert_eq!(output(&file, "o"), (Dtype::BF16, Q.to_vec(), round(&fwd.o)));
        let lse: Vec<f64> = fwd.lse.iter().map(|&x| x as f32 as f64).collect();
        assert_eq!(output(&file, "lse"), (Dtype::F32, vec![2, 4, 9], lse));
        if with_do {
            let g = reference::backward(&qf, &kf, &vf, &to_f64(&d_o), &shape, &ref_opts);
            assert_eq!(output(&file, "dq"), (Dtype::BF16, Q.to_vec(), round(&g.dq)));
            assert_eq!(output(&file, "dk"), (Dtype::BF16, KV.to_vec(), round(&g.dk)));
            assert_eq!(output(&file, "dv"), (Dtype::BF16, KV.to_vec(), round(&g.dv)));
        }
    }
    // Options are checked on this backend too.
    let bad = AttentionOptions { softmax_scale: Some(-1.0), ..Default::default() };
    let r = run_file(&dir.join("in.safetensors"), &dir.join("o2.safetensors"), &bad, Backend::Reference);
    assert!(matches!(r, Err(Error::InvalidArgument { arg: "softmax_scale", .. })), "{r:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
