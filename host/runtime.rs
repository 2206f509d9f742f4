//! The device runtime: discovery without panics, one CUDA context and stream per [`Device`], the
//! kernel module loaded once, functions looked up once, and a count of the device memory that
//! this library allocates (for the peak-memory column of the benchmarks).
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::cublas::CudaBlas;
use cudarc::driver::sys::{CUdevice_attribute, CUfunction_attribute};
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr};
use cudarc::nvrtc::Ptx;

use crate::error::{Error, Result};

/// The environment variable naming a module file (cubin, fatbin or PTX) to load instead of the
/// embedded PTX. It must hold every kernel of this build: e.g. `ptxas -arch=sm_90a` run on the
/// build's `kernels_sm_90a.ptx` (`OUT_DIR`), which saves the one to two minutes the driver takes
/// to JIT-compile the module on a fresh machine.
pub const MODULE_FILE_VAR: &str = "FLASHATTN_CUBIN";

/// A GPU, its context and its stream. Cheap to clone (shared handle). All work of one `Device`
/// goes to its one stream, in order.
#[derive(Clone)]
pub struct Device {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    name: String,
    cc: (i32, i32),
    module: OnceLock<Arc<CudaModule>>,
    functions: Mutex<HashMap<&'static str, CudaFunction>>,
    allocated: AtomicUsize,
    peak: AtomicUsize,
    /// The cuBLAS handle of the standard-attention baseline, created on first use.
    blas: OnceLock<Arc<CudaBlas>>,
    /// The TMA descriptors of the last warp-specialized launch, in device memory (see
    /// [`Device::with_tensor_maps`]).
    tensor_maps: Mutex<Option<TensorMapSlot>>,
}

/// Descriptor bytes as last copied to `buffer` (queued on the device's stream).
struct TensorMapSlot {
    bytes: Vec<u8>,
    buffer: CudaSlice<u8>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Device({}, sm_{}{})", self.inner.name, self.inner.cc.0, self.inner.cc.1)
    }
}

impl PartialEq for Device {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Device {
    /// Opens GPU `ordinal`. Returns [`Error::NoDriver`] when libcuda is absent,
    /// [`Error::NoDevice`] when there is no such GPU and [`Error::UnsupportedGpu`] below sm_80.
    pub fn new(ordinal: usize) -> Result<Device> {
        // cudarc panics when libcuda is missing: ask first.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(Error::NoDriver);
        }
        let count = match CudaContext::device_count() {
            Ok(n) => n.max(0) as usize,
            Err(e) => {
                // cuInit fails with "no device" on driver-only machines.
                return Err(Error::NoDevice { ordinal, count: 0, detail: format!(" ({e})") });
            }
        };
        if ordinal >= count {
            return Err(Error::NoDevice { ordinal, count, detail: String::new() });
        }
        let ctx = CudaContext::new(ordinal)?;
        let name = ctx.name()?;
        let major = ctx.attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
        let minor = ctx.attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
        if major < 8 {
            return Err(Error::UnsupportedGpu { name, major, minor });
        }
        // One stream per Device, so cross-stream event tracking is pure overhead.
        unsafe { ctx.disable_event_tracking() };
        keep_freed_memory_pooled(&ctx);
        let stream = ctx.default_stream();
        Ok(Device {
            inner: Arc::new(Inner {
                ctx,
                stream,
                name,
                cc: (major, minor),
                module: OnceLock::new(),
                functions: Mutex::new(HashMap::new()),
                allocated: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
                blas: OnceLock::new(),
                tensor_maps: Mutex::new(None),
            }),
        })
    }

    /// Returns the device memory that freed tensors left in the stream-ordered pool (kept there
    /// for reuse, see [`Device::new`]) to the driver, e.g. before another library allocates.
    pub fn release_cached_memory(&self) -> Result<()> {
        if let Some(pool) = default_mem_pool(&self.inner.ctx) {
            self.synchronize()?;
            // SAFETY: `pool` is this device's default pool; trimming only releases unused memory.
            unsafe { cudarc::driver::sys::cuMemPoolTrimTo(pool, 0) }.result()?;
        }
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// (major, minor) compute capability.
    pub fn compute_capability(&self) -> (i32, i32) {
        self.inner.cc
    }

    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.inner.stream
    }

    pub fn context(&self) -> &Arc<CudaContext> {
        &self.inner.ctx
    }

    /// Waits until all work queued on this device has finished.
    pub fn synchronize(&self) -> Result<()> {
        Ok(self.inner.stream.synchronize()?)
    }

