//! One conformance suite for every [`Backend`]: each operation against a plain f64 host
//! implementation written here, on seeded random inputs; the contract's typed errors through
//! [`Checked`]; and whole models against Hugging Face transformers' goldens and the PyTorch
//! reference of FocusLLM. Each backend's tests run the same list with
//! [`conformance_tests!`](crate::conformance_tests) (or its halves
//! [`op_conformance_tests!`](crate::op_conformance_tests) and
//! [`model_conformance_tests!`](crate::model_conformance_tests)), one `#[test]` per check. A check
//! panics with a message naming the backend, the case and the difference.
//!
//! Operations go through [`Checked`], as core calls them, so the inputs a check builds are
//! themselves checked against the contract.

use std::ops::Range;

use focusllm_core::focus::CandidateOrder;
use focusllm_core::{
    prefill, rope_table_rows, Activation, AttentionSeq, Backend, Checked, Control, Error, GenerateOptions, HeadLayout,
    HostTensor, KeyValues, LanguageModel, LogitsFor, Pipeline, RowSlice, SeqInput,
};
use half::{bf16, f16};

/// Re-exported for [`conformance_tests!`](crate::conformance_tests), whose tests name weight types.
pub use focusllm_core::DType;

pub use crate::max_abs_diff;
use crate::{fixture_dir, focus_golden, golden, FIXTURES};

/// [`max_rel_diff`] of a product against the f64 reference computed from the values the device
/// holds: only the f32 accumulation (order, rounding) differs, over up to a few hundred terms of
/// order 1.
pub const LINEAR_TOL: f32 = 1e-4;

/// [`max_rel_diff`] of a product whose f32 or bf16 weights the device rounded to f16, against the
/// reference from the unrounded weights: each weight moves by up to 2^-11 of itself.
pub const F16_LINEAR_TOL: f32 = 1e-2;

/// [`max_abs_diff`] of RMSNorm, RoPE, attention and SwiGLU against their f64 references: f32
/// arithmetic throughout on values of order 1-10, with f32 transcendental functions.
pub const POINTWISE_TOL: f32 = 1e-5;

/// [`max_abs_diff`] of a whole tiny model's logits (order 1-5) against transformers and the
/// FocusLLM reference, with the checkpoint's weights: both sides compute in f32 from the same
/// stored values, so only the summation order differs.
pub const MODEL_TOL: f32 = 1e-4;

/// [`max_abs_diff`] of the tiny models' logits against the references when the device rounds
/// f32 and bf16 matrices to f16 (2^-11 relative per weight, through every layer).
pub const F16_MODEL_TOL: f32 = 2e-2;

/// [`max_abs_diff`] of logits computed from the same device weights along two paths (through the
/// KV cache or in one forward, in a packed batch or alone): only summation order differs.
pub const SAME_WEIGHTS_TOL: f32 = 1e-4;

/// How a backend keeps weights on its device, which fixes the values its results are held to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Storage {
    /// Every weight exactly as the checkpoint holds it: f32, f16 and bf16 values, quantised blocks.
    #[default]
    Exact,
    /// Matrices in f16 (wgpu's default on adapters with f16 shaders), except Q8_0, Q4_0 and Q4_1
    /// matrices whose rows are whole blocks, which stay blocks; vectors exact.
    F16Matrices,
}

impl Storage {
    /// [`Storage::F16Matrices`] when `f16` holds, else [`Storage::Exact`].
    pub fn f16_matrices_if(f16: bool) -> Self {
        if f16 {
            Storage::F16Matrices
        } else {
            Storage::Exact
        }
    }

    /// The values a weight uploaded from `t` holds on the device.
    pub fn stored(self, t: &HostTensor<'_>) -> Vec<f32> {
        let values = t.to_f32();
        let rounded = self == Storage::F16Matrices
            && matches!(t.shape.as_slice(), &[_, cols] if !(DType::QUANTIZED.contains(&t.dtype) && cols % t.dtype.block().0 == 0));
        if rounded {
            round_f16(&values)
        } else {
            values
        }
    }

    /// Tolerance of a whole model's logits against the goldens.
    pub fn model_tol(self) -> f32 {
        match self {
            Storage::Exact => MODEL_TOL,
            Storage::F16Matrices => F16_MODEL_TOL,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Shared helpers.

/// A small deterministic PRNG (SplitMix64), so every backend sees the same inputs.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    /// `n` values uniform in [-1, 1).
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform()).collect()
    }

    /// `n` values uniform in [-scale, scale).
    pub fn scaled(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform() * scale).collect()
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Largest `|a - b| / (1 + |b|)` over the elements, `b` the reference: relative for large values,
/// absolute near zero.
pub fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs() / (1.0 + y.abs())).fold(0.0, f32::max)
}

/// Every value rounded to the nearest f16.
pub fn round_f16(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| f16::from_f32(x).to_f32()).collect()
}

/// A host tensor of a dense type (F32, F16, BF16) holding `values` (rounded to the type).
///
/// # Panics
/// For a quantised type (see [`random_blocks`]) or `values` not matching `shape`.
pub fn dense_tensor(dtype: DType, shape: Vec<usize>, values: &[f32]) -> HostTensor<'static> {
    assert_eq!(shape.iter().product::<usize>(), values.len(), "values for shape {shape:?}");
    let bytes: Vec<u8> = match dtype {
        DType::F32 => values.iter().flat_map(|x| x.to_le_bytes()).collect(),
        DType::F16 => values.iter().flat_map(|&x| f16::from_f32(x).to_le_bytes()).collect(),
        DType::BF16 => values.iter().flat_map(|&x| bf16::from_f32(x).to_le_bytes()).collect(),
        _ => panic!("{dtype:?}: dense_tensor makes dense tensors"),
    };
    HostTensor { name: "w".into(), dtype, shape, bytes: bytes.into() }
}

/// A `[rows, cols]` tensor of valid random ggml blocks of `dtype` (any block type): f16 scales of
/// either sign keeping the values within about ±1 (divided by the largest group scale of the
/// 256-element types), minima within ±0.5 (likewise), random quant bytes (every bit pattern
/// likely). `rows * cols` must be whole blocks; rows need not be.
pub fn random_blocks(dtype: DType, rows: usize, cols: usize, rng: &mut Rng) -> HostTensor<'static> {
    assert!(dtype.is_quantized(), "{dtype:?} has no blocks");
    let (block, block_bytes) = dtype.block();
    let range = dtype.quant_range();
    let largest_quant = f32::from(range.start().unsigned_abs().max(range.end().unsigned_abs()));
    // The largest integer the 256-element types multiply their f16 scale by, per group.
    let group_scale = match dtype {
        DType::Q6_K => 128.0,
        DType::Q2_K => 16.0,
        _ if block > 32 => 64.0,
        _ => 1.0,
    };
    assert_eq!(rows * cols % block, 0, "{rows}x{cols} is not whole {dtype:?} blocks");
    let mut bytes = Vec::with_capacity(rows * cols / block * block_bytes);
    for _ in 0..rows * cols / block {
        let mut b: Vec<u8> = (0..block_bytes).map(|_| rng.below(256) as u8).collect();
        for (k, &at) in dtype.f16_fields().iter().enumerate() {
            let mut u = rng.uniform();
            if block > 32 {
                // At least a quarter of the range: the group scales multiply the super-block's
                // scale by small integers, and values far below f16's normal range would make the
                // f16-widened storage of some backends lose its relative precision.
                u = (0.25 + 0.75 * u.abs()).copysign(u);
            }
            let x = if k == 0 { u / largest_quant } else { u / 2.0 } / group_scale;
            b[at..at + 2].copy_from_slice(&f16::from_f32(x).to_le_bytes());
        }
        bytes.extend(b);
    }
    HostTensor { name: "w".into(), dtype, shape: vec![rows, cols], bytes: bytes.into() }
}

/// A random `[rows, cols]` weight of any type, values within about ±1.
pub fn random_weight(dtype: DType, rows: usize, cols: usize, rng: &mut Rng) -> HostTensor<'static> {
    if dtype.is_quantized() {
        random_blocks(dtype, rows, cols, rng)
    } else {
        dense_tensor(dtype, vec![rows, cols], &rng.vec(rows * cols))
    }
}

