//! Typed device tensors: a device buffer, a shape and strides (in elements). Attention inputs
//! use FlashAttention's `[batch, seqlen, heads, head_dim]` layout with the last dimension
//! contiguous; the other strides are free (views into a packed QKV buffer, for instance).
use cudarc::driver::{CudaSlice, DeviceRepr, ValidAsZeroBits};
use half::{bf16, f16};

use crate::error::{Error, Result};
use crate::runtime::Device;
use flashattn_kernels::config::Dtype;

/// An element type a [`Tensor`] can hold.
pub trait Element: DeviceRepr + ValidAsZeroBits + Copy + Default + Send + Sync + std::fmt::Debug + 'static {
    /// The kernel dtype, for the types attention takes as inputs (f32 is for LSE only).
    const DTYPE: Option<Dtype>;
    const NAME: &'static str;
    /// A NaN of this type: outputs are poisoned with it in tests, to prove every element is written.
    const NAN: Self;
    fn to_f64(self) -> f64;
    /// Rounds to nearest even.
    fn from_f64(x: f64) -> Self;
}

impl Element for f16 {
    const DTYPE: Option<Dtype> = Some(Dtype::F16);
    const NAME: &'static str = "f16";
    const NAN: Self = f16::NAN;
    fn to_f64(self) -> f64 {
        self.to_f64()
    }
    fn from_f64(x: f64) -> Self {
        f16::from_f64(x)
    }
}

impl Element for bf16 {
    const DTYPE: Option<Dtype> = Some(Dtype::Bf16);
    const NAME: &'static str = "bf16";
    const NAN: Self = bf16::NAN;
    fn to_f64(self) -> f64 {
        self.to_f64()
    }
    fn from_f64(x: f64) -> Self {
        bf16::from_f64(x)
    }
}

impl Element for f32 {
    const DTYPE: Option<Dtype> = None;
    const NAME: &'static str = "f32";
    const NAN: Self = f32::NAN;
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(x: f64) -> Self {
        x as f32
    }
}

/// Block masks (`crate::masks`): 0 = skip the block.
impl Element for u8 {
    const DTYPE: Option<Dtype> = None;
    const NAME: &'static str = "u8";
    const NAN: Self = u8::MAX;
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(x: f64) -> Self {
        x.round() as u8
    }
}

/// Sequence offsets of packed batches (`cu_seqlens`).
impl Element for i32 {
    const DTYPE: Option<Dtype> = None;
    const NAME: &'static str = "i32";
    const NAN: Self = i32::MIN;
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(x: f64) -> Self {
        x.round() as i32
    }
}

/// A tensor in device memory. Dropping it frees the memory.
pub struct Tensor<T: Element> {
    data: CudaSlice<T>,
    shape: Vec<usize>,
    strides: Vec<usize>,
    device: Device,
}

impl<T: Element> Drop for Tensor<T> {
    fn drop(&mut self) {
        self.device.track_free(self.data.num_bytes());
    }
}

impl<T: Element> std::fmt::Debug for Tensor<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor<{}>{:?} strides {:?}", T::NAME, self.shape, self.strides)
    }
}

/// Row-major strides of `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

impl<T: Element> Tensor<T> {
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }
    pub fn device(&self) -> &Device {
        &self.device
    }
    /// Number of logical elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_contiguous(&self) -> bool {
        self.strides == contiguous_strides(&self.shape)
    }
    pub(crate) fn data(&self) -> &CudaSlice<T> {
        &self.data
    }
    pub(crate) fn data_mut(&mut self) -> &mut CudaSlice<T> {
        &mut self.data
    }

    /// Copies the tensor to the host, in logical row-major order (gathering strided views).
    pub fn to_host(&self) -> Result<Vec<T>> {
        let raw = self.device.stream().clone_dtoh(&self.data)?;
        if self.is_contiguous() {
            return Ok(raw);
        }
        let mut out = Vec::with_capacity(self.numel());
        gather(&raw, &self.shape, &self.strides, 0, 0, &mut out);
        Ok(out)
    }

    /// Sets every element of the underlying buffer to `value` (tests poison outputs with NaN).
    pub fn fill(&mut self, value: T) -> Result<()> {
        let host = vec![value; self.data.len()];
        self.device.stream().memcpy_htod(&host, &mut self.data)?;
        Ok(())
    }
}

fn gather<T: Copy>(raw: &[T], shape: &[usize], strides: &[usize], dim: usize, base: usize, out: &mut Vec<T>) {
    if dim == shape.len() {
        out.push(raw[base]);
        return;
    }
    for i in 0..shape[dim] {
        gather(raw, shape, strides, dim + 1, base + i * strides[dim], out);
    }
}

impl Device {
    /// Copies a contiguous row-major host array of the given shape to the device.
    pub fn upload<T: Element>(&self, data: &[T], shape: &[usize]) -> Result<Tensor<T>> {
        self.upload_strided(data, shape, &contiguous_strides(shape))
    }

    /// Copies `buffer` to the device and views it with `shape` and `strides` (in elements): the
    /// element at index `i` lives at `buffer[sum(i[k] * strides[k])]`.
    pub fn upload_strided<T: Element>(&self, buffer: &[T], shape: &[usize], strides: &[usize]) -> Result<Tensor<T>> {
        check_view(buffer.len(), shape, strides)?;
        let data = self.stream().clone_htod(buffer)?;
        Ok(self.wrap(data, shape, strides))
    }

    /// A contiguous tensor whose contents are unspecified (every kernel output is fully written).
    pub fn alloc<T: Element>(&self, shape: &[usize]) -> Result<Tensor<T>> {
        let n: usize = shape.iter().product();
        if n == 0 {
            return Err(Error::invalid("shape", format!("{shape:?} has no elements")));
        }
        // SAFETY: the memory is uninitialised; callers only hand it to kernels that write every
        // element before anything reads it (or fill it first).
        let data = unsafe { self.stream().alloc::<T>(n)? };
        Ok(self.wrap(data, shape, &contiguous_strides(shape)))
    }

    /// A contiguous tensor of zeros.
    pub fn zeros<T: Element>(&self, shape: &[usize]) -> Result<Tensor<T>> {
        let n: usize = shape.iter().product();
        if n == 0 {
            return Err(Error::invalid("shape", format!("{shape:?} has no elements")));
        }
        let data = self.stream().alloc_zeros::<T>(n)?;
        Ok(self.wrap(data, shape, &contiguous_strides(shape)))
    }

    fn wrap<T: Element>(&self, data: CudaSlice<T>, shape: &[usize], strides: &[usize]) -> Tensor<T> {
        self.track_alloc(data.num_bytes());
        Tensor { data, shape: shape.to_vec(), strides: strides.to_vec(), device: self.clone() }
    }
}

/// A view is valid when it has elements and its furthest element lies inside the buffer.
fn check_view(len: usize, shape: &[usize], strides: &[usize]) -> Result<()> {
    if shape.len() != strides.len() {
        return Err(Error::invalid(
            "strides",
            format!("{} strides for a shape of rank {}", strides.len(), shape.len()),
        ));
    }
    if shape.iter().any(|&s| s == 0) {
        return Err(Error::invalid("shape", format!("{shape:?} has no elements")));
    }
    let last = shape
        .iter()
        .zip(strides)
        .try_fold(0usize, |acc, (&s, &st)| (s - 1).checked_mul(st).and_then(|x| acc.checked_add(x)));
    match last {
        Some(l) if l < len => Ok(()),
        _ => Err(Error::invalid(
            "strides",
            format!("shape {shape:?} with strides {strides:?} reaches past the buffer of {len} elements"),
        )),
    }
}
