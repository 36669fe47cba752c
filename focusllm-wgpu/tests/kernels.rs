//! Every wgpu operation against a straightforward CPU computation (f64 accumulation) on random
//! inputs from a fixed seed, with shapes that are not multiples of the kernels' tile sizes.
//!
//! Tolerances (all inputs are O(1)):
//! - f32 weights, and f16 weights compared with a reference that uses the same f16-rounded
//!   weights: 1e-4 relative to max(1, |expected|) (only the f32 summation order differs);
//! - f16 weights against the exact (unrounded) reference: 1e-2 relative;
//! - quantised weights (kept as blocks) against the product with the dequantised matrix: 1e-4;
//! - attention, RMSNorm, RoPE, SwiGLU, add: 1e-5 absolute (f32 arithmetic throughout);
//! - row copies (gather/scatter/append/embedding): exact.

mod common;

use common::{backend, backend_with, host, max_abs_diff, max_rel_diff, Rng};
use focusllm_core::{rope_table_rows, AttentionSeq, Backend, Checked, DType, Error, HeadLayout, HostTensor, RowSlice};
use focusllm_wgpu::{WeightPrecision, WgpuBackend, WgpuConfig};
use half::{bf16, f16};

const F32_TOL: f32 = 1e-4;
const F16_TOL: f32 = 1e-2;
const EW_TOL: f32 = 1e-5;

fn f32_backend() -> Option<WgpuBackend> {
    backend_with(WgpuConfig { precision: WeightPrecision::F32, ..Default::default() })
}

fn weight(b: &WgpuBackend, shape: Vec<usize>, data: &[f32]) -> focusllm_wgpu::WgpuWeight {
    b.upload_weight(&HostTensor::from_f32("w", shape, data)).unwrap()
}

fn round_f16(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| f16::from_f32(x).to_f32()).collect()
}

/// `x @ w^T + bias` in f64.
fn linear_ref(x: &[f32], w: &[f32], bias: Option<&[f32]>, m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut y = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = bias.map_or(0.0, |b| b[j] as f64);
            for t in 0..k {
                s += x[i * k + t] as f64 * w[j * k + t] as f64;
            }
            y[i * n + j] = s as f32;
        }
    }
    y
}

/// Shapes (m, k, n): decode rows (matrix-vector kernel, m <= 4), a few rows (16x64 tiles,
/// m <= 32) and many rows (64x64 tiles), mostly not multiples of the tiles (or of k's 16).
const LINEAR_SHAPES: [(usize, usize, usize); 11] = [
    (1, 37, 53),
    (2, 64, 130),
    (4, 17, 9),
    (3, 300, 7),
    (5, 16, 64),
    (17, 40, 70),
    (32, 16, 64),
    (33, 20, 65),
    (64, 64, 64),
    (70, 33, 65),
    (131, 100, 129),
];

fn check_linear(b: &WgpuBackend, seed: u64) {
    let mut rng = Rng::new(seed);
    for (m, k, n) in LINEAR_SHAPES {
        for with_bias in [false, true] {
            let (xv, wv, bv) = (rng.vec(m * k), rng.vec(n * k), rng.vec(n));
            let x = b.from_host(&xv, m, k).unwrap();
            let w = weight(b, vec![n, k], &wv);
            let bias = with_bias.then(|| weight(b, vec![n], &bv));
            let y = b.linear(&x, &w, bias.as_ref()).unwrap();
            assert_eq!(b.dims(&y), (m, n));
            let got = host(b, &y);
            let bias_ref = with_bias.then_some(&bv[..]);
            // The same weights the device holds (f16-rounded when it keeps f16).
            let w_dev = if w.is_f16() { round_f16(&wv) } else { wv.clone() };
            let same = max_rel_diff(&got, &linear_ref(&xv, &w_dev, bias_ref, m, k, n), 1.0);
            assert!(same < F32_TOL, "linear {m}x{k}x{n} bias={with_bias} f16={}: rel {same}", w.is_f16());
            let exact = max_rel_diff(&got, &linear_ref(&xv, &wv, bias_ref, m, k, n), 1.0);
            let tol = if w.is_f16() { F16_TOL } else { F32_TOL };
            assert!(exact < tol, "linear {m}x{k}x{n} bias={with_bias} f16={}: rel {exact} vs exact", w.is_f16());
        }
    }
}

