//! The operation checks of the backend conformance suite (`focusllm_testdata::conformance`) on
//! the CUDA backend: every operation against its f64 host reference, with shapes that take each
//! matmul kernel (GEMV, tensor cores, CUDA-core tiles) and each weight type, attention over
//! packed batches with GQA, key splits and wide heads, the row operations' copy-on-write, and the
//! contract's typed errors. The device keeps every weight as the checkpoint holds it
//! (`Storage::Exact`). Beyond the contract: matrices keep their checkpoint type on the device, and an
//! allocation larger than the device is a typed error.
//! Skips with a printed reason without a CUDA device (fails then if FOCUSLLM_REQUIRE_CUDA=1).

mod support;

use focusllm_core::{Backend, DType, RowSlice};
use focusllm_testdata::conformance::{random_weight, Rng};
use support::cuda;

focusllm_testdata::op_conformance_tests!(cuda("conformance"));

#[test]
fn matrices_keep_their_checkpoint_type_on_the_device() {
    let Some(gpu) = cuda("weight types") else { return };
    let mut rng = Rng::new(11);
    for dtype in [DType::F32, DType::F16, DType::BF16].into_iter().chain(DType::QUANTIZED) {
        // Whole rows of blocks, and (2 rows of 48 or 128) rows sharing a block.
        let shared = if dtype.block().0 == 256 { (2, 128) } else { (2, 48) };
        for (rows, cols) in [(96, 64), shared] {
            let uploaded = gpu.upload_weight(&random_weight(dtype, rows, cols, &mut rng)).unwrap();
            assert_eq!(uploaded.dtype(), dtype, "a [{rows}, {cols}] {dtype:?} matrix");
        }
    }
}

#[test]
fn an_allocation_larger_than_the_device_is_a_typed_error_with_the_size() {
    let Some(gpu) = cuda("out of memory") else { return };
    let (_, total) = gpu.memory_info().unwrap();
    let x = gpu.from_host(&vec![0.0; 1024 * 1024], 1024, 1024).unwrap(); // 4 MiB
    let copies = total / (4 << 20) + 16;
    let parts: Vec<_> = (0..copies).map(|_| RowSlice { tensor: &x, rows: 0..1024 }).collect();
    match gpu.gather_rows(&parts) {
        Err(focusllm_core::Error::Backend { backend: "cuda", message }) => {
            let bytes = copies * (4 << 20);
            assert!(message.contains("out of device memory") && message.contains(&bytes.to_string()), "{message}");
            eprintln!("{message}");
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("allocated more than the device holds"),
    }
    // The backend still works afterwards.
    assert_eq!(gpu.to_host(&x).unwrap().len(), 1024 * 1024);
}
