//! Without CUDA, asking for the device is an error, never a panic; with CUDA, a missing ordinal
//! is an error too. Runs everywhere (CI has no GPU).

use focusllm_core::Error;
use focusllm_cuda::{driver_present, CudaBackend, CudaOptions};

#[test]
fn new_returns_an_error_not_a_panic_when_cuda_is_missing() {
    let result = std::panic::catch_unwind(|| CudaBackend::new(CudaOptions::default()).map(|_| ()));
    let result = result.expect("CudaBackend::new panicked");
    if driver_present() {
        eprintln!("the CUDA driver is present here: new() gave {:?}", result.as_ref().err().map(ToString::to_string));
        return;
    }
    match result {
        Err(Error::Backend { backend: "cuda", message }) => {
            assert!(message.contains("driver"), "the message should say the driver is missing: {message}");
            eprintln!("as expected without a driver: {message}");
        }
        Err(other) => panic!("wrong error kind: {other}"),
        Ok(()) => panic!("a CUDA backend opened on a machine without a driver"),
    }
}

#[test]
fn an_absent_device_ordinal_is_an_error() {
    let result = std::panic::catch_unwind(|| CudaBackend::new(CudaOptions { ordinal: 4096 }).map(|_| ()));
    match result.expect("CudaBackend::new panicked") {
        Err(Error::Backend { backend: "cuda", message }) => eprintln!("ordinal 4096: {message}"),
        Err(other) => panic!("wrong error kind: {other}"),
        Ok(()) => panic!("device 4096 does not exist"),
    }
}
