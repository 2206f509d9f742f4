//! Attention on tensors from a safetensors file, for `flashattn run` (and Python / PyTorch users):
//! read `q`, `k`, `v` (and optionally `do`, the gradient of `o`), compute attention (and the
//! gradients), write `o`, `lse` (and `dq`, `dk`, `dv`).
//!
//! Input: `q` `[batch, seqlen_q, heads, head_dim]`, `k` and `v` `[batch, seqlen_k, heads_kv,
//! head_dim]` (`heads % heads_kv == 0`), optional `do` shaped like `q`; all `F16` or all `BF16`.
//! Other tensors are ignored (and listed). Output: `o` (like `q`, same dtype), `lse` (`F32`
//! `[batch, heads, seqlen_q]`, natural log), with `do` also `dq`, `dk`, `dv` (like `q`, `k`, `v`),
//! and the options in the file's metadata.
//!
//! Every problem with a file is an error value ([`FileError`]) naming the tensor, never a panic.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use safetensors::tensor::{Dtype as FileDtype, SafeTensors, TensorView, View};

use crate::accuracy::to_f64;
use crate::error::{Error, Result};
use crate::forward::{AttentionOptions, ForwardKernel};
use crate::reference::{self, RefOptions};
use crate::runtime::Device;
use crate::shape::Shape;
use crate::tensor::Element;

/// The dtypes `run` takes, as safetensors names them.
pub const ACCEPTED_DTYPES: &str = "F16, BF16";