/// Rows `ids` of a row-major table with rows of `cols` values.
pub fn rows_of(table: &[f32], cols: usize, ids: &[u32]) -> Vec<f32> {
    ids.iter().flat_map(|&i| table[i as usize * cols..(i as usize + 1) * cols].iter().copied()).collect()
}

/// `x @ w^T + bias` in f64: `x` is `[m, k]`, `w` is `[n, k]`.
pub fn linear_ref(x: &[f32], w: &[f32], bias: Option<&[f32]>, m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut y = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let dot: f64 =
                x[i * k..(i + 1) * k].iter().zip(&w[j * k..(j + 1) * k]).map(|(&a, &b)| a as f64 * b as f64).sum();
            y[i * n + j] = (dot + bias.map_or(0.0, |b| b[j] as f64)) as f32;
        }
    }
    y
}

/// Row-wise RMSNorm scaled by `w`, in f64.
pub fn rms_norm_ref(x: &[f32], w: &[f32], eps: f32, cols: usize) -> Vec<f32> {
    x.chunks(cols)
        .flat_map(|row| {
            let ms = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / cols as f64;
            let inv = 1.0 / (ms + eps as f64).sqrt();
            row.iter().zip(w).map(move |(&v, &g)| (v as f64 * inv * g as f64) as f32)
        })
        .collect()
}

/// RoPE (half-split layout) of every head of every row, in f64 from the angles
/// `f32(position) * inv_freq[i]` rounded to f32, as transformers computes them.
pub fn rope_ref(x: &[f32], positions: &[u32], inv_freq: &[f32], head_dim: usize) -> Vec<f32> {
    let half = head_dim / 2;
    let cols = x.len() / positions.len().max(1);
    let mut out = x.to_vec();
    for (r, &pos) in positions.iter().enumerate() {
        for h in 0..cols / head_dim {
            let base = r * cols + h * head_dim;
            for i in 0..half {
                let (s, c) = ((pos as f32 * inv_freq[i]) as f64).sin_cos();
                let (a, b) = (x[base + i] as f64, x[base + i + half] as f64);
                out[base + i] = (a * c - b * s) as f32;
                out[base + i + half] = (b * c + a * s) as f32;
            }
        }
    }
    out
}

/// Causal attention of a packed batch in f64, as [`Backend::attention`] specifies it (scale and
/// window from `h`).
pub fn attention_ref(q: &[f32], k: &[f32], v: &[f32], seqs: &[AttentionSeq], h: HeadLayout) -> Vec<f32> {
    let (nh, hd) = (h.num_heads, h.head_dim);
    let group = nh / h.num_kv_heads;
    let (qc, kc) = (nh * hd, h.num_kv_heads * hd);
    let rows: usize = seqs.iter().map(|s| s.q_len).sum();
    let mut out = vec![0.0f32; rows * qc];
    for s in seqs {
        for i in 0..s.q_len {
            let r = s.q_start + i;
            let visible = s.kv_len - s.q_len + i + 1;
            let first = h.window.map_or(0, |w| visible.saturating_sub(w));
            for head in 0..nh {
                let kvh = head / group;
                let qv = &q[r * qc + head * hd..][..hd];
                let scores: Vec<f64> = (first..visible)
                    .map(|j| {
                        let kr = &k[(s.kv_start + j) * kc + kvh * hd..][..hd];
                        qv.iter().zip(kr).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() * h.scale as f64
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = e.iter().sum();
                for d in 0..hd {
                    let acc: f64 =
                        (first..visible).map(|j| e[j - first] * v[(s.kv_start + j) * kc + kvh * hd + d] as f64).sum();
                    out[r * qc + head * hd + d] = (acc / total) as f32;
                }
            }
        }
    }
    out
}

/// `act(gate) * up` in f64: SiLU, or GELU's tanh approximation.
pub fn glu_ref(gate: &[f32], up: &[f32], act: Activation) -> Vec<f32> {
    let f = |g: f64| match act {
        Activation::Silu => g / (1.0 + (-g).exp()),
        Activation::GeluTanh => {
            0.5 * g * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (g + 0.044715 * g.powi(3))).tanh())
        }
    };
    gate.iter().zip(up).map(|(&g, &u)| (f(g as f64) * u as f64) as f32).collect()
}

/// `a + b` in f64 (rounded once to f32, so equal to the f32 sum).
pub fn add_ref(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(&x, &y)| (x as f64 + y as f64) as f32).collect()
}

/// Sequences given as `(q_len, kv_len)` packed one after another, `kv_gap` unused key rows after
/// each sequence's keys (so a backend must honour `kv_start`).
pub fn pack(shapes: &[(usize, usize)], kv_gap: usize) -> Vec<AttentionSeq> {
    let (mut q, mut kv) = (0, 0);
    shapes
        .iter()
        .map(|&(q_len, kv_len)| {
            let s = AttentionSeq { q_start: q, q_len, kv_start: kv, kv_len };
            q += q_len;
            kv += kv_len + kv_gap;
            s
        })
        .collect()
}

/// The inverse frequencies of RoPE with base `theta` for heads of `head_dim`.
pub fn inv_freq(theta: f64, head_dim: usize) -> Vec<f32> {
    (0..head_dim / 2).map(|i| (1.0 / theta.powf(2.0 * i as f64 / head_dim as f64)) as f32).collect()
}

fn host<B: Backend>(b: &B, t: &B::Tensor) -> Vec<f32> {
    b.to_host(t).unwrap_or_else(|e| panic!("{}: reading a tensor back: {e}", b.name()))
}

fn tensor<B: Backend>(b: &B, data: &[f32], rows: usize, cols: usize) -> B::Tensor {
    Checked::new(b).from_host(data, rows, cols).unwrap_or_else(|e| panic!("{}: from_host {rows}x{cols}: {e}", b.name()))
}

fn upload<B: Backend>(b: &B, t: &HostTensor<'_>) -> B::Weight {
    Checked::new(b)
        .upload_weight(t)
        .unwrap_or_else(|e| panic!("{}: uploading a {:?} {:?} weight: {e}", b.name(), t.dtype, t.shape))
}

/// Panics unless `r` is a shape error of `op`.
fn refused<T>(backend: &str, r: focusllm_core::Result<T>, op: &str, what: &str) {
    match r {
        Err(Error::Shape { op: o, .. }) if o == op => {}
        Err(e) => panic!("{backend}: {what}: expected a shape error of `{op}`, got: {e}"),
        Ok(_) => panic!("{backend}: {what}: accepted, expected a shape error of `{op}`"),
    }
}

// ---------------------------------------------------------------------------------------------
// Operation checks: `fn(&B, Storage)`, each against its f64 reference.

/// `from_host` then `to_host` gives the values back exactly, with the dims asked for, empty and
/// one-element tensors included.
pub fn round_trip<B: Backend>(b: &B, _: Storage) {
    let mut rng = Rng::new(13);
    for (rows, cols) in [(3, 7), (1, 1), (0, 7), (257, 33)] {
        let v = rng.vec(rows * cols);
        let t = tensor(b, &v, rows, cols);
        assert_eq!(b.dims(&t), (rows, cols), "{}: dims", b.name());
        assert_eq!(host(b, &t), v, "{}: round trip of {rows}x{cols}", b.name());
    }
}