#[test]
fn linear_f32_weights_matches_reference() {
    let Some(b) = f32_backend() else { return };
    check_linear(&b, 1);
}

#[test]
fn linear_default_precision_matches_reference() {
    let Some(b) = backend() else { return };
    eprintln!("adapter {:?}, f16 weights: {}", b.adapter(), b.f16_weights());
    check_linear(&b, 2);
}

#[test]
fn weights_larger_than_a_binding_are_split_not_refused() {
    // 600 bytes per part: 7 rows of 24 f32 or 12 rows of 24 f16 per part, so parts end inside tiles.
    for precision in [WeightPrecision::F32, WeightPrecision::Auto] {
        let Some(b) = backend_with(WgpuConfig { precision, max_binding_bytes: Some(700) }) else { return };
        let mut rng = Rng::new(3);
        let (k, n) = (24, 150);
        let wv = rng.vec(n * k);
        let w = weight(&b, vec![n, k], &wv);
        assert!(w.parts() >= 10, "{} parts", w.parts());
        let w_dev = if w.is_f16() { round_f16(&wv) } else { wv.clone() };
        let bv = rng.vec(n);
        let bias = weight(&b, vec![n], &bv);
        for m in [1, 3, 67] {
            let xv = rng.vec(m * k);
            let x = b.from_host(&xv, m, k).unwrap();
            let got = host(&b, &b.linear(&x, &w, Some(&bias)).unwrap());
            let d = max_rel_diff(&got, &linear_ref(&xv, &w_dev, Some(&bv), m, k, n), 1.0);
            assert!(d < F32_TOL, "split linear m={m} {precision:?}: {d}");
        }
        // The same split table serves embedding lookups.
        let ids = [0u32, 149, 7, 8, 100, 7];
        let got = host(&b, &b.embedding(&w, &ids).unwrap());
        let want: Vec<f32> = ids.iter().flat_map(|&i| w_dev[i as usize * k..(i as usize + 1) * k].to_vec()).collect();
        assert_eq!(got, want);
    }
}

#[test]
fn half_precision_checkpoint_tensors_upload_exactly() {
    let Some(b) = backend() else { return };
    let mut rng = Rng::new(4);
    let (m, k, n) = (3, 40, 21);
    let wv = rng.vec(n * k);
    let xv = rng.vec(m * k);
    let x = b.from_host(&xv, m, k).unwrap();
    let f16_bytes: Vec<u8> = wv.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect();
    let bf16_bytes: Vec<u8> = wv.iter().flat_map(|&v| bf16::from_f32(v).to_le_bytes()).collect();
    for (dtype, bytes) in [(DType::F16, f16_bytes), (DType::BF16, bf16_bytes)] {
        let t = HostTensor { name: "w".into(), dtype, shape: vec![n, k], bytes: bytes.into() };
        let stored = t.to_f32();
        let w = b.upload_weight(&t).unwrap();
        let w_dev = if w.is_f16() { round_f16(&stored) } else { stored.clone() };
        let got = host(&b, &b.linear(&x, &w, None).unwrap());
        let d = max_rel_diff(&got, &linear_ref(&xv, &w_dev, None, m, k, n), 1.0);
        assert!(d < F32_TOL, "{dtype:?}: {d}");
    }
}