    /// Low-level: the kernel `name` of the embedded module, with its dynamic shared-memory limit raised to `smem_bytes` where that
    /// is above the 48 KB every kernel gets by default. The module is JIT-compiled from PTX once
    /// per device, on first use; functions are looked up once and cached. With the environment
    /// variable [`MODULE_FILE_VAR`] set, the module is loaded from that file instead (a cubin
    /// that `ptxas` built ahead of time from this build's PTX: no JIT at start-up).
    pub fn load_kernel(&self, name: &'static str, smem_bytes: usize) -> Result<CudaFunction> {
        let mut cache = self.inner.functions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = cache.get(name) {
            return Ok(f.clone());
        }
        let module = match self.inner.module.get() {
            Some(m) => m.clone(),
            None => {
                let (major, minor) = self.inner.cc;
                let m = match std::env::var_os(MODULE_FILE_VAR) {
                    Some(path) => self.inner.ctx.load_module(Ptx::from_file(path.clone())).map_err(|e| {
                        Error::invalid(MODULE_FILE_VAR, format!("cannot load {}: {e}", path.to_string_lossy()))
                    })?,
                    None => {
                        self.inner.ctx.load_module(Ptx::from_src(crate::ptx::for_compute_capability(major, minor)))?
                    }
                };
                self.inner.module.get_or_init(|| m).clone()
            }
        };
        let f = module.load_function(name)?;
        if smem_bytes > 48 * 1024 {
            let max =
                self.inner.ctx.attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)?
                    as usize;
            if smem_bytes > max {
                return Err(Error::invalid(
                    "head_dim",
                    format!("kernel {name} needs {smem_bytes} B of shared memory; this GPU allows {max} B"),
                ));
            }
            f.set_attribute(CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, smem_bytes as i32)?;
        }
        cache.insert(name, f.clone());
        Ok(f)
    }

    /// The cuBLAS handle of this device's stream, created once. cuBLAS is loaded at run time
    /// (cudarc's `dynamic-loading`), and cudarc panics when it is missing: ask first, and return
    /// [`Error::NoCublas`] instead. Only the standard-attention baseline uses cuBLAS.
    pub fn cublas(&self) -> Result<Arc<CudaBlas>> {
        if let Some(b) = self.inner.blas.get() {
            return Ok(b.clone());
        }
        if !unsafe { cudarc::cublas::sys::is_culib_present() } {
            let names = cudarc::get_lib_name_candidates("cublas");
            return Err(Error::NoCublas { candidates: names.join(", ") });
        }
        self.inner.ctx.bind_to_thread()?;
        let blas = Arc::new(CudaBlas::new(self.inner.stream.clone())?);
        Ok(self.inner.blas.get_or_init(|| blas).clone())
    }

    /// Low-level: runs `launch` with the device address of `bytes` (TMA descriptors, which
    /// kernels read from device memory). The bytes stay in one device buffer, copied again only
    /// when they differ from the last launch's: repeated calls on the same tensors (a training
    /// step, a benchmark) queue no copy at all. A copy is queued on the device's one stream, so
    /// it runs after every earlier launch that read the old bytes; the lock is held through
    /// `launch`, so no other thread rewrites the buffer between this copy and this launch being
    /// queued. (A rewritten address is why the kernel fences the descriptors before use.)
    pub(crate) fn with_tensor_maps<R>(&self, bytes: &[u8], launch: impl FnOnce(u64) -> Result<R>) -> Result<R> {
        let mut slot = self.inner.tensor_maps.lock().unwrap_or_else(|p| p.into_inner());
        let stream = &self.inner.stream;
        match slot.as_mut() {
            Some(s) if s.bytes == bytes => {}
            Some(s) if s.bytes.len() == bytes.len() => {
                // Forgotten first: a failed copy may have written part of the buffer.
                s.bytes.clear();
                stream.memcpy_htod(bytes, &mut s.buffer)?;
                s.bytes.extend_from_slice(bytes);
            }
            _ => *slot = Some(TensorMapSlot { bytes: bytes.to_vec(), buffer: stream.clone_htod(bytes)? }),
        }
        let s = slot.as_ref().expect("filled above");
        let (ptr, _guard) = s.buffer.device_ptr(stream);
        // The TMA reads descriptors from 64-byte aligned addresses (allocations are 256-byte
        // aligned; checked rather than assumed).
        if ptr % 64 != 0 {
            return Err(Error::invalid("kernel", format!("TMA descriptors at {ptr:#x}: not 64-byte aligned")));
        }
        launch(ptr)
    }

    /// Bytes of device memory held by tensors of this library right now.
    pub fn allocated_bytes(&self) -> usize {
        self.inner.allocated.load(Ordering::Relaxed)
    }

    /// The highest [`Device::allocated_bytes`] since the last [`Device::reset_peak`].
    pub fn peak_bytes(&self) -> usize {
        self.inner.peak.load(Ordering::Relaxed)
    }

    pub fn reset_peak(&self) {
        self.inner.peak.store(self.allocated_bytes(), Ordering::Relaxed);
    }

    pub(crate) fn track_alloc(&self, bytes: usize) {
        let now = self.inner.allocated.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.inner.peak.fetch_max(now, Ordering::Relaxed);
    }

    pub(crate) fn track_free(&self, bytes: usize) {
        self.inner.allocated.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// The device's default stream-ordered memory pool (where `cuMemAllocAsync` takes memory from),
/// if the device has one.
fn default_mem_pool(ctx: &CudaContext) -> Option<cudarc::driver::sys::CUmemoryPool> {
    if !ctx.has_async_alloc() {
        return None;
    }
    let mut pool = std::ptr::null_mut();
    // SAFETY: a valid out-pointer and this context's device.
    let r = unsafe { cudarc::driver::sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()) };
    (r == cudarc::driver::sys::CUresult::CUDA_SUCCESS && !pool.is_null()).then_some(pool)
}

/// Tensors are allocated with `cuMemAllocAsync` from the device's default pool, whose release
/// threshold is 0: at every synchronization, memory freed since goes back to the driver, and the
/// next call maps its outputs and scratch anew (measured: about 0.2 ms of a 1.5 ms backward at
/// 16k tokens, d = 128). As PyTorch's caching allocator does, keep it pooled for reuse;
/// [`Device::release_cached_memory`] gives it back on demand. Best effort: a driver without
/// pools keeps its default.
fn keep_freed_memory_pooled(ctx: &CudaContext) {
    if let Some(pool) = default_mem_pool(ctx) {
        let mut threshold = u64::MAX;
        // SAFETY: `pool` is valid; the attribute takes a pointer to a u64.
        let _ = unsafe {
            cudarc::driver::sys::cuMemPoolSetAttribute(
                pool,
                cudarc::driver::sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                &mut threshold as *mut u64 as *mut std::ffi::c_void,
            )
        };
    }
}
