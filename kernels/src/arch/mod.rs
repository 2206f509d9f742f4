//! One `#[inline(always)]` wrapper per PTX instruction (CuTe's rule), split by the first
//! architecture that has it. Nothing else lives here: algorithms call these.
pub mod sm80;
/// Hopper-only instructions (wgmma, setmaxnreg): only in the sm_90a build, so that the sm_80
/// PTX cannot contain them.
#[cfg(flashattn_sm90a)]
pub mod sm90;