/// A reshaped tensor holds the same elements in the same order under its new dimensions, an
/// RMSNorm over the new rows normalises each piece of the old ones (per-head norms), and a shape of
/// another element count is refused before the backend sees it.
pub fn reshape<B: Backend>(b: &B, _: Storage) {
    let mut rng = Rng::new(17);
    let c = Checked::new(b);
    for (rows, cols, heads) in [(3, 32, 4), (1, 8, 1), (65, 96, 6)] {
        let v = rng.vec(rows * cols);
        let t = c.reshape(tensor(b, &v, rows, cols), rows * heads, cols / heads).unwrap();
        assert_eq!(b.dims(&t), (rows * heads, cols / heads), "{}: reshaped dims", b.name());
        assert_eq!(host(b, &t), v, "{}: reshaped {rows}x{cols} into {heads} pieces a row", b.name());
        let w = rng.vec(cols / heads);
        let normed = c.rms_norm(&t, &upload(b, &dense_tensor(DType::F32, vec![cols / heads], &w)), 1e-6).unwrap();
        let back = c.reshape(normed, rows, cols).unwrap();
        let want: Vec<f32> = v
            .chunks(cols / heads)
            .flat_map(|piece| {
                let ms = piece.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>() / piece.len() as f64;
                let inv = 1.0 / (ms + 1e-6).sqrt();
                piece.iter().zip(&w).map(move |(&x, &w)| (f64::from(x) * inv) as f32 * w).collect::<Vec<_>>()
            })
            .collect();
        let d = max_rel_diff(&host(b, &back), &want);
        assert!(d < 1e-5, "{}: per-piece RMSNorm of {rows}x{cols}: rel diff {d}", b.name());
    }
    assert!(c.reshape(tensor(b, &rng.vec(12), 3, 4), 5, 2).is_err(), "{}: 12 elements as 5x2", b.name());
}

/// Embedding lookups of every weight type, whole tables of several widths (dense ones not
/// multiples of any tile, quantised ones with rows of whole and of partial blocks), repeated and
/// edge ids: exactly the rows of the host conversion (`HostTensor::to_f32`) of the table as the
/// device stores it.
pub fn embedding<B: Backend>(b: &B, storage: Storage, dtype: DType) {
    let mut rng = Rng::new(5);
    let tables: &[(usize, usize)] = match dtype.block().0 {
        1 => &[(300, 37), (100, 300)],
        32 => &[(64, 96), (130, 96), (6, 48)],
        _ => &[(64, 256), (13, 512), (4, 128)],
    };
    for &(vocab, hidden) in tables {
        let t = random_weight(dtype, vocab, hidden, &mut rng);
        let table = upload(b, &t);
        let ids: Vec<u32> =
            (0..50).map(|_| rng.below(vocab as u64) as u32).chain([0, vocab as u32 - 1, 0, 3]).collect();
        let got = host(b, &Checked::new(b).embedding(&table, &ids).unwrap());
        let want = rows_of(&storage.stored(&t), hidden, &ids);
        assert!(got == want, "{}: {dtype:?} embedding of a [{vocab}, {hidden}] table differs from its rows", b.name());
    }
}

/// Shapes `(m, k, n)` of the dense products: decode rows (1-4: matrix-vector kernels), a few rows
/// and many (tiled kernels, tensor cores), mostly not multiples of any tile or of 16.
pub const DENSE_LINEAR_SHAPES: [(usize, usize, usize); 18] = [
    (1, 37, 53),
    (1, 64, 96),
    (2, 64, 130),
    (3, 33, 17),
    (4, 17, 9),
    (3, 300, 7),
    (5, 16, 64),
    (8, 128, 64),
    (9, 64, 130),
    (17, 40, 70),
    (32, 16, 64),
    (33, 20, 65),
    (64, 64, 64),
    (70, 33, 65),
    (70, 96, 72),
    (131, 100, 129),
    (257, 160, 64),
    (64, 576, 1536),
];

/// Shapes `(m, k, n)` of the quantised products: widths of whole blocks in every kernel, and
/// rows of partial blocks (48 wide: blocks shared by two rows).
pub const QUANT_LINEAR_SHAPES: [(usize, usize, usize); 12] = [
    (1, 64, 96),
    (1, 96, 130),
    (3, 96, 17),
    (3, 96, 130),
    (8, 128, 64),
    (9, 64, 130),
    (17, 96, 130),
    (70, 96, 72),
    (70, 96, 130),
    (64, 576, 1536),
    (1, 48, 2),
    (5, 48, 6),
];

/// Shapes `(m, k, n)` of the products with the 256-element block types: widths of whole blocks,
/// and rows of half a block (128 wide: blocks shared by two rows).
pub const SUPER_BLOCK_LINEAR_SHAPES: [(usize, usize, usize); 8] = [
    (1, 256, 96),
    (1, 512, 130),
    (3, 256, 17),
    (9, 512, 64),
    (17, 256, 130),
    (70, 256, 72),
    (64, 1536, 576),
    (5, 128, 6),
];

/// `x @ w^T (+ bias)` with `w` of `dtype`, every shape of [`DENSE_LINEAR_SHAPES`],
/// [`QUANT_LINEAR_SHAPES`] or [`SUPER_BLOCK_LINEAR_SHAPES`] (by the type's block size), with and without a bias (f32, f16 or bf16 values): within
/// [`LINEAR_TOL`] of the f64 product with the weights as the device stores them, and within
/// [`F16_LINEAR_TOL`] of the product with the checkpoint's values where the device rounds them.
pub fn linear<B: Backend>(b: &B, storage: Storage, dtype: DType) {
    let mut rng = Rng::new(1);
    let shapes: &[(usize, usize, usize)] = match dtype.block().0 {
        1 => &DENSE_LINEAR_SHAPES,
        32 => &QUANT_LINEAR_SHAPES,
        _ => &SUPER_BLOCK_LINEAR_SHAPES,
    };
    let bias_types = [DType::F32, DType::BF16, DType::F16];
    let mut worst = 0.0f32;
    for (i, &(m, k, n)) in shapes.iter().enumerate() {
        for with_bias in [false, true] {
            let w = random_weight(dtype, n, k, &mut rng);
            let bias = with_bias.then(|| dense_tensor(bias_types[i % 3], vec![n], &rng.vec(n)));
            let x = rng.vec(m * k);
            worst = worst.max(linear_case(b, storage, &x, m, &w, bias.as_ref()));
        }
    }
    eprintln!("MEASURED {} linear {dtype:?} ({storage:?}): max rel diff {worst:.2e}", b.name());
}

/// One product `x @ w^T (+ bias)` (`x` is `[m, k]`, `w` is `[n, k]`) checked as [`linear`] says;
/// returns its [`max_rel_diff`] against the reference from the stored weights.
pub fn linear_case<B: Backend>(
    b: &B,
    storage: Storage,
    x: &[f32],
    m: usize,
    w: &HostTensor<'_>,
    bias: Option<&HostTensor<'_>>,
) -> f32 {
    let (n, k) = (w.shape[0], w.shape[1]);
    let c = Checked::new(b);
    let (xt, wt) = (tensor(b, x, m, k), upload(b, w));
    let bt = bias.map(|t| upload(b, t));
    let y = c.linear(&xt, &wt, bt.as_ref()).unwrap_or_else(|e| panic!("{}: linear: {e}", b.name()));
    let what = format!("{}: linear {:?} {m}x{k} @ [{n}, {k}] bias {:?}", b.name(), w.dtype, bias.map(|t| t.dtype));
    assert_eq!(b.dims(&y), (m, n), "{what}: dims");
    let got = host(b, &y);
    let bias = bias.map(HostTensor::to_f32);
    let (stored, exact) = (storage.stored(w), w.to_f32());
    let d = max_rel_diff(&got, &linear_ref(x, &stored, bias.as_deref(), m, k, n));
    assert!(d < LINEAR_TOL, "{what}: rel diff {d} against the stored weights ({storage:?})");
    if stored != exact {
        let e = max_rel_diff(&got, &linear_ref(x, &exact, bias.as_deref(), m, k, n));
        assert!(e < F16_LINEAR_TOL, "{what}: rel diff {e} against the checkpoint's weights");
    }
    d
}

/// RMSNorm of rows narrower and wider than a workgroup, and of more rows than one grid
/// dimension, scales in f32, bf16 and f16, within [`POINTWISE_TOL`].
pub fn rms_norm<B: Backend>(b: &B, _: Storage) {
    let mut rng = Rng::new(6);
    let cases =
        [(1, 7, 3.0, 1e-5), (5, 256, 3.0, 1e-5), (3, 1000, 3.0, 1e-6), (70_000, 3, 3.0, 1e-5), (37, 576, 4.0, 1e-5)];
    let mut worst = 0.0f32;
    for (i, (rows, cols, scale, eps)) in cases.into_iter().enumerate() {
        let xv = rng.scaled(rows * cols, scale);
        let w = dense_tensor([DType::F32, DType::BF16, DType::F16][i % 3], vec![cols], &rng.vec(cols));
        let got = host(b, &Checked::new(b).rms_norm(&tensor(b, &xv, rows, cols), &upload(b, &w), eps).unwrap());
        let d = max_abs_diff(&got, &rms_norm_ref(&xv, &w.to_f32(), eps, cols));
        assert!(d < POINTWISE_TOL, "{}: rms_norm {rows}x{cols} ({:?} scale): max |diff| {d}", b.name(), w.dtype);
        worst = worst.max(d);
    }
    eprintln!("MEASURED {} rms_norm: max |diff| {worst:.2e}", b.name());
}