/// `[rows, cols]` random ggml blocks of `dtype` (Q8_0, Q4_0, Q4_1): scales of either sign keeping
/// values within about ±1, Q4_1 minima, and random quant bytes.
fn random_blocks(rng: &mut Rng, rows: usize, cols: usize, dtype: DType) -> HostTensor<'static> {
    let (block, block_bytes) = dtype.block();
    let (largest_quant, header) = match dtype {
        DType::Q8_0 => (128.0, 2),
        DType::Q4_0 => (8.0, 2),
        _ => (15.0, 4),
    };
    let mut bytes = Vec::new();
    for _ in 0..rows * cols / block {
        bytes.extend(f16::from_f32(rng.uniform() / largest_quant).to_le_bytes());
        if dtype == DType::Q4_1 {
            bytes.extend(f16::from_f32(rng.uniform() / 2.0).to_le_bytes());
        }
        bytes.extend((header..block_bytes).map(|_| rng.below(256) as u8));
    }
    HostTensor { name: "w".into(), dtype, shape: vec![rows, cols], bytes: bytes.into() }
}

#[test]
fn quantised_matrices_keep_their_blocks_and_match_the_dequantised_product() {
    // Whole and split into parts (600 bytes: 5-11 rows of 96 elements, so parts end inside tiles).
    for max_binding_bytes in [None, Some(600)] {
        let Some(b) = backend_with(WgpuConfig { max_binding_bytes, ..Default::default() }) else { return };
        let mut rng = Rng::new(6);
        for dtype in [DType::Q8_0, DType::Q4_0, DType::Q4_1] {
            let (k, n) = (96, 130);
            let t = random_blocks(&mut rng, n, k, dtype);
            let wv = t.to_f32();
            let w = b.upload_weight(&t).unwrap();
            assert_eq!(w.dtype(), dtype, "the device keeps the blocks");
            assert_eq!(w.parts() > 1, max_binding_bytes.is_some());
            let bv = rng.vec(n);
            let bias = weight(&b, vec![n], &bv);
            for m in [1, 3, 17, 70] {
                let xv = rng.vec(m * k);
                let x = b.from_host(&xv, m, k).unwrap();
                let got = host(&b, &b.linear(&x, &w, Some(&bias)).unwrap());
                let d = max_rel_diff(&got, &linear_ref(&xv, &wv, Some(&bv), m, k, n), 1.0);
                assert!(d < F32_TOL, "{dtype:?} linear m={m} parts={}: {d}", w.parts());
            }
            let ids = [0u32, 129, 7, 64, 7];
            let got = host(&b, &b.embedding(&w, &ids).unwrap());
            let want: Vec<f32> = ids.iter().flat_map(|&i| wv[i as usize * k..(i as usize + 1) * k].to_vec()).collect();
            assert_eq!(got, want, "{dtype:?} embedding parts={}", w.parts());
        }
    }
}

#[test]
fn quantised_matrices_with_rows_of_partial_blocks_are_widened() {
    let Some(b) = backend() else { return };
    let mut rng = Rng::new(7);
    // 2 rows of 48: three blocks, the second shared by both rows.
    let t = random_blocks(&mut rng, 2, 48, DType::Q4_1);
    let w = b.upload_weight(&t).unwrap();
    assert!(matches!(w.dtype(), DType::F32 | DType::F16), "{:?}", w.dtype());
    let w_dev = if w.is_f16() { round_f16(&t.to_f32()) } else { t.to_f32() };
    let xv = rng.vec(48);
    let got = host(&b, &b.linear(&b.from_host(&xv, 1, 48).unwrap(), &w, None).unwrap());
    let d = max_rel_diff(&got, &linear_ref(&xv, &w_dev, None, 1, 48, 2), 1.0);
    assert!(d < F32_TOL, "{d}");
}

