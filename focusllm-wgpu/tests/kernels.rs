//! What only the wgpu backend has, beyond the shared contract that `conformance.rs` checks:
//! weights split over storage bindings, quantised blocks kept (or widened) on the device, grids
//! folded over two dimensions, amortised appends and the buffer pool. References, tolerances
//! and inputs come from `focusllm_testdata::conformance`.

mod common;

use common::{backend, backend_with, host, storage};
use focusllm_core::{Backend, DType, HeadLayout};
use focusllm_testdata::conformance::{
    attention_case, dense_tensor, linear_case, linear_ref, max_rel_diff, random_blocks, rows_of, Rng, LINEAR_TOL,
};
use focusllm_wgpu::{WeightPrecision, WgpuBackend, WgpuConfig};

fn f32_backend() -> Option<WgpuBackend> {
    backend_with(WgpuConfig { precision: WeightPrecision::F32, ..Default::default() })
}

#[test]
fn weights_larger_than_a_binding_are_split_not_refused() {
    // 700 bytes per part: 7 rows of 24 f32 or 14 rows of 24 f16 per part, so parts end inside tiles.
    for precision in [WeightPrecision::F32, WeightPrecision::Auto] {
        let Some(b) = backend_with(WgpuConfig { precision, max_binding_bytes: Some(700) }) else { return };
        let mut rng = Rng::new(3);
        let (k, n) = (24, 150);
        let t = dense_tensor(DType::F32, vec![n, k], &rng.vec(n * k));
        let w = b.upload_weight(&t).unwrap();
        assert!(w.parts() >= 10, "{} parts", w.parts());
        let w_dev = storage(&b).stored(&t);
        let bv = rng.vec(n);
        let bias = b.upload_weight(&dense_tensor(DType::F32, vec![n], &bv)).unwrap();
        for m in [1, 3, 67] {
            let xv = rng.vec(m * k);
            let x = b.from_host(&xv, m, k).unwrap();
            let got = host(&b, &b.linear(&x, &w, Some(&bias)).unwrap());
            let d = max_rel_diff(&got, &linear_ref(&xv, &w_dev, Some(&bv), m, k, n));
            assert!(d < LINEAR_TOL, "split linear m={m} {precision:?}: {d}");
        }
        // The same split table serves embedding lookups.
        let ids = [0u32, 149, 7, 8, 100, 7];
        assert_eq!(host(&b, &b.embedding(&w, &ids).unwrap()), rows_of(&w_dev, k, &ids));
    }
}

#[test]
fn quantised_matrices_keep_their_blocks_and_match_the_dequantised_product() {
    // Whole and split into parts (600 bytes: 2-11 rows, so parts end inside tiles); rows of three
    // blocks of 32, or one super-block of 256.
    for max_binding_bytes in [None, Some(600)] {
        let Some(b) = backend_with(WgpuConfig { max_binding_bytes, ..Default::default() }) else { return };
        let mut rng = Rng::new(6);
        for dtype in DType::QUANTIZED {
            let (k, n) = (if dtype.block().0 == 32 { 96 } else { 256 }, 130);
            let t = random_blocks(dtype, n, k, &mut rng);
            let wv = t.to_f32();
            let w = b.upload_weight(&t).unwrap();
            assert_eq!(w.dtype(), dtype, "the device keeps the blocks");
            assert_eq!(w.parts() > 1, max_binding_bytes.is_some());
            let bv = rng.vec(n);
            let bias = b.upload_weight(&dense_tensor(DType::F32, vec![n], &bv)).unwrap();
            for m in [1, 3, 17, 70] {
                let xv = rng.vec(m * k);
                let x = b.from_host(&xv, m, k).unwrap();
                let got = host(&b, &b.linear(&x, &w, Some(&bias)).unwrap());
                let d = max_rel_diff(&got, &linear_ref(&xv, &wv, Some(&bv), m, k, n));
                assert!(d < LINEAR_TOL, "{dtype:?} linear m={m} parts={}: {d}", w.parts());
            }
            let ids = [0u32, 129, 7, 64, 7];
            let got = host(&b, &b.embedding(&w, &ids).unwrap());
            assert_eq!(got, rows_of(&wv, k, &ids), "{dtype:?} embedding parts={}", w.parts());
        }
    }
}

#[test]
fn quantised_matrices_with_rows_of_partial_blocks_are_widened() {
    let Some(b) = backend() else { return };
    let mut rng = Rng::new(7);
    // 2 rows of 48: three blocks, the second shared by both rows.
    let t = random_blocks(DType::Q4_1, 2, 48, &mut rng);
    let w = b.upload_weight(&t).unwrap();
    assert!(matches!(w.dtype(), DType::F32 | DType::F16), "{:?}", w.dtype());
    assert_eq!(w.is_f16(), b.f16_weights());
    linear_case(&b, storage(&b), &rng.vec(48), 1, &t, None);
}

#[test]
fn attention_with_more_rows_than_one_grid_dimension() {
    let Some(b) = backend() else { return };
    let mut rng = Rng::new(9);
    // 66_000 one-token sequences: the row index is folded over two grid dimensions.
    let shapes = vec![(1, 1); 66_000];
    attention_case(&b, &mut rng, &shapes, 0, HeadLayout::new(1, 1, 2), 1.0);
}

#[test]
fn appending_one_row_at_a_time_is_amortised() {
    let Some(b) = backend() else { return };
    let mut rng = Rng::new(12);
    let cols = 24;
    let mut t = b.from_host(&rng.vec(cols), 1, cols).unwrap();
    let mut expected = host(&b, &t);
    let mut reallocations = 0;
    for _ in 0..300 {
        let row = rng.vec(cols);
        let before = t.capacity_rows();
        b.append_rows(&mut t, &b.from_host(&row, 1, cols).unwrap(), 0..1).unwrap();
        reallocations += usize::from(t.capacity_rows() != before);
        expected.extend(row);
    }
    assert_eq!(b.dims(&t), (301, cols));
    assert_eq!(host(&b, &t), expected);
    // Doubling: about log2(301 / initial capacity) reallocations, not one per row.
    assert!(reallocations <= 8, "{reallocations} reallocations for 300 appends");
}

#[test]
fn dropped_buffers_return_to_the_pool() {
    let Some(b) = backend() else { return };
    let mut rng = Rng::new(13);
    let v = rng.vec(3 * 7);
    let t = b.from_host(&v, 3, 7).unwrap();
    let before = b.pooled_bytes();
    drop(t);
    assert!(b.pooled_bytes() > before, "a dropped tensor's buffer returns to the pool");
    let again = b.from_host(&v, 3, 7).unwrap();
    assert_eq!(b.pooled_bytes(), before, "and is handed out again for the same size");
    assert_eq!(host(&b, &again), v);
}

#[test]
fn matrix_vector_kernel_with_more_columns_than_one_grid_dimension() {
    let Some(b) = f32_backend() else { return };
    // 600_000 outputs / 8 per workgroup = 75_000 workgroups: folded into a 2-D grid.
    let (n, k) = (600_000, 2);
    let mut rng = Rng::new(14);
    let t = dense_tensor(DType::F32, vec![n, k], &rng.vec(n * k));
    linear_case(&b, storage(&b), &rng.vec(k), 1, &t, None);
}