/// RoPE of head widths 6 to 128 at positions up to 200k (angles of 2e5 radians exercise the range
/// reduction), through the model's table layout (`rope_table_rows`), within [`POINTWISE_TOL`].
pub fn rope<B: Backend>(b: &B, _: Storage) {
    let mut rng = Rng::new(7);
    // (head_dim, heads, rows, theta, largest position)
    let cases = [
        (16, 4, 9, 10_000.0, 200_000),
        (64, 3, 5, 500_000.0, 200_000),
        (6, 1, 300, 100.0, 200_000),
        (128, 2, 4, 1_000_000.0, 200_000),
        (64, 9, 37, 10_000.0, 131_072),
    ];
    let mut worst = 0.0f32;
    for (head_dim, heads, rows, theta, largest) in cases {
        let cols = head_dim * heads;
        let freqs = inv_freq(theta, head_dim);
        let positions: Vec<u32> =
            (0..rows as u64).map(|r| if r == 0 { 0 } else { rng.below(largest) as u32 }).collect();
        let xv = rng.scaled(rows * cols, 4.0);
        let len = *positions.iter().max().unwrap() as usize + 1;
        let table = tensor(b, &rope_table_rows(&freqs, len), len, head_dim);
        let got = host(b, &Checked::new(b).rope(&tensor(b, &xv, rows, cols), &positions, &table, head_dim).unwrap());
        let d = max_abs_diff(&got, &rope_ref(&xv, &positions, &freqs, head_dim));
        assert!(d < POINTWISE_TOL, "{}: rope head_dim {head_dim} x {heads} heads: max |diff| {d}", b.name());
        worst = worst.max(d);
    }
    eprintln!("MEASURED {} rope: max |diff| {worst:.2e}", b.name());
}

/// Attention of sequences `(q_len, kv_len)` against [`attention_ref`], twice: every sequence
/// reading one packed key/value pair, and every sequence reading a pair of its own (with `kv_gap`
/// unused rows before its keys); returns the larger difference. Queries and keys are scaled by
/// `scale` (large: a peaked softmax).
pub fn attention_case<B: Backend>(
    b: &B,
    rng: &mut Rng,
    shapes: &[(usize, usize)],
    kv_gap: usize,
    h: HeadLayout,
    scale: f32,
) -> f32 {
    let seqs = pack(shapes, kv_gap);
    let q_rows: usize = shapes.iter().map(|s| s.0).sum();
    let kv_rows: usize = shapes.iter().map(|s| s.1 + kv_gap).sum();
    let (qc, kc) = (h.num_heads * h.head_dim, h.num_kv_heads * h.head_dim);
    let (qv, kv, vv) = (rng.scaled(q_rows * qc, scale), rng.scaled(kv_rows * kc, scale), rng.vec(kv_rows * kc));
    let (q, k, v) = (tensor(b, &qv, q_rows, qc), tensor(b, &kv, kv_rows, kc), tensor(b, &vv, kv_rows, kc));
    let expected = attention_ref(&qv, &kv, &vv, &seqs, h);
    let what = shapes.iter().take(4).map(|s| format!("{s:?}")).collect::<Vec<_>>().join(" ");
    let more = if shapes.len() > 4 { " ..." } else { "" };
    let check = |pairs: &[KeyValues<'_, B::Tensor>], seqs: &[AttentionSeq], layout: &str| {
        let out = Checked::new(b)
            .attention(&q, pairs, seqs, h)
            .unwrap_or_else(|e| panic!("{}: attention ({layout}): {e}", b.name()));
        assert_eq!(b.dims(&out), (q_rows, qc), "{}: attention dims", b.name());
        let d = max_abs_diff(&host(b, &out), &expected);
        assert!(d < POINTWISE_TOL, "{}: attention ({layout}) [{what}{more}] {h:?}: max |diff| {d}", b.name());
        d
    };
    let shared = check(&vec![KeyValues { k: &k, v: &v }; seqs.len()], &seqs, "one packed pair");
    // Each sequence's own pair: `kv_gap` rows of other keys, then its keys.
    let own = |data: &[f32], s: &AttentionSeq| {
        let start = s.kv_start.saturating_sub(kv_gap);
        tensor(b, &data[start * kc..(s.kv_start + s.kv_len) * kc], s.kv_start - start + s.kv_len, kc)
    };
    let tensors: Vec<_> = seqs.iter().map(|s| (own(&kv, s), own(&vv, s))).collect();
    let pairs: Vec<_> = tensors.iter().map(|(k, v)| KeyValues { k, v }).collect();
    let local: Vec<_> = seqs.iter().map(|s| AttentionSeq { kv_start: s.kv_start.min(kv_gap), ..*s }).collect();
    shared.max(check(&pairs, &local, "a pair per sequence"))
}

/// Attention of packed batches: prefill, single-row decode over long pasts (key splits), chunks
/// over pasts (q_len < kv_len), GQA 2:1 to 3:1 and none, head widths 16 to 256, unused key rows
/// between sequences, and peaked softmaxes; within [`POINTWISE_TOL`].
pub fn attention<B: Backend>(b: &B, _: Storage) {
    let mut rng = Rng::new(8);
    let hl = HeadLayout::new;
    // A sliding window of `w` keys, scores scaled as by a query_pre_attn_scalar of 100.
    let windowed = |h: HeadLayout, w| HeadLayout { window: Some(w), scale: 0.1, ..h };
    let mixed = [(5, 5), (1, 1), (3, 70), (1, 130), (7, 9), (66, 66)];
    // (sequences as (q_len, kv_len), unused key rows after each, heads, q/k scale)
    type Case = (Vec<(usize, usize)>, usize, HeadLayout, f32);
    let cases: Vec<Case> = vec![
        (mixed.to_vec(), 0, hl(4, 2, 16), 1.0),
        (mixed[..4].to_vec(), 3, hl(3, 1, 80), 1.0),
        (vec![(2, 65), (1, 3)], 1, hl(2, 2, 256), 1.0),
        (vec![(4, 100), (3, 3)], 0, hl(4, 1, 32), 6.0),
        (vec![(37, 37)], 0, hl(4, 2, 16), 1.0),
        (vec![(1, 3000)], 0, hl(9, 3, 64), 1.0),
        (vec![(5, 20), (16, 16), (1, 700), (33, 40)], 0, hl(6, 2, 128), 1.0),
        (vec![(20, 50)], 0, hl(2, 1, 256), 1.0),
        (vec![(3, 9), (17, 17)], 2, hl(4, 4, 80), 1.0),
        (vec![(300, 300); 8], 0, hl(9, 3, 64), 1.0),
        // Several sequences of a few rows over pasts, GQA 3:1 (decoding a batch of chunks).
        (vec![(2, 40), (1, 9), (3, 77), (2, 2)], 1, hl(6, 2, 64), 1.0),
        // Sliding windows: shorter than, within and past the keys; prefill, chunks, decode.
        (mixed.to_vec(), 0, windowed(hl(4, 2, 16), 4), 1.0),
        (vec![(300, 300), (1, 3000), (5, 700)], 0, windowed(hl(4, 1, 64), 100), 1.0),
        (vec![(140, 200), (2, 40), (1, 1)], 2, windowed(hl(2, 2, 256), 129), 3.0),
        (vec![(9, 9)], 0, windowed(hl(2, 1, 32), 50), 1.0),
    ];
    let mut worst = 0.0f32;
    for (shapes, gap, h, scale) in cases {
        worst = worst.max(attention_case(b, &mut rng, &shapes, gap, h, scale));
    }
    eprintln!("MEASURED {} attention: max |diff| {worst:.2e}", b.name());
}