#[test]
fn embedding_gathers_rows_and_rejects_out_of_range_ids() {
    for precision in [WeightPrecision::F32, WeightPrecision::Auto] {
        let Some(b) = backend_with(WgpuConfig { precision, ..Default::default() }) else { return };
        let mut rng = Rng::new(5);
        let (vocab, hidden) = (300, 37);
        let tv = rng.vec(vocab * hidden);
        let table = weight(&b, vec![vocab, hidden], &tv);
        let t_dev = if table.is_f16() { round_f16(&tv) } else { tv.clone() };
        let ids: Vec<u32> = (0..50).map(|_| rng.below(vocab as u64) as u32).chain([0, 299, 0]).collect();
        let got = host(&b, &b.embedding(&table, &ids).unwrap());
        let want: Vec<f32> =
            ids.iter().flat_map(|&i| t_dev[i as usize * hidden..(i as usize + 1) * hidden].to_vec()).collect();
        assert_eq!(got, want);
        match b.embedding(&table, &[3, 300]) {
            Err(Error::TokenOutOfRange { id: 300, vocab_size: 300 }) => {}
            other => panic!("expected TokenOutOfRange, got {other:?}"),
        }
    }
}

fn rms_norm_ref(x: &[f32], w: &[f32], eps: f32, cols: usize) -> Vec<f32> {
    x.chunks(cols)
        .flat_map(|row| {
            let ms = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / cols as f64;
            let inv = 1.0 / (ms + eps as f64).sqrt();
            row.iter().zip(w).map(move |(&v, &g)| (v as f64 * inv * g as f64) as f32)
        })
        .collect()
}

#[test]
fn rms_norm_matches_reference() {
    let Some(b) = backend() else { return };
    let mut rng = Rng::new(6);
    // Widths below, at and above the 256-thread workgroup; 70_000 rows need a folded 2-D grid.
    for (rows, cols) in [(1, 7), (5, 256), (3, 1000), (70_000, 3)] {
        let xv: Vec<f32> = rng.vec(rows * cols).iter().map(|v| v * 3.0).collect();
        let wv = rng.vec(cols);
        let x = b.from_host(&xv, rows, cols).unwrap();
        let w = weight(&b, vec![cols], &wv);
        let got = host(&b, &b.rms_norm(&x, &w, 1e-5).unwrap());
        let d = max_abs_diff(&got, &rms_norm_ref(&xv, &wv, 1e-5, cols));
        assert!(d < EW_TOL, "rms_norm {rows}x{cols}: {d}");
    }
}

fn rope_ref(x: &[f32], positions: &[u32], inv_freq: &[f32], head_dim: usize, cols: usize) -> Vec<f32> {
    let half = head_dim / 2;
    let mut out = x.to_vec();
    for (r, &pos) in positions.iter().enumerate() {
        for h in 0..cols / head_dim {
            let base = r * cols + h * head_dim;
            for i in 0..half {
                let angle = (pos as f32 * inv_freq[i]) as f64; // rounded to f32 as transformers does
                let (s, c) = angle.sin_cos();
                let (a, bb) = (x[base + i] as f64, x[base + i + half] as f64);
                out[base + i] = (a * c - bb * s) as f32;
                out[base + i + half] = (bb * c + a * s) as f32;
            }
        }
    }
    out
}

#[test]
fn rope_matches_reference_at_long_positions() {
    let Some(b) = backend() else { return };
    let mut rng = Rng::new(7);
    for (head_dim, heads, rows, theta) in [(16, 4, 9, 10_000.0f64), (64, 3, 5, 500_000.0), (6, 1, 300, 100.0)] {
        let cols = head_dim * heads;
        let inv_freq: Vec<f32> =
            (0..head_dim / 2).map(|i| (1.0 / theta.powf(2.0 * i as f64 / head_dim as f64)) as f32).collect();
        // Positions up to 200k: angles up to 2e5 radians exercise the range reduction.
        let positions: Vec<u32> = (0..rows).map(|r| if r == 0 { 0 } else { rng.below(200_000) as u32 }).collect();
        let xv = rng.vec(rows * cols);
        let x = b.from_host(&xv, rows, cols).unwrap();
        let len = *positions.iter().max().unwrap() as usize + 1;
        let table = b.from_host(&rope_table_rows(&inv_freq, len), len, head_dim).unwrap();
        let got = host(&b, &b.rope(&x, &positions, &table, head_dim).unwrap());
        let d = max_abs_diff(&got, &rope_ref(&xv, &positions, &inv_freq, head_dim, cols));
        assert!(d < EW_TOL, "rope head_dim {head_dim}: {d}");
    }
}

