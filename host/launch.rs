//! Launching a kernel of the embedded module with its by-value parameter block.
use cudarc::driver::{DeviceRepr, LaunchConfig, PushKernelArg};
use flashattn_kernels::params::{BackwardParams, ForwardParams, StandardParams, Strides};

use crate::error::Result;
use crate::runtime::Device;
use crate::tensor::{Element, Tensor};

/// A kernel parameter block, passed by value. A newtype: the blocks live in the kernels crate,
/// `DeviceRepr` in cudarc.
#[repr(transparent)]
pub(crate) struct ParamBlock<P>(pub P);
// SAFETY: the blocks are #[repr(C)] plain data (integers and floats), read by the kernels as
// their by-value `.param` argument of the same layout.
unsafe impl DeviceRepr for ParamBlock<ForwardParams> {}
unsafe impl DeviceRepr for ParamBlock<BackwardParams> {}
unsafe impl DeviceRepr for ParamBlock<StandardParams> {}

/// Batch, row and head strides of a `[batch, seqlen, heads, head_dim]` tensor, or of a packed
/// `[total, heads, head_dim]` one (batch stride 0: the kernels offset rows by the sequence start).
pub(crate) fn strides_of<T: Element>(t: &Tensor<T>) -> Strides {
    let s = t.strides();
    match s.len() {
        3 => Strides { batch: 0, row: s[0] as u64, head: s[1] as u64 },
        _ => Strides { batch: s[0] as u64, row: s[1] as u64, head: s[2] as u64 },
    }
}

/// Launches kernel `name` on the device's stream: `grid` CTAs of `threads` threads with `smem`
/// bytes of dynamic shared memory.
///
/// # Safety
/// `params` must be the block the kernel takes, and every pointer in it must be a live
/// allocation covering every access the kernel makes for this grid.
pub(crate) unsafe fn launch<P>(
    dev: &Device,
    name: &'static str,
    smem: usize,
    grid: (u32, u32, u32),
    threads: usize,
    params: &ParamBlock<P>,
) -> Result<()>
where
    ParamBlock<P>: DeviceRepr,
{
    let func = dev.load_kernel(name, smem)?;
    let cfg = LaunchConfig { grid_dim: grid, block_dim: (threads as u32, 1, 1), shared_mem_bytes: smem as u32 };
    let mut builder = dev.stream().launch_builder(&func);
    builder.arg(params);
    unsafe { builder.launch(cfg) }?;
    Ok(())
}

/// As [`launch`], with programmatic stream serialization: the kernel may start before the one
/// launched before it on the stream has finished, as soon as every CTA of that one has executed
/// `griddepcontrol.launch_dependents` (or exited). It must synchronise itself with what it reads
/// of that kernel's results; without the signal (or where the driver ignores the attribute) it
/// simply starts after it, as [`launch`] does.
///
/// # Safety
/// As [`launch`]; in addition, whatever the kernel reads that the previous kernel writes must be
/// ordered by the kernels themselves (a release there, an acquire here).
pub(crate) unsafe fn launch_overlapping<P>(
    dev: &Device,
    name: &'static str,
    smem: usize,
    grid: (u32, u32, u32),
    threads: usize,
    params: &ParamBlock<P>,
) -> Result<()>
where
    ParamBlock<P>: DeviceRepr,
{
    use cudarc::driver::sys;
    let func = dev.load_kernel(name, smem)?;
    dev.context().bind_to_thread()?;
    let mut attr = sys::CUlaunchAttribute {
        id: sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION,
        pad: [0; 4],
        value: sys::CUlaunchAttributeValue { programmaticStreamSerializationAllowed: 1 },
    };
    let config = sys::CUlaunchConfig {
        gridDimX: grid.0,
        gridDimY: grid.1,
        gridDimZ: grid.2,
        blockDimX: threads as u32,
        blockDimY: 1,
        blockDimZ: 1,
        sharedMemBytes: smem as u32,
        hStream: dev.stream().cu_stream(),
        attrs: &mut attr,
        numAttrs: 1,
    };
    // The one kernel argument: the parameter block, by value (cuLaunchKernelEx copies it).
    let mut args = [params as *const ParamBlock<P> as *mut std::ffi::c_void];
    // SAFETY: `config` and `args` outlive the call; the caller guarantees the rest.
    unsafe { sys::cuLaunchKernelEx(&config, func.cu_function(), args.as_mut_ptr(), std::ptr::null_mut()) }.result()?;
    Ok(())
}