/// Shapes and scales `(rows, cols, gate scale, up scale)` of the elementwise checks.
const ELEMENTWISE_CASES: [(usize, usize, f32, f32); 4] =
    [(1, 1, 12.0, 1.0), (3, 333, 12.0, 1.0), (17, 160, 12.0, 1.0), (37, 576, 4.0, 4.0)];

/// SwiGLU and GeGLU within [`POINTWISE_TOL`] of the f64 reference, gates large enough to
/// saturate the sigmoid and the tanh.
pub fn glu<B: Backend>(b: &B, _: Storage) {
    let mut rng = Rng::new(10);
    for act in [Activation::Silu, Activation::GeluTanh] {
        let mut worst = 0.0f32;
        for (rows, cols, gs, us) in ELEMENTWISE_CASES {
            let (gv, uv) = (rng.scaled(rows * cols, gs), rng.scaled(rows * cols, us));
            let (g, u) = (tensor(b, &gv, rows, cols), tensor(b, &uv, rows, cols));
            let got = host(b, &Checked::new(b).glu(&g, &u, act).unwrap());
            let d = max_abs_diff(&got, &glu_ref(&gv, &uv, act));
            assert!(d < POINTWISE_TOL, "{}: {act:?} glu {rows}x{cols}: max |diff| {d}", b.name());
            worst = worst.max(d);
        }
        eprintln!("MEASURED {} {act:?} glu: max |diff| {worst:.2e}", b.name());
    }
}

/// Scaling by a constant: exactly the f32 product.
pub fn scale<B: Backend>(b: &B, _: Storage) {
    let mut rng = Rng::new(12);
    for (rows, cols, gs, _) in ELEMENTWISE_CASES {
        let xv = rng.scaled(rows * cols, gs);
        let factor = 25.298_222;
        let got = host(b, &Checked::new(b).scale(&tensor(b, &xv, rows, cols), factor).unwrap());
        let want: Vec<f32> = xv.iter().map(|x| x * factor).collect();
        assert_eq!(got, want, "{}: scale {rows}x{cols}", b.name());
    }
}

/// The residual sum, exactly the correctly rounded f32 sum.
pub fn add<B: Backend>(b: &B, _: Storage) {
    let mut rng = Rng::new(11);
    for (rows, cols, gs, us) in ELEMENTWISE_CASES {
        let (av, bv) = (rng.scaled(rows * cols, gs), rng.scaled(rows * cols, us));
        let got = host(b, &Checked::new(b).add(&tensor(b, &av, rows, cols), &tensor(b, &bv, rows, cols)).unwrap());
        assert!(got == add_ref(&av, &bv), "{}: add {rows}x{cols} is not the exact f32 sum", b.name());
    }
}

/// Row gathers (several tensors, empty ranges), scatters, appends (one row at a time and in
/// ranges) and truncations, exactly; clones stay independent values: a write through one never
/// shows in another.
pub fn rows<B: Backend>(b: &B, _: Storage) {
    let c = Checked::new(b);
    let name = b.name();
    let mut rng = Rng::new(12);
    let cols = 48;
    let (av, bv) = (rng.vec(10 * cols), rng.vec(6 * cols));
    let (ta, tb) = (tensor(b, &av, 10, cols), tensor(b, &bv, 6, cols));
    let rows = |v: &[f32], r: Range<usize>| v[r.start * cols..r.end * cols].to_vec();
    let slice = |tensor, range| RowSlice { tensor, rows: range };

    let g = c
        .gather_rows(&[slice(&ta, 2..5), slice(&tb, 0..6), slice(&ta, 6..6), slice(&ta, 9..10), slice(&ta, 0..1)])
        .unwrap();
    assert_eq!(b.dims(&g), (11, cols), "{name}: gather dims");
    assert_eq!(
        host(b, &g),
        [rows(&av, 2..5), bv.clone(), rows(&av, 9..10), rows(&av, 0..1)].concat(),
        "{name}: gather"
    );

    // Scatter into a clone: the original keeps its values.
    let mut s = ta.clone();
    c.scatter_rows(&mut s, &[9, 0], &c.gather_rows(&[slice(&tb, 1..3)]).unwrap()).unwrap();
    assert_eq!(host(b, &s), [rows(&bv, 2..3), rows(&av, 1..9), rows(&bv, 1..2)].concat(), "{name}: scatter");
    assert_eq!(host(b, &ta), av, "{name}: a scatter into a clone showed in the original");

    // Appends to clones do not leak into the original, nor into each other.
    let (mut grown, mut other) = (ta.clone(), ta.clone());
    c.append_rows(&mut grown, &tb, 1..4).unwrap();
    c.append_rows(&mut other, &tb, 0..1).unwrap();
    assert_eq!(host(b, &grown), [av.clone(), rows(&bv, 1..4)].concat(), "{name}: append");
    assert_eq!(host(b, &other), [av.clone(), rows(&bv, 0..1)].concat(), "{name}: an append showed in a sibling clone");
    assert_eq!(host(b, &ta), av, "{name}: an append to a clone showed in the original");

    // Truncate then append: the cut rows are overwritten, an earlier clone untouched.
    let snapshot = grown.clone();
    c.truncate_rows(&mut grown, 3).unwrap();
    assert_eq!(b.dims(&grown), (3, cols), "{name}: truncate dims");
    c.append_rows(&mut grown, &tb, 3..4).unwrap();
    assert_eq!(host(b, &grown), [rows(&av, 0..3), rows(&bv, 3..4)].concat(), "{name}: truncate then append");
    assert_eq!(host(b, &snapshot), [av.clone(), rows(&bv, 1..4)].concat(), "{name}: a truncation showed in a clone");

    // A cache grown one row at a time (amortised growth); a clone taken midway keeps its rows,
    // and a scatter into it never shows in the cache.
    let mut cache = c.gather_rows(&[slice(&ta, 0..1)]).unwrap();
    let mut expected = rows(&av, 0..1);
    let mut midway = None;
    for r in 1..10 {
        c.append_rows(&mut cache, &ta, r..r + 1).unwrap();
        expected.extend(rows(&av, r..r + 1));
        if r == 4 {
            midway = Some((cache.clone(), expected.clone()));
        }
    }
    for _ in 0..200 {
        let row = rng.vec(cols);
        c.append_rows(&mut cache, &tensor(b, &row, 1, cols), 0..1).unwrap();
        expected.extend(row);
    }
    c.append_rows(&mut cache, &tb, 1..4).unwrap();
    expected.extend(rows(&bv, 1..4));
    assert_eq!(b.dims(&cache), (213, cols), "{name}: appended dims");
    assert_eq!(host(b, &cache), expected, "{name}: appends");
    let (mut snap, mut snap_expected) = midway.unwrap();
    assert_eq!(host(b, &snap), snap_expected, "{name}: a clone saw later appends");
    c.scatter_rows(&mut snap, &[0, 3], &c.gather_rows(&[slice(&tb, 4..6)]).unwrap()).unwrap();
    snap_expected[..cols].copy_from_slice(&bv[4 * cols..5 * cols]);
    snap_expected[3 * cols..4 * cols].copy_from_slice(&bv[5 * cols..6 * cols]);
    assert_eq!(host(b, &snap), snap_expected, "{name}: scatter into a clone");
    assert_eq!(host(b, &cache), expected, "{name}: a scatter into a clone showed in the cache");

    // Truncating the grown cache keeps its first rows; an append then overwrites the dropped ones.
    c.truncate_rows(&mut cache, 2).unwrap();
    assert_eq!(host(b, &cache), expected[..2 * cols], "{name}: truncate a grown cache");
    c.append_rows(&mut cache, &tb, 0..1).unwrap();
    assert_eq!(host(b, &cache), [&expected[..2 * cols], &bv[..cols]].concat(), "{name}: append after truncate");
    assert_eq!(host(b, &snap), snap_expected, "{name}: a truncation showed in a clone");
}

