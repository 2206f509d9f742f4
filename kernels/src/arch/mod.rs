//! One `#[inline(always)]` wrapper per PTX instruction (CuTe's rule), split by the first
//! architecture that has it. Nothing else lives here: algorithms call these.
pub mod sm80;