/// What is wrong with an input or output file.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("not a valid safetensors file: {0}")]
    Format(String),
    #[error(
        "tensor `{name}` is missing: the file must hold q, k, v ([batch, seqlen, heads, head_dim], {ACCEPTED_DTYPES}) and optionally do (has: {present:?})"
    )]
    MissingTensor { name: &'static str, present: Vec<String> },
    #[error("tensor `{name}` has dtype {dtype}; accepted dtypes: {ACCEPTED_DTYPES} (q, k, v and do all of one)")]
    UnsupportedDtype { name: &'static str, dtype: String },
    #[error("tensor `{name}` has dtype {dtype} but q has {q_dtype}: q, k, v and do must all have one dtype")]
    DtypeMismatch { name: &'static str, dtype: String, q_dtype: String },
    #[error("tensor `{name}` must have rank 4 [batch, seqlen, heads, head_dim], got shape {shape:?}")]
    WrongRank { name: &'static str, shape: Vec<usize> },
    #[error("tensor `{name}` has shape {shape:?}: {msg}")]
    BadShape { name: &'static str, shape: Vec<usize>, msg: String },
}

/// An element type of the files: f16 and bf16 (inputs and outputs), f32 (lse).
pub trait FileElement: Element {
    const FILE_DTYPE: FileDtype;
    /// Little-endian bytes to values (`bytes.len()` a multiple of the size).
    fn decode(bytes: &[u8]) -> Vec<Self>;
    fn encode(values: &[Self]) -> Vec<u8>;
}

macro_rules! file_element {
    ($t:ty, $dtype:ident, $bits:ty, $n:literal) => {
        impl FileElement for $t {
            const FILE_DTYPE: FileDtype = FileDtype::$dtype;
            fn decode(bytes: &[u8]) -> Vec<Self> {
                bytes
                    .chunks_exact($n)
                    .map(|c| {
                        let mut b = [0u8; $n];
                        b.copy_from_slice(c);
                        <$t>::from_bits(<$bits>::from_le_bytes(b))
                    })
                    .collect()
            }
            fn encode(values: &[Self]) -> Vec<u8> {
                values.iter().flat_map(|v| v.to_bits().to_le_bytes()).collect()
            }
        }
    };
}
file_element!(f16, F16, u16, 2);
file_element!(bf16, BF16, u16, 2);
file_element!(f32, F32, u32, 4);

/// q, k, v and optional do of one dtype, row-major, with their dimensions.
#[derive(Clone, Debug, PartialEq)]
pub struct RunInputs<T> {
    pub shape: Shape,
    pub q: Vec<T>,
    pub k: Vec<T>,
    pub v: Vec<T>,
    pub d_o: Option<Vec<T>>,
}

/// The inputs of a file, by dtype, and the names of the tensors it held that `run` ignores.
#[derive(Clone, Debug, PartialEq)]
pub enum Inputs {
    F16(RunInputs<f16>, Vec<String>),
    Bf16(RunInputs<bf16>, Vec<String>),
}

impl Inputs {
    pub fn shape(&self) -> Shape {
        match self {
            Inputs::F16(i, _) => i.shape,
            Inputs::Bf16(i, _) => i.shape,
        }
    }
    pub fn has_grad_output(&self) -> bool {
        match self {
            Inputs::F16(i, _) => i.d_o.is_some(),
            Inputs::Bf16(i, _) => i.d_o.is_some(),
        }
    }
    pub fn ignored(&self) -> &[String] {
        match self {
            Inputs::F16(_, n) | Inputs::Bf16(_, n) => n,
        }
    }
    pub fn dtype_name(&self) -> &'static str {
        match self {
            Inputs::F16(..) => "F16",
            Inputs::Bf16(..) => "BF16",
        }
    }
}

fn dtype_name(d: FileDtype) -> String {
    format!("{d:?}")
}

/// Reads and checks the inputs of `run` from a file.
pub fn read_inputs(path: &Path) -> Result<Inputs, FileError> {
    let bytes = std::fs::read(path).map_err(|source| FileError::Read { path: path.into(), source })?;
    parse_inputs(&bytes)
}

/// Parses and checks the inputs of `run` from the bytes of a safetensors file: names, dtypes,
/// ranks and the agreement of the shapes (the rules of [`crate::forward()`]).
pub fn parse_inputs(bytes: &[u8]) -> Result<Inputs, FileError> {
    let file = SafeTensors::deserialize(bytes).map_err(|e| FileError::Format(e.to_string()))?;
    let mut names: Vec<String> = file.names().into_iter().map(String::from).collect();
    names.sort();
    let get = |name: &'static str| -> Result<Option<TensorView<'_>>, FileError> {
        if !names.iter().any(|n| n == name) {
            return Ok(None);
        }
        file.tensor(name).map(Some).map_err(|e| FileError::Format(e.to_string()))
    };
    let required =
        |name: &'static str| get(name)?.ok_or_else(|| FileError::MissingTensor { name, present: names.clone() });
    let (q, k, v, d_o) = (required("q")?, required("k")?, required("v")?, get("do")?);
    let dtype = q.dtype();
    if !matches!(dtype, FileDtype::F16 | FileDtype::BF16) {
        return Err(FileError::UnsupportedDtype { name: "q", dtype: dtype_name(dtype) });
    }
    let tensors = [("q", Some(&q)), ("k", Some(&k)), ("v", Some(&v)), ("do", d_o.as_ref())];
    for (name, t) in tensors {
        let Some(t) = t else { continue };
        if t.dtype() != dtype {
            if !matches!(t.dtype(), FileDtype::F16 | FileDtype::BF16) {
                return Err(FileError::UnsupportedDtype { name, dtype: dtype_name(t.dtype()) });
            }
            return Err(FileError::DtypeMismatch { name, dtype: dtype_name(t.dtype()), q_dtype: dtype_name(dtype) });
        }
        if t.shape().len() != 4 {
            return Err(FileError::WrongRank { name, shape: t.shape().to_vec() });
        }
        if t.shape().contains(&0) {
            return Err(FileError::BadShape { name, shape: t.shape().to_vec(), msg: "it is empty".into() });
        }
    }
    let shape = check_shapes(q.shape(), k.shape(), v.shape(), d_o.as_ref().map(|t| t.shape()))?;
    let ignored = names.into_iter().filter(|n| !["q", "k", "v", "do"].contains(&n.as_str())).collect();
    fn typed<T: FileElement>(
        q: &TensorView,
        k: &TensorView,
        v: &TensorView,
        d_o: Option<&TensorView>,
        shape: Shape,
    ) -> RunInputs<T> {
        RunInputs {
            shape,
            q: T::decode(q.data()),
            k: T::decode(k.data()),
            v: T::decode(v.data()),
            d_o: d_o.map(|t| T::decode(t.data())),
        }
    }
    Ok(match dtype {
        FileDtype::F16 => Inputs::F16(typed(&q, &k, &v, d_o.as_ref(), shape), ignored),
        _ => Inputs::Bf16(typed(&q, &k, &v, d_o.as_ref(), shape), ignored),
    })
}

/// The dimensions of rank-4 q, k, v (and do), or what disagrees.
fn check_shapes(q: &[usize], k: &[usize], v: &[usize], d_o: Option<&[usize]>) -> Result<Shape, FileError> {
    let bad = |name, shape: &[usize], msg: String| FileError::BadShape { name, shape: shape.to_vec(), msg };
    if v != k {
        return Err(bad("v", v, format!("differs from k's {k:?}")));
    }
    if k[0] != q[0] {
        return Err(bad("k", k, format!("batch {} differs from q's batch {}", k[0], q[0])));
    }
    if k[3] != q[3] {
        return Err(bad("k", k, format!("head_dim {} differs from q's head_dim {}", k[3], q[3])));
    }
    if !q[2].is_multiple_of(k[2]) {
        return Err(bad("k", k, format!("q's {} heads are not a multiple of its {} heads (GQA)", q[2], k[2])));
    }
    if let Some(d) = d_o {
        if d != q {
            return Err(bad("do", d, format!("differs from q's {q:?} (do is the gradient of o, shaped like q)")));
        }
    }
    Ok(Shape { batch: q[0], seqlen_q: q[1], seqlen_k: k[1], heads: q[2], heads_kv: k[2], head_dim: q[3] })
}

/// dq, dk, dv.
#[derive(Clone, Debug, PartialEq)]
pub struct Gradients<T> {
    pub dq: Vec<T>,
    pub dk: Vec<T>,
    pub dv: Vec<T>,
}

/// What `run` writes: `o`, `lse` and, when the input had `do`, the gradients.
#[derive(Clone, Debug, PartialEq)]
pub struct RunOutputs<T> {
    pub o: Vec<T>,
    pub lse: Vec<f32>,
    pub grads: Option<Gradients<T>>,
}

/// One tensor to write.
struct OutTensor {
    dtype: FileDtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &OutTensor {
    fn dtype(&self) -> FileDtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn out<T: FileElement>(values: &[T], shape: &[usize]) -> OutTensor {
    OutTensor { dtype: T::FILE_DTYPE, shape: shape.to_vec(), bytes: T::encode(values) }
}

/// The bytes of the output file: `o`, `lse` (and `dq`, `dk`, `dv`), with `metadata` (the options)
/// in its header.
pub fn serialize_outputs<T: FileElement>(
    shape: &Shape,
    outputs: &RunOutputs<T>,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>, FileError> {
    let q_shape = [shape.batch, shape.seqlen_q, shape.heads, shape.head_dim];
    let kv_shape = [shape.batch, shape.seqlen_k, shape.heads_kv, shape.head_dim];
    let mut tensors =
        vec![("o", out(&outputs.o, &q_shape)), ("lse", out(&outputs.lse, &[shape.batch, shape.heads, shape.seqlen_q]))];
    if let Some(g) = &outputs.grads {
        tensors.push(("dq", out(&g.dq, &q_shape)));
        tensors.push(("dk", out(&g.dk, &kv_shape)));
        tensors.push(("dv", out(&g.dv, &kv_shape)));
    }
    for (name, t) in &tensors {
        let expected: usize = t.shape.iter().product::<usize>() * t.dtype.bitsize() / 8;
        if t.bytes.len() != expected {
            return Err(FileError::BadShape {
                name,
                shape: t.shape.clone(),
                msg: format!("{} bytes of data where the shape needs {expected}", t.bytes.len()),
            });
        }
    }
    safetensors::tensor::serialize(tensors.iter().map(|(n, t)| (*n, t)), Some(metadata))
        .map_err(|e| FileError::Format(e.to_string()))
}

/// Where `run` computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The GPU of this ordinal.
    Gpu(usize),
    /// The f64 CPU reference (slow: for checking, and for machines without a GPU), results
    /// rounded to the input dtype (`lse` to f32).
    Reference,
}

/// The options as they go into the output file's metadata.
pub fn options_metadata(opts: &AttentionOptions, head_dim: usize, backend: Backend) -> HashMap<String, String> {
    let scale = opts.softmax_scale.unwrap_or(1.0 / (head_dim as f32).sqrt());
    let backend = match backend {
        Backend::Gpu(i) => format!("gpu {i}"),
        Backend::Reference => "cpu f64 reference".into(),
    };
    HashMap::from([
        ("producer".into(), format!("flashattn {} run", env!("CARGO_PKG_VERSION"))),
        ("causal".into(), opts.causal.to_string()),
        ("softmax_scale".into(), scale.to_string()),
        ("kernel".into(), format!("{:?}", opts.kernel)),
        ("window".into(), format!("({:?}, {:?})", opts.window_left, opts.window_right)),
        ("softcap".into(), opts.softcap.to_string()),
        ("dropout".into(), format!("p {} seed {} offset {}", opts.dropout_p, opts.dropout_seed, opts.dropout_offset)),
        ("backend".into(), backend),
    ])
}

/// Attention (and, with `do`, its gradients) of inputs on the GPU. The backward picks its own
/// kernel (`opts.kernel` chooses the forward's).
pub fn run_on_device<T: FileElement>(
    dev: &Device,
    inputs: &RunInputs<T>,
    opts: &AttentionOptions,
) -> Result<RunOutputs<T>> {
    let s = inputs.shape;
    let q_shape = [s.batch, s.seqlen_q, s.heads, s.head_dim];
    let kv_shape = [s.batch, s.seqlen_k, s.heads_kv, s.head_dim];
    let q = dev.upload(&inputs.q, &q_shape)?;
    let k = dev.upload(&inputs.k, &kv_shape)?;
    let v = dev.upload(&inputs.v, &kv_shape)?;
    let (o, lse) = crate::forward(&q, &k, &v, opts)?;
    let grads = match &inputs.d_o {
        Some(d_o) => {
            let d_o = dev.upload(d_o, &q_shape)?;
            let bwd_opts = AttentionOptions { kernel: ForwardKernel::Auto, ..*opts };
            let (dq, dk, dv) = crate::backward(&q, &k, &v, &o, &lse, &d_o, &bwd_opts)?;
            Some(Gradients { dq: dq.to_host()?, dk: dk.to_host()?, dv: dv.to_host()? })
        }
        None => None,
    };
    Ok(RunOutputs { o: o.to_host()?, lse: lse.to_host()?, grads })
}

/// The same outputs from the f64 CPU reference, rounded to `T` (`lse` to f32).
pub fn run_reference<T: FileElement>(inputs: &RunInputs<T>, opts: &AttentionOptions) -> Result<RunOutputs<T>> {
    let s = inputs.shape;
    if let Some(scale) = opts.softmax_scale {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(Error::invalid("softmax_scale", format!("{scale} must be finite and positive")));
        }
    }
    opts.check_masks()?;
    let drop_mask = (opts.dropout_p > 0.0)
        .then(|| crate::dropout::dropout_mask(&s, opts.dropout_p, opts.dropout_seed, opts.dropout_offset));
    let ref_opts = RefOptions {
        causal: opts.causal,
        softmax_scale: opts.softmax_scale.map_or(1.0 / (s.head_dim as f64).sqrt(), f64::from),
        window_left: opts.window_left,
        window_right: opts.window_right,
        softcap: opts.softcap as f64,
        dropout: drop_mask.as_deref().map(|m| (m, crate::dropout::reference_p(opts.dropout_p))),
        ..RefOptions::new(s.head_dim)
    };
    let (q, k, v) = (to_f64(&inputs.q), to_f64(&inputs.k), to_f64(&inputs.v));
    let fwd = reference::forward(&q, &k, &v, &s, &ref_opts);
    let round = |x: &[f64]| x.iter().map(|&x| T::from_f64(x)).collect::<Vec<T>>();
    let grads = inputs.d_o.as_ref().map(|d_o| {
        let g = reference::backward(&q, &k, &v, &to_f64(d_o), &s, &ref_opts);
        Gradients { dq: round(&g.dq), dk: round(&g.dk), dv: round(&g.dv) }
    });
    Ok(RunOutputs { o: round(&fwd.o), lse: fwd.lse.iter().map(|&x| x as f32).collect(), grads })
}

/// What [`run_file`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSummary {
    pub shape: Shape,
    pub dtype: &'static str,
    /// Whether the input had `do` (and the output has dq, dk, dv).
    pub gradients: bool,
    /// Tensors of the input that `run` did not use.
    pub ignored: Vec<String>,
}

/// `flashattn run`: reads `input`, computes on `backend`, writes `output`.
pub fn run_file(input: &Path, output: &Path, opts: &AttentionOptions, backend: Backend) -> Result<RunSummary> {
    let inputs = read_inputs(input)?;
    let summary = RunSummary {
        shape: inputs.shape(),
        dtype: inputs.dtype_name(),
        gradients: inputs.has_grad_output(),
        ignored: inputs.ignored().to_vec(),
    };
    let metadata = options_metadata(opts, summary.shape.head_dim, backend);
    fn compute<T: FileElement>(
        inputs: &RunInputs<T>,
        opts: &AttentionOptions,
        backend: Backend,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<u8>> {
        let outputs = match backend {
            Backend::Gpu(ordinal) => run_on_device(&Device::new(ordinal)?, inputs, opts)?,
            Backend::Reference => run_reference(inputs, opts)?,
        };
        Ok(serialize_outputs(&inputs.shape, &outputs, metadata)?)
    }
    let bytes = match &inputs {
        Inputs::F16(i, _) => compute(i, opts, backend, metadata)?,
        Inputs::Bf16(i, _) => compute(i, opts, backend, metadata)?,
    };
    std::fs::write(output, bytes).map_err(|source| FileError::Write { path: output.into(), source })?;
    Ok(summary)
}