/// [`Checked`] refuses every contract violation with its typed error before the backend runs,
/// leaving the tensors it would have written unchanged.
pub fn checked_errors<B: Backend>(b: &B, _: Storage) {
    let c = Checked::new(b);
    let name = b.name();
    let t = |rows, cols| tensor(b, &vec![0.5; rows * cols], rows, cols);

    refused(name, c.from_host(&[0.0; 7], 2, 4), "from_host", "7 values for 2x4");
    let mut rank3 = dense_tensor(DType::F32, vec![2, 2, 2], &[0.0; 8]);
    refused(name, c.upload_weight(&rank3), "upload_weight", "a rank-3 weight");
    rank3.shape = vec![3, 3];
    refused(name, c.upload_weight(&rank3), "upload_weight", "8 values for [3, 3]");

    let mut rng = Rng::new(14);
    for dtype in [DType::F32, DType::Q8_0] {
        let table = upload(b, &random_weight(dtype, 64, 32, &mut rng));
        match c.embedding(&table, &[3, 64]) {
            Err(Error::TokenOutOfRange { id: 64, vocab_size: 64 }) => {}
            Err(e) => panic!("{name}: {dtype:?} embedding id 64 of 64: expected TokenOutOfRange, got: {e}"),
            Ok(_) => panic!("{name}: {dtype:?} embedding id 64 of a 64-row table accepted"),
        }
    }

    let w = upload(b, &dense_tensor(DType::F32, vec![4, 3], &[0.1; 12]));
    let wrong_bias = upload(b, &dense_tensor(DType::F32, vec![3], &[0.1; 3]));
    refused(name, c.linear(&t(2, 4), &w, None), "linear", "input width 4 for [4, 3]");
    refused(name, c.linear(&t(2, 3), &w, Some(&wrong_bias)), "linear", "3 bias values for 4 outputs");
    refused(name, c.rms_norm(&t(2, 4), &wrong_bias, 1e-5), "rms_norm", "3 scales for width 4");

    let table = t(8, 4);
    refused(name, c.rope(&t(2, 8), &[0], &table, 4), "rope", "1 position for 2 rows");
    refused(name, c.rope(&t(1, 9), &[0], &t(8, 3), 3), "rope", "odd head_dim");
    refused(name, c.rope(&t(1, 8), &[0], &t(8, 2), 4), "rope", "table narrower than the head");
    refused(name, c.rope(&t(1, 8), &[8], &table, 4), "rope", "position past the table");

    let (q, k) = (t(2, 4), t(2, 4));
    let h = HeadLayout::new(2, 2, 2);
    let seq = |q_start, q_len, kv_start, kv_len| AttentionSeq { q_start, q_len, kv_start, kv_len };
    let pair = [KeyValues { k: &k, v: &k }];
    let pairs = [pair[0], pair[0]];
    for (seqs, what) in [
        (vec![seq(0, 2, 0, 1)], "q_len > kv_len"),
        (vec![seq(0, 1, 0, 1)], "a query row uncovered"),
        (vec![seq(0, 2, 1, 2)], "keys out of range"),
        (vec![seq(0, 2, 0, 2), seq(1, 1, 0, 1)], "overlapping sequences"),
    ] {
        refused(name, c.attention(&q, &pairs[..seqs.len()], &seqs, h), "attention", what);
    }
    let whole = [seq(0, 2, 0, 2)];
    refused(name, c.attention(&q, &pairs, &whole, h), "attention", "two key/value pairs for one sequence");
    refused(name, c.attention(&q, &pair, &whole, HeadLayout::new(3, 2, 2)), "attention", "3 heads over 2");
    refused(name, c.attention(&q, &pair, &whole, HeadLayout { window: Some(0), ..h }), "attention", "a window of 0");
    refused(name, c.attention(&q, &pair, &whole, HeadLayout { scale: f32::NAN, ..h }), "attention", "a NaN scale");
    let narrow = t(2, 2);
    refused(name, c.attention(&q, &[KeyValues { k: &k, v: &narrow }], &whole, h), "attention", "v narrower than k");
    refused(name, c.attention(&t(2, 6), &pair, &whole, h), "attention", "q wider than the heads");

    let (a23, a32) = (t(2, 3), t(3, 2));
    refused(name, c.add(&a23, &a32), "add", "2x3 + 3x2");
    refused(name, c.glu(&a23, &a32, Activation::Silu), "glu", "2x3 with 3x2");
    refused(name, c.scale(&a23, f32::INFINITY), "scale", "an infinite factor");

    let (src, narrow) = (t(7, 5), t(1, 4));
    let slice = |tensor, range| RowSlice { tensor, rows: range };
    refused(name, c.gather_rows(&[slice(&src, 5..8)]), "gather_rows", "rows 5..8 of 7");
    refused(name, c.gather_rows(&[slice(&src, 0..1), slice(&narrow, 0..1)]), "gather_rows", "widths 5 and 4");
    let mut dst = tensor(b, &(0..35).map(|i| i as f32).collect::<Vec<_>>(), 7, 5);
    let before = host(b, &dst);
    refused(name, c.scatter_rows(&mut dst, &[7], &t(1, 5)), "scatter_rows", "row 7 of 7");
    refused(name, c.scatter_rows(&mut dst, &[0, 1], &t(1, 5)), "scatter_rows", "2 rows from 1");
    refused(name, c.scatter_rows(&mut dst, &[0], &narrow), "scatter_rows", "width 4 into 5");
    refused(name, c.append_rows(&mut dst, &src, 0..9), "append_rows", "rows 0..9 of 7");
    refused(name, c.append_rows(&mut dst, &narrow, 0..1), "append_rows", "width 4 onto 5");
    refused(name, c.truncate_rows(&mut dst, 8), "truncate_rows", "8 rows of 7");
    assert_eq!(b.dims(&dst), (7, 5), "{name}: a refused call changed the tensor's dims");
    assert_eq!(host(b, &dst), before, "{name}: a refused call changed the tensor");
}

// ---------------------------------------------------------------------------------------------
// Model checks: whole models, one backend opened per model load.

/// Opens a fresh backend for each model a model-level check loads, and says how it stores weights.
pub struct Loader<'a, B> {
    check: &'a str,
    open: &'a dyn Fn() -> Option<B>,
    storage: &'a dyn Fn(&B) -> Storage,
}

impl<'a, B: Backend> Loader<'a, B> {
    /// A loader for the check `check` (named when it skips) opening backends with `open`.
    pub fn new(check: &'a str, open: &'a dyn Fn() -> Option<B>, storage: &'a dyn Fn(&B) -> Storage) -> Self {
        Loader { check, open, storage }
    }

    /// The fixture `name` on a fresh backend, with the backend's storage; `None` (after saying so)
    /// when no backend opens here.
    pub fn load(&self, name: &str) -> Option<(Pipeline<B>, Storage)> {
        let Some(backend) = (self.open)() else {
            eprintln!("SKIPPED conformance {}: no backend here (the reason is printed above)", self.check);
            return None;
        };
        let storage = (self.storage)(&backend);
        let p = Pipeline::load(fixture_dir(name), backend).unwrap_or_else(|e| panic!("loading {name}: {e}"));
        Some((p, storage))
    }
}

/// The committed tiny GGUF fixtures whose reference is llama.cpp (tests/fixtures/gguf/llama_cpp),
/// with the largest difference of a row from llama.cpp's relative to its largest logit, for exact
/// storage: f32 summation order, and for Gemma 3 llama.cpp's f16 GELU (tests/llama_cpp_golden.rs).
const LLAMA_CPP_FIXTURES: [(&str, f32); 3] = [("tiny-llama3", 1e-4), ("tiny-qwen3", 1e-4), ("tiny-gemma3", 2e-3)];

/// Prompts of up to this many tokens are run by [`llama_cpp_architectures`].
const LLAMA_CPP_PROMPT_TOKENS: usize = 200;

