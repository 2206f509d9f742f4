//! `FLASHATTN_CUBIN` names a module file to load instead of the embedded PTX: a file that cannot
//! be loaded must be an error value naming the variable, not a panic and not a silent fallback.
//! Its own test binary, since the variable is process-wide and the module is loaded once per
//! `Device`.
use flashattn::{forward, AttentionOptions, Device, Error, MODULE_FILE_VAR};
use half::bf16;

#[test]
#[ignore = "needs a CUDA GPU"]
fn unloadable_module_file_is_an_error_naming_the_variable() {
    let dev = match Device::new(0) {
        Ok(dev) => dev,
        Err(e) => panic!("no usable GPU: {e}"),
    };
    let missing = std::env::temp_dir().join("flashattn-no-such-module.cubin");
    // SAFETY: this binary's only test; nothing else reads the environment concurrently.
    unsafe { std::env::set_var(MODULE_FILE_VAR, &missing) };
    let data: Vec<bf16> = (0..2 * 64 * 2 * 64).map(|i| bf16::from_f32((i % 7) as f32 / 7.0)).collect();
    let q = dev.upload(&data, &[2, 64, 2, 64]).expect("upload");
    match forward(&q, &q, &q, &AttentionOptions::default()) {
        Err(Error::InvalidArgument { arg, msg }) => {
            assert_eq!(arg, MODULE_FILE_VAR);
            assert!(msg.contains("flashattn-no-such-module"), "{msg}");
        }
        other => panic!("expected InvalidArgument for {MODULE_FILE_VAR}, got {:?}", other.map(|_| ())),
    }
}
