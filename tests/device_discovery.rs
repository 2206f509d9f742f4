//! Device discovery must never panic: without a driver or GPU it returns a typed error. This test
//! runs everywhere (on a GPU machine it checks the out-of-range ordinal instead).
use flashattn::{Device, Error};

#[test]
fn missing_driver_or_gpu_is_an_error_value() {
    match Device::new(0) {
        Ok(dev) => {
            let (major, _) = dev.compute_capability();
            assert!(major >= 8, "Device::new accepted sm_{major}x");
            println!("GPU present: {dev:?}");
        }
        Err(e) => {
            assert!(matches!(e, Error::NoDriver | Error::NoDevice { .. } | Error::UnsupportedGpu { .. }), "{e}");
            println!("no usable GPU, as expected here: {e}");
        }
    }
    match Device::new(4096) {
        Err(Error::NoDriver | Error::NoDevice { .. }) => {}
        other => panic!("ordinal 4096 must be NoDriver or NoDevice, got {other:?}"),
    }
}