/// Llama 3.x RoPE frequency factors, Qwen3's q/k norms, and Gemma 3's GeGLU, scaled embeddings,
/// sandwich norms scaling by 1 + w and sliding windows of 24 positions (over a 179-token prompt),
/// each in a tiny GGUF fixture, against llama.cpp's logits: the last prompt position and 24
/// teacher-forced greedy steps through the KV cache, every row within its fixture's limit (plus
/// [`F16_MODEL_TOL`] for f16 storage), and the same greedy choice at every step.
pub fn llama_cpp_architectures<B: Backend>(l: &Loader<'_, B>) {
    let dir = fixture_dir("gguf").join("llama_cpp");
    for (stem, limit) in LLAMA_CPP_FIXTURES {
        let Some((p, storage)) = l.load(&format!("gguf/{stem}.gguf")) else { return };
        let limit = match storage {
            Storage::Exact => limit,
            Storage::F16Matrices => limit + F16_MODEL_TOL,
        };
        let (model, backend) = (p.model(), p.model().backend().name());
        let vocab = model.config().vocab_size;
        let mut worst = 0.0f32;
        for case in golden::logit_cases(&dir, stem) {
            let (name, ids, greedy) =
                (&case.meta["name"], golden::ids(&case.meta["ids"]), golden::ids(&case.meta["greedy"]));
            if ids.len() > LLAMA_CPP_PROMPT_TOKENS {
                continue;
            }
            let (mut decoder, mut logits) = prefill(model, &ids, None, Control::default()).unwrap();
            for (step, want) in case.logits.chunks_exact(vocab).enumerate() {
                let scale = want.iter().fold(0.0f32, |m, x| m.max(x.abs()));
                let d = max_abs_diff(&logits, want) / scale;
                assert!(d < limit, "{backend} {stem} ({storage:?}) {name} step {step}: max |diff| / max logit {d}");
                worst = worst.max(d);
                let Some(&token) = greedy.get(step) else { break };
                let ours = logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i as u32);
                assert_eq!(ours, Some(token), "{backend} {stem} ({storage:?}) {name} step {step}: greedy token");
                logits = decoder.step(token).unwrap();
            }
        }
        eprintln!("MEASURED {backend} {stem} ({storage:?}): max |logit - llama.cpp| / max logit = {worst:.3e}");
    }
}

/// Every tiny fixture's logits at every position of every golden case within the storage's
/// [`Storage::model_tol`] of transformers'.
pub fn tiny_full_forward<B: Backend>(l: &Loader<'_, B>) {
    for name in FIXTURES {
        let Some((p, storage)) = l.load(name) else { return };
        let (model, tol) = (p.model(), storage.model_tol());
        let mut worst = 0.0f32;
        for case in golden::golden(name) {
            let logits = model.forward_one(&case.ids, &mut model.new_cache(), LogitsFor::All).unwrap();
            assert_eq!(logits.rows, case.ids.len(), "{name}: logits rows");
            for (pos, expected) in case.logits.iter().enumerate() {
                let d = max_abs_diff(logits.row(pos), expected);
                assert!(
                    d < tol,
                    "{} {name} ({storage:?}) {:?} position {pos}: max |diff| {d}",
                    model.backend().name(),
                    case.text
                );
                worst = worst.max(d);
            }
        }
        eprintln!("MEASURED {} {name} ({storage:?}): max |logit - transformers| = {worst:.3e}", model.backend().name());
    }
}

/// A prefix prefilled, then one token at a time through the KV cache: every position within
/// the model tolerance of transformers and within [`SAME_WEIGHTS_TOL`] of the full forward.
pub fn tiny_incremental_decoding<B: Backend>(l: &Loader<'_, B>) {
    for name in FIXTURES {
        let Some((p, storage)) = l.load(name) else { return };
        let (model, tol) = (p.model(), storage.model_tol());
        let backend = model.backend().name();
        for case in golden::golden(name) {
            let full = model.forward_one(&case.ids, &mut model.new_cache(), LogitsFor::All).unwrap();
            let split = case.ids.len() / 2;
            let mut cache = model.new_cache();
            let first = model.forward_one(&case.ids[..split], &mut cache, LogitsFor::All).unwrap();
            for pos in 0..split {
                let (d, e) =
                    (max_abs_diff(first.row(pos), &case.logits[pos]), max_abs_diff(first.row(pos), full.row(pos)));
                assert!(d < tol, "{backend} {name} prefix position {pos}: max |diff| {d} vs transformers");
                assert!(
                    e < SAME_WEIGHTS_TOL,
                    "{backend} {name} prefix position {pos}: max |diff| {e} vs the full forward"
                );
            }
            for pos in split..case.ids.len() {
                let step = model.forward_one(&case.ids[pos..pos + 1], &mut cache, LogitsFor::Last).unwrap();
                let (d, e) = (max_abs_diff(step.row(0), &case.logits[pos]), max_abs_diff(step.row(0), full.row(pos)));
                assert!(
                    d < tol,
                    "{backend} {name} {:?} incremental position {pos}: max |diff| {d} vs transformers",
                    case.text
                );
                assert!(
                    e < SAME_WEIGHTS_TOL,
                    "{backend} {name} incremental position {pos}: max |diff| {e} vs the full forward"
                );
            }
            assert_eq!(cache.len(), case.ids.len(), "{backend} {name}: cache length");
        }
    }
}

/// Greedy continuations equal transformers' tokens.
pub fn tiny_greedy<B: Backend>(l: &Loader<'_, B>) {
    for name in FIXTURES {
        let Some((p, storage)) = l.load(name) else { return };
        for case in golden::golden(name) {
            let options = GenerateOptions { max_tokens: case.greedy.len(), stop_at_eos: false, ..Default::default() };
            let ids: Vec<u32> = p.generate_ids(&case.ids, &options).unwrap().map(|t| t.unwrap().id).collect();
            assert_eq!(ids, case.greedy, "{} {name} ({storage:?}) {:?}", p.model().backend().name(), case.text);
        }
    }
}

/// One sequence of a packed batch: its past, its new tokens, candidate rows and logits asked for.
struct Packed<'a> {
    ids: &'a [u32],
    past: usize,
    new: Range<usize>,
    candidates: usize,
    logits: LogitsFor,
}

/// Sequences of different lengths with pasts of different lengths, a single-token decode step and
/// trailing candidate rows (tiny-llama with the reference's candidate projections) run as one
/// packed forward: each equals the same sequence run alone within [`SAME_WEIGHTS_TOL`], and every
/// row that is not a candidate of adapted projections is within the model tolerance of transformers.
pub fn tiny_packed_batch<B: Backend>(l: &Loader<'_, B>) {
    for name in FIXTURES {
        let Some((mut p, storage)) = l.load(name) else { return };
        let adapted = name == "tiny-llama";
        if adapted {
            focus_golden::load_tiny_adapter(&mut p);
        }
        let (model, tol) = (p.model(), storage.model_tol());
        let backend = model.backend().name();
        let cases = golden::golden(name);
        let first = &cases[0];
        let n = first.ids.len();
        assert!(n >= 6, "{name}: {n} tokens");
        let mut seqs: Vec<Packed<'_>> = cases
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let past = (i * 3 + 1).min(c.ids.len() - 1);
                Packed { ids: &c.ids, past, new: past..c.ids.len(), candidates: 0, logits: LogitsFor::All }
            })
            .collect();
        seqs.push(Packed { ids: &first.ids, past: 0, new: 0..n - 1, candidates: 0, logits: LogitsFor::All });
        seqs.push(Packed {
            ids: &first.ids,
            past: n / 2,
            new: n / 2..n / 2 + 1,
            candidates: 0,
            logits: LogitsFor::Last,
        });
        seqs.push(Packed { ids: &first.ids, past: n - 3, new: n - 3..n, candidates: 2, logits: LogitsFor::All });

        let pasts: Vec<_> = seqs
            .iter()
            .map(|s| {
                let mut cache = model.new_cache();
                if s.past > 0 {
                    model.forward_one(&s.ids[..s.past], &mut cache, LogitsFor::None).unwrap();
                }
                cache
            })
            .collect();
        let alone: Vec<_> = seqs
            .iter()
            .zip(&pasts)
            .map(|(s, past)| {
                let mut cache = past.clone();
                let input = SeqInput {
                    tokens: &s.ids[s.new.clone()],
                    cache: &mut cache,
                    candidates: s.candidates,
                    logits: s.logits,
                };
                model.forward(&mut [input]).unwrap().remove(0)
            })
            .collect();
        let mut caches = pasts.clone();
        let mut batch: Vec<SeqInput<'_, B>> = seqs
            .iter()
            .zip(caches.iter_mut())
            .map(|(s, cache)| SeqInput {
                tokens: &s.ids[s.new.clone()],
                cache,
                candidates: s.candidates,
                logits: s.logits,
            })
            .collect();
        let batched = model.forward(&mut batch).unwrap();
        assert_eq!(batched.len(), seqs.len(), "{backend} {name}: one logits per sequence");
        let golden_of = |s: &Packed<'_>| cases.iter().find(|c| c.ids == s.ids).expect("a golden case");
        for (i, ((s, got), solo)) in seqs.iter().zip(&batched).zip(&alone).enumerate() {
            let d = max_abs_diff(&got.data, &solo.data);
            assert!(d < SAME_WEIGHTS_TOL, "{backend} {name} sequence {i}: batched vs alone {d}");
            assert_eq!(caches[i].len(), s.new.end, "{backend} {name} sequence {i}: cache length");
            // Positions of the returned rows, and how many trailing ones are candidates.
            let positions: Vec<usize> = match s.logits {
                LogitsFor::Last => vec![s.new.end - 1],
                _ => s.new.clone().collect(),
            };
            let plain = positions.len() - if adapted { s.candidates.min(positions.len()) } else { 0 };
            for (row, &pos) in positions[..plain].iter().enumerate() {
                let d = max_abs_diff(got.row(row), &golden_of(s).logits[pos]);
                assert!(d < tol, "{backend} {name} sequence {i} position {pos}: max |diff| {d} vs transformers");
            }
        }
    }
}