/// Causal attention of one packed batch in f64, as `Backend::attention` specifies it.
fn attention_ref(q: &[f32], k: &[f32], v: &[f32], seqs: &[AttentionSeq], h: HeadLayout) -> Vec<f32> {
    let (nh, hd) = (h.num_heads, h.head_dim);
    let group = nh / h.num_kv_heads;
    let (qc, kc) = (nh * hd, h.num_kv_heads * hd);
    let rows: usize = seqs.iter().map(|s| s.q_len).sum();
    let mut out = vec![0.0f32; rows * qc];
    for s in seqs {
        for i in 0..s.q_len {
            let r = s.q_start + i;
            let visible = s.kv_len - s.q_len + i + 1;
            for head in 0..nh {
                let kvh = head / group;
                let qv = &q[r * qc + head * hd..r * qc + (head + 1) * hd];
                let scores: Vec<f64> = (0..visible)
                    .map(|j| {
                        let kr = &k[(s.kv_start + j) * kc + kvh * hd..][..hd];
                        qv.iter().zip(kr).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() / (hd as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = e.iter().sum();
                for d in 0..hd {
                    let acc: f64 = (0..visible).map(|j| e[j] * v[(s.kv_start + j) * kc + kvh * hd + d] as f64).sum();
                    out[r * qc + head * hd + d] = (acc / total) as f32;
                }
            }
        }
    }
    out
}

fn check_attention(
    b: &WgpuBackend,
    rng: &mut Rng,
    seq_shapes: &[(usize, usize)],
    kv_gap: usize,
    h: HeadLayout,
    scale: f32,
) {
    // Pack the sequences; leave `kv_gap` unused key rows between them to check kv_start is honoured.
    let mut seqs = Vec::new();
    let (mut q_rows, mut kv_rows) = (0, 0);
    for &(q_len, kv_len) in seq_shapes {
        seqs.push(AttentionSeq { q_start: q_rows, q_len, kv_start: kv_rows, kv_len });
        q_rows += q_len;
        kv_rows += kv_len + kv_gap;
    }
    let (qc, kc) = (h.num_heads * h.head_dim, h.num_kv_heads * h.head_dim);
    let qv: Vec<f32> = rng.vec(q_rows * qc).iter().map(|x| x * scale).collect();
    let kv: Vec<f32> = rng.vec(kv_rows * kc).iter().map(|x| x * scale).collect();
    let vv = rng.vec(kv_rows * kc);
    let (q, k, v) = (
        b.from_host(&qv, q_rows, qc).unwrap(),
        b.from_host(&kv, kv_rows, kc).unwrap(),
        b.from_host(&vv, kv_rows, kc).unwrap(),
    );
    let got = host(b, &b.attention(&q, &k, &v, &seqs, h).unwrap());
    let d = max_abs_diff(&got, &attention_ref(&qv, &kv, &vv, &seqs, h));
    assert!(d < EW_TOL, "attention {seq_shapes:?} {h:?}: {d}");
}

#[test]
fn attention_packed_sequences_with_gqa_match_reference() {
    let Some(b) = backend() else { return };
    let mut rng = Rng::new(8);
    // (q_len, kv_len): prefill, decode over a past, a chunk over a past longer than one 64-key
    // block, single tokens; heads grouped 2:1 and 3:1, head widths 16, 80 (> 64 threads) and 256.
    let seqs = [(5, 5), (1, 1), (3, 70), (1, 130), (7, 9), (66, 66)];
    check_attention(&b, &mut rng, &seqs, 0, HeadLayout { num_heads: 4, num_kv_heads: 2, head_dim: 16 }, 1.0);
    check_attention(&b, &mut rng, &seqs[..4], 3, HeadLayout { num_heads: 3, num_kv_heads: 1, head_dim: 80 }, 1.0);
    check_attention(
        &b,
        &mut rng,
        &[(2, 65), (1, 3)],
        1,
        HeadLayout { num_heads: 2, num_kv_heads: 2, head_dim: 256 },
        1.0,
    );
    // Large scores (peaked softmax) stress the running max.
    check_attention(
        &b,
        &mut rng,
        &[(4, 100), (3, 3)],
        0,
        HeadLayout { num_heads: 4, num_kv_heads: 1, head_dim: 32 },
        6.0,
    );
}

#[test]
fn attention_with_more_rows_than_one_grid_dimension() {
    let Some(b) = backend() else { return };
    let mut rng = Rng::new(9);
    // 66_000 one-token sequences: the row index is folded over two grid dimensions.
    let shapes = vec![(1, 1); 66_000];
    check_attention(&b, &mut rng, &shapes, 0, HeadLayout { num_heads: 1, num_kv_heads: 1, head_dim: 2 }, 1.0);
}

#[test]
fn attention_rejects_inconsistent_layouts() {
    let Some(b) = backend() else { return };
    let q = b.from_host(&[0.0; 8], 2, 4).unwrap();
    let k = b.from_host(&[0.0; 8], 2, 4).unwrap();
    let h = HeadLayout { num_heads: 2, num_kv_heads: 2, head_dim: 2 };
    let bad = [
        vec![AttentionSeq { q_start: 0, q_len: 2, kv_start: 0, kv_len: 1 }], // q_len > kv_len
        vec![AttentionSeq { q_start: 0, q_len: 1, kv_start: 0, kv_len: 1 }], // a row uncovered
        vec![AttentionSeq { q_start: 0, q_len: 2, kv_start: 1, kv_len: 2 }], // keys out of range
    ];
    let c = Checked::new(&b);
    for seqs in bad {
        assert!(matches!(c.attention(&q, &k, &k, &seqs, h), Err(Error::Shape { op: "attention", .. })), "{seqs:?}");
    }
    let h3 = HeadLayout { num_heads: 3, num_kv_heads: 2, head_dim: 2 };
    assert!(c.attention(&q, &k, &k, &[AttentionSeq { q_start: 0, q_len: 2, kv_start: 0, kv_len: 2 }], h3).is_err());
}

#[test]
fn swiglu_and_add_match_reference() {
    let Some(b) = backend() else { return };
    let mut rng = Rng::new(10);
    for (rows, cols) in [(1, 1), (3, 333), (17, 160)] {
        let gv: Vec<f32> = rng.vec(rows * cols).iter().map(|x| x * 12.0).collect();
        let uv = rng.vec(rows * cols);
        let (g, u) = (b.from_host(&gv, rows, cols).unwrap(), b.from_host(&uv, rows, cols).unwrap());
        let want: Vec<f32> =
            gv.iter().zip(&uv).map(|(&g, &u)| (g as f64 / (1.0 + (-g as f64).exp()) * u as f64) as f32).collect();
        let d = max_abs_diff(&host(&b, &b.swiglu(&g, &u).unwrap()), &want);
        assert!(d < EW_TOL, "swiglu {rows}x{cols}: {d}");
        let want: Vec<f32> = gv.iter().zip(&uv).map(|(a, b)| a + b).collect();
        assert_eq!(host(&b, &b.add(&g, &u).unwrap()), want);
    }
    let a = b.from_host(&[0.0; 6], 2, 3).unwrap();
    let c = b.from_host(&[0.0; 6], 3, 2).unwrap();
    let checked = Checked::new(&b);
    assert!(matches!(checked.add(&a, &c), Err(Error::Shape { op: "add", .. })));
    assert!(checked.swiglu(&a, &c).is_err());
}

#[test]
fn gather_scatter_append_and_truncate_rows() {
    let Some(b) = backend() else { return };
    let mut rng = Rng::new(11);
    let cols = 5;
    let (av, bv) = (rng.vec(7 * cols), rng.vec(4 * cols));
    let (ta, tb) = (b.from_host(&av, 7, cols).unwrap(), b.from_host(&bv, 4, cols).unwrap());
    let rows = |v: &[f32], r: std::ops::Range<usize>| v[r.start * cols..r.end * cols].to_vec();

    let g = b
        .gather_rows(&[
            RowSlice { tensor: &ta, rows: 2..5 },
            RowSlice { tensor: &tb, rows: 0..4 },
            RowSlice { tensor: &ta, rows: 6..6 },
            RowSlice { tensor: &ta, rows: 0..1 },
        ])
        .unwrap();
    assert_eq!(b.dims(&g), (8, cols));
    assert_eq!(host(&b, &g), [rows(&av, 2..5), rows(&bv, 0..4), rows(&av, 0..1)].concat());

    // Scatter into a clone: the original keeps its values.
    let mut s = ta.clone();
    let src = b.gather_rows(&[RowSlice { tensor: &tb, rows: 1..3 }]).unwrap();
    b.scatter_rows(&mut s, &[6, 0], &src).unwrap();
    assert_eq!(host(&b, &s), [rows(&bv, 2..3), rows(&av, 1..6), rows(&bv, 1..2)].concat());
    assert_eq!(host(&b, &ta), av);

    // Appends to a clone do not leak into the original, nor into each other.
    let mut grown = ta.clone();
    let mut other = ta.clone();
    b.append_rows(&mut grown, &tb, 1..4).unwrap();
    b.append_rows(&mut other, &tb, 0..1).unwrap();
    assert_eq!(host(&b, &grown), [av.clone(), rows(&bv, 1..4)].concat());
    assert_eq!(host(&b, &other), [av.clone(), rows(&bv, 0..1)].concat());
    assert_eq!(host(&b, &ta), av);

    // Truncate then append: the cut rows are overwritten, the earlier clone untouched.
    let snapshot = grown.clone();
    b.truncate_rows(&mut grown, 3).unwrap();
    assert_eq!(b.dims(&grown), (3, cols));
    b.append_rows(&mut grown, &tb, 3..4).unwrap();
    assert_eq!(host(&b, &grown), [rows(&av, 0..3), rows(&bv, 3..4)].concat());
    assert_eq!(host(&b, &snapshot), [av.clone(), rows(&bv, 1..4)].concat());

    // Bad ranges and widths are typed errors.
    let c = Checked::new(&b);
    assert!(c.gather_rows(&[RowSlice { tensor: &ta, rows: 5..8 }]).is_err());
    assert!(c.scatter_rows(&mut s.clone(), &[7], &src.clone()).is_err());
    assert!(c.append_rows(&mut s.clone(), &g, 0..9).is_err());
    let narrow = b.from_host(&[0.0; 4], 1, 4).unwrap();
    assert!(matches!(c.append_rows(&mut s, &narrow, 0..1), Err(Error::Shape { op: "append_rows", .. })));
    assert!(c.truncate_rows(&mut s, 8).is_err());
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
fn host_round_trip_dims_and_pool_reuse() {
    let Some(b) = backend() else { return };
    let mut rng = Rng::new(13);
    let v = rng.vec(3 * 7);
    let t = b.from_host(&v, 3, 7).unwrap();
    assert_eq!(b.dims(&t), (3, 7));
    assert_eq!(host(&b, &t), v);
    assert!(matches!(b.from_host(&v, 4, 7), Err(Error::Backend { backend: "wgpu", .. })));
    let empty = b.from_host(&[], 0, 7).unwrap();
    assert_eq!(host(&b, &empty), Vec::<f32>::new());
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
    let (wv, xv) = (rng.vec(n * k), rng.vec(k));
    let w = weight(&b, vec![n, k], &wv);
    let got = host(&b, &b.linear(&b.from_host(&xv, 1, k).unwrap(), &w, None).unwrap());
    let d = max_rel_diff(&got, &linear_ref(&xv, &wv, None, 1, k, n), 1.0);
    assert!(d < F32_TOL, "{d}");
}