/// The FocusLLM engine on tiny-llama against the PyTorch reference: every decode mode and both
/// candidate orders, with copied and with the reference's full candidate projections, 3 chunks
/// per batch; every step's logits within the model tolerance and the greedy tokens equal.
pub fn focus_reference<B: Backend>(l: &Loader<'_, B>) {
    let g = focus_golden::golden("tiny-llama");
    assert!(g.runs.len() >= 7, "{} runs", g.runs.len());
    assert!(g.runs.iter().any(|r| r.order == CandidateOrder::SinkFirst) && g.runs.iter().any(|r| r.adapter));
    for adapter in [false, true] {
        let Some((mut p, storage)) = l.load("tiny-llama") else { return };
        if adapter {
            focus_golden::load_tiny_adapter(&mut p);
        }
        for run in g.runs.iter().filter(|r| r.adapter == adapter) {
            let worst = focus_golden::check_run(p.model(), &g, run, 3, storage.model_tol());
            eprintln!(
                "MEASURED {} focus {} ({storage:?}): max |logit - reference| = {worst:.3e}",
                p.model().backend().name(),
                run.name
            );
        }
    }
}

/// The FocusLLM engine with low-rank candidate projections applied unmerged, against the
/// reference that merges them into full matrices.
pub fn focus_reference_low_rank<B: Backend>(l: &Loader<'_, B>) {
    let g = focus_golden::golden("tiny-llama-lora");
    let Some((mut p, storage)) = l.load("tiny-llama") else { return };
    focus_golden::load_tiny_lora(&mut p);
    for run in &g.runs {
        let worst = focus_golden::check_run(p.model(), &g, run, 3, storage.model_tol());
        eprintln!(
            "MEASURED {} low-rank {} ({storage:?}): max |logit - reference| = {worst:.3e}",
            p.model().backend().name(),
            run.name
        );
    }
}

/// Runs an operation check on a backend from `open`, or says why it skips. Used by
/// [`op_conformance_tests!`](crate::op_conformance_tests).
#[doc(hidden)]
pub fn run_op<B: Backend>(
    check: &str,
    open: impl FnOnce() -> Option<B>,
    storage: impl Fn(&B) -> Storage,
    f: impl FnOnce(&B, Storage),
) {
    match open() {
        Some(b) => {
            let s = storage(&b);
            f(&b, s)
        }
        None => eprintln!("SKIPPED conformance {check}: no backend here (the reason is printed above)"),
    }
}

/// One `#[test]` per operation check of the suite, on the backend that `$open` (an expression
/// giving `Option<B>`, evaluated once per test; `None` skips the test) opens; `$storage` (a
/// closure `|&B| -> Storage`) says how it keeps weights, [`Storage::Exact`] when omitted.
#[macro_export]
macro_rules! op_conformance_tests {
    (@ops $open:expr, $storage:expr; $($check:ident),*) => {
        $(
            #[test]
            fn $check() {
                $crate::conformance::run_op(stringify!($check), || $open, $storage, $crate::conformance::$check);
            }
        )*
    };
    (@typed $open:expr, $storage:expr, $fn:ident; $($check:ident $dtype:ident),*) => {
        $(
            #[test]
            fn $check() {
                $crate::conformance::run_op(stringify!($check), || $open, $storage, |b, s| {
                    $crate::conformance::$fn(b, s, $crate::conformance::DType::$dtype)
                });
            }
        )*
    };
    ($open:expr) => {
        $crate::op_conformance_tests!($open, |_: &_| $crate::conformance::Storage::Exact);
    };
    ($open:expr, $storage:expr) => {
        $crate::op_conformance_tests!(@ops $open, $storage;
            round_trip, reshape, rms_norm, rope, attention, glu, scale, add, rows, checked_errors);
        $crate::op_conformance_tests!(@typed $open, $storage, embedding;
            embedding_f32 F32, embedding_f16 F16, embedding_bf16 BF16,
            embedding_q8_0 Q8_0, embedding_q4_0 Q4_0, embedding_q4_1 Q4_1,
            embedding_q5_0 Q5_0, embedding_q5_1 Q5_1, embedding_q2_k Q2_K, embedding_q3_k Q3_K,
            embedding_q4_k Q4_K, embedding_q5_k Q5_K, embedding_q6_k Q6_K, embedding_iq4_nl IQ4_NL,
            embedding_iq4_xs IQ4_XS);
        $crate::op_conformance_tests!(@typed $open, $storage, linear;
            linear_f32 F32, linear_f16 F16, linear_bf16 BF16, linear_q8_0 Q8_0, linear_q4_0 Q4_0, linear_q4_1 Q4_1,
            linear_q5_0 Q5_0, linear_q5_1 Q5_1, linear_q2_k Q2_K, linear_q3_k Q3_K, linear_q4_k Q4_K,
            linear_q5_k Q5_K, linear_q6_k Q6_K, linear_iq4_nl IQ4_NL, linear_iq4_xs IQ4_XS);
    };
}

/// One `#[test]` per model-level check of the suite; `$open` and `$storage` as for
/// [`op_conformance_tests!`](crate::op_conformance_tests) (`$open` is evaluated once per model loaded).
#[macro_export]
macro_rules! model_conformance_tests {
    (@models $open:expr, $storage:expr; $($check:ident),*) => {
        $(
            #[test]
            fn $check() {
                let (open, storage) = (|| $open, $storage);
                $crate::conformance::$check(&$crate::conformance::Loader::new(stringify!($check), &open, &storage));
            }
        )*
    };
    ($open:expr) => {
        $crate::model_conformance_tests!($open, |_: &_| $crate::conformance::Storage::Exact);
    };
    ($open:expr, $storage:expr) => {
        $crate::model_conformance_tests!(@models $open, $storage;
            tiny_full_forward, tiny_incremental_decoding, tiny_greedy, tiny_packed_batch,
            llama_cpp_architectures, focus_reference, focus_reference_low_rank);
    };
}

/// The whole suite, [`op_conformance_tests!`](crate::op_conformance_tests) and
/// [`model_conformance_tests!`](crate::model_conformance_tests), one `#[test]` per check.
#[macro_export]
macro_rules! conformance_tests {
    ($open:expr) => {
        $crate::conformance_tests!($open, |_: &_| $crate::conformance::Storage::Exact);
    };
    ($open:expr, $storage:expr) => {
        $crate::op_conformance_tests!($open, $storage);
        $crate::model_conformance_tests!($open, $storage);
    };
}
