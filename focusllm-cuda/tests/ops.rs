//! Every operation of the CUDA backend against the CPU backend on random inputs: shapes that take
//! each matmul kernel (GEMV, tensor cores, CUDA-core tiles) and each weight type (quantised blocks
//! included, read in place), attention over packed batches with GQA, key splits and wide heads,
//! and the row operations' copy-on-write.
//! Skips with a printed reason without a CUDA device (fails then if FOCUSLLM_REQUIRE_CUDA=1).

mod support;

use std::borrow::Cow;

use focusllm_core::{rope_table_rows, AttentionSeq, Backend, Checked, DType, HeadLayout, HostTensor, RowSlice};
use half::{bf16, f16};
use rand::{rngs::StdRng, Rng, SeedableRng};
use support::{cpu, cuda, max_abs_diff};

fn random(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

fn host_tensor(name: &str, shape: Vec<usize>, data: &[f32], dtype: DType) -> HostTensor<'static> {
    let bytes: Vec<u8> = match dtype {
        DType::F32 => data.iter().flat_map(|x| x.to_le_bytes()).collect(),
        DType::F16 => data.iter().flat_map(|&x| f16::from_f32(x).to_le_bytes()).collect(),
        DType::BF16 => data.iter().flat_map(|&x| bf16::from_f32(x).to_le_bytes()).collect(),
        DType::Q8_0 | DType::Q4_0 | DType::Q4_1 => panic!("{dtype:?}: this helper makes dense tensors"),
    };
    HostTensor { name: name.into(), dtype, shape, bytes: Cow::Owned(bytes) }
}

/// A `[rows, cols]` tensor of random ggml blocks of `dtype` (Q8_0, Q4_0 or Q4_1): scales of either
/// sign that keep the values within about ±0.5 (as the dense tests' weights), Q4_1 minima, and
/// every quant bit pattern likely.
fn random_blocks(rng: &mut StdRng, name: &str, rows: usize, cols: usize, dtype: DType) -> HostTensor<'static> {
    let (block, block_bytes) = dtype.block();
    let largest_quant = match dtype {
        DType::Q8_0 => 128.0,
        DType::Q4_0 => 8.0,
        _ => 15.0,
    };
    let mut bytes = Vec::with_capacity(rows * cols / block * block_bytes);
    for _ in 0..rows * cols / block {
        let scale = 0.5 / largest_quant;
        bytes.extend(f16::from_f32(rng.random_range(-scale..scale)).to_le_bytes());
        if dtype == DType::Q4_1 {
            bytes.extend(f16::from_f32(rng.random_range(-0.25..0.25)).to_le_bytes());
        }
        let quant_bytes = block_bytes - if dtype == DType::Q4_1 { 4 } else { 2 };
        bytes.extend((0..quant_bytes).map(|_| rng.random::<u8>()));
    }
    HostTensor { name: name.into(), dtype, shape: vec![rows, cols], bytes: Cow::Owned(bytes) }
}

/// Asserts |gpu - cpu| <= tol * (1 + |cpu|) everywhere.
fn assert_close(what: &str, gpu: &[f32], cpu: &[f32], tol: f32) {
    assert_eq!(gpu.len(), cpu.len(), "{what}: length");
    for (i, (g, c)) in gpu.iter().zip(cpu).enumerate() {
        assert!((g - c).abs() <= tol * (1.0 + c.abs()), "{what}: element {i}: gpu {g} vs cpu {c}");
    }
}

fn linear_on<B: Backend>(b: &B, x: &[f32], m: usize, w: &HostTensor<'_>, bias: Option<&HostTensor<'_>>) -> Vec<f32> {
    let k = w.shape[1];
    let xt = b.from_host(x, m, k).unwrap();
    let wt = b.upload_weight(w).unwrap();
    let bt = bias.map(|t| b.upload_weight(t).unwrap());
    let y = b.linear(&xt, &wt, bt.as_ref()).unwrap();
    assert_eq!(b.dims(&y), (m, w.shape[0]));
    b.to_host(&y).unwrap()
}

#[test]
fn linear_matches_cpu_for_every_kernel_and_weight_type() {
    let Some(gpu) = cuda("linear") else { return };
    let cpu = cpu();
    let mut rng = StdRng::seed_from_u64(7);
    let shapes = [(1, 64, 96), (3, 33, 17), (8, 128, 64), (9, 64, 130), (70, 96, 72), (257, 160, 64), (64, 576, 1536)];
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        for &(m, k, n) in &shapes {
            for with_bias in [false, true] {
                let x = random(&mut rng, m * k, 2.0);
                let w = host_tensor("w", vec![n, k], &random(&mut rng, n * k, 0.5), dtype);
                let bias = with_bias.then(|| host_tensor("b", vec![n], &random(&mut rng, n, 1.0), DType::F32));
                let g = linear_on(&gpu, &x, m, &w, bias.as_ref());
                let c = linear_on(&cpu, &x, m, &w, bias.as_ref());
                assert_close(&format!("linear {dtype:?} {m}x{k} @ {n}x{k} bias {with_bias}"), &g, &c, 2e-5);
            }
        }
    }
}

#[test]
fn linear_reads_quantised_blocks_in_place_for_every_kernel() {
    let Some(gpu) = cuda("linear (quantised)") else { return };
    let cpu = cpu();
    let mut rng = StdRng::seed_from_u64(11);
    // Widths are whole blocks; row counts take the GEMV and the tiled kernels.
    let shapes = [(1, 64, 96), (3, 96, 17), (8, 128, 64), (9, 64, 130), (70, 96, 72), (64, 576, 1536)];
    for dtype in [DType::Q8_0, DType::Q4_0, DType::Q4_1] {
        for &(m, k, n) in &shapes {
            let x = random(&mut rng, m * k, 2.0);
            let w = random_blocks(&mut rng, "w", n, k, dtype);
            let bias = host_tensor("b", vec![n], &random(&mut rng, n, 1.0), DType::F32);
            let uploaded = gpu.upload_weight(&w).unwrap();
            assert_eq!(uploaded.dtype(), dtype, "the device keeps the blocks");
            let g = linear_on(&gpu, &x, m, &w, Some(&bias));
            let c = linear_on(&cpu, &x, m, &w, Some(&bias));
            assert_close(&format!("linear {dtype:?} {m}x{k} @ {n}x{k}"), &g, &c, 2e-5);
        }
    }
}

fn embedding_on<B: Backend>(b: &B, table: &HostTensor<'_>, ids: &[u32]) -> Vec<f32> {
    let t = b.upload_weight(table).unwrap();
    b.to_host(&b.embedding(&t, ids).unwrap()).unwrap()
}

#[test]
fn embedding_matches_cpu_and_rejects_bad_ids() {
    let Some(gpu) = cuda("embedding") else { return };
    let cpu = cpu();
    let mut rng = StdRng::seed_from_u64(1);
    let ids = [0u32, 5, 99, 5, 42];
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let table = host_tensor("embed", vec![100, 300], &random(&mut rng, 100 * 300, 1.0), dtype);
        assert_eq!(embedding_on(&gpu, &table, &ids), embedding_on(&cpu, &table, &ids), "{dtype:?}");
        let t = gpu.upload_weight(&table).unwrap();
        assert!(Checked::new(&gpu).embedding(&t, &[3, 100]).is_err(), "id 100 of a 100-row table");
    }
}

#[test]
fn embedding_dequantises_blocks_exactly_as_the_checkpoint_reader() {
    let Some(gpu) = cuda("embedding (quantised)") else { return };
    let mut rng = StdRng::seed_from_u64(2);
    let ids = [0u32, 7, 63, 7, 31];
    for dtype in [DType::Q8_0, DType::Q4_0, DType::Q4_1] {
        let table = random_blocks(&mut rng, "embed", 64, 96, dtype);
        let all = table.to_f32();
        let expected: Vec<f32> = ids.iter().flat_map(|&id| all[id as usize * 96..(id as usize + 1) * 96].to_vec()).collect();
        assert_eq!(embedding_on(&gpu, &table, &ids), expected, "{dtype:?}");
        let t = gpu.upload_weight(&table).unwrap();
        assert!(Checked::new(&gpu).embedding(&t, &[3, 64]).is_err(), "id 64 of a 64-row table");
    }
}

fn pointwise_on<B: Backend>(b: &B, x: &[f32], y: &[f32], rows: usize, cols: usize, norm: &HostTensor<'_>) -> Vec<Vec<f32>> {
    let xt = b.from_host(x, rows, cols).unwrap();
    let yt = b.from_host(y, rows, cols).unwrap();
    let w = b.upload_weight(norm).unwrap();
    let head_dim = 64;
    let inv_freq: Vec<f32> = (0..head_dim / 2).map(|i| 1.0 / 10000f32.powf(2.0 * i as f32 / head_dim as f32)).collect();
    let positions: Vec<u32> = (0..rows as u32).map(|r| r * 997 % 131_072).collect();
    let len = *positions.iter().max().unwrap() as usize + 1;
    let table = b.from_host(&rope_table_rows(&inv_freq, len), len, head_dim).unwrap();
    vec![
        b.to_host(&b.rms_norm(&xt, &w, 1e-5).unwrap()).unwrap(),
        b.to_host(&b.rope(&xt, &positions, &table, head_dim).unwrap()).unwrap(),
        b.to_host(&b.swiglu(&xt, &yt).unwrap()).unwrap(),
        b.to_host(&b.add(&xt, &yt).unwrap()).unwrap(),
    ]
}

#[test]
fn rms_norm_rope_swiglu_add_match_cpu() {
    let Some(gpu) = cuda("pointwise") else { return };
    let cpu = cpu();
    let mut rng = StdRng::seed_from_u64(3);
    let (rows, cols) = (37, 576);
    let x = random(&mut rng, rows * cols, 4.0);
    let y = random(&mut rng, rows * cols, 4.0);
    let norm = host_tensor("norm", vec![cols], &random(&mut rng, cols, 1.0), DType::BF16);
    let g = pointwise_on(&gpu, &x, &y, rows, cols, &norm);
    let c = pointwise_on(&cpu, &x, &y, rows, cols, &norm);
    for (name, (g, c)) in ["rms_norm", "rope (positions up to 131071)", "swiglu", "add"].iter().zip(g.iter().zip(&c)) {
        assert_close(name, g, c, 2e-5);
    }
}

fn attention_on<B: Backend>(b: &B, q: &[f32], k: &[f32], v: &[f32], seqs: &[AttentionSeq], h: HeadLayout) -> Vec<f32> {
    let qr: usize = seqs.iter().map(|s| s.q_len).sum();
    let kr = seqs.iter().map(|s| s.kv_start + s.kv_len).max().unwrap();
    let qt = b.from_host(q, qr, h.num_heads * h.head_dim).unwrap();
    let kt = b.from_host(k, kr, h.num_kv_heads * h.head_dim).unwrap();
    let vt = b.from_host(v, kr, h.num_kv_heads * h.head_dim).unwrap();
    b.to_host(&b.attention(&qt, &kt, &vt, seqs, h).unwrap()).unwrap()
}

/// Packs sequences given as (q_len, kv_len) one after another.
fn pack(shapes: &[(usize, usize)]) -> Vec<AttentionSeq> {
    let (mut q, mut kv) = (0, 0);
    shapes
        .iter()
        .map(|&(q_len, kv_len)| {
            let s = AttentionSeq { q_start: q, q_len, kv_start: kv, kv_len };
            q += q_len;
            kv += kv_len;
            s
        })
        .collect()
}

#[test]
fn attention_matches_cpu_on_packed_batches_gqa_splits_and_wide_heads() {
    let Some(gpu) = cuda("attention") else { return };
    let cpu = cpu();
    let mut rng = StdRng::seed_from_u64(11);
    type Case = (&'static str, HeadLayout, Vec<(usize, usize)>);
    let cases: [Case; 6] = [
        ("prefill", HeadLayout { num_heads: 4, num_kv_heads: 2, head_dim: 16 }, vec![(37, 37)]),
        ("decode over 3000 keys (key splits)", HeadLayout { num_heads: 9, num_kv_heads: 3, head_dim: 64 }, vec![(1, 3000)]),
        (
            "packed batch with pasts",
            HeadLayout { num_heads: 6, num_kv_heads: 2, head_dim: 128 },
            vec![(5, 20), (16, 16), (1, 700), (33, 40)],
        ),
        ("head_dim 256 (opt-in shared memory)", HeadLayout { num_heads: 2, num_kv_heads: 1, head_dim: 256 }, vec![(20, 50)]),
        ("head_dim 80, no GQA", HeadLayout { num_heads: 4, num_kv_heads: 4, head_dim: 80 }, vec![(3, 9), (17, 17)]),
        ("many chunks of chunk ++ query", HeadLayout { num_heads: 9, num_kv_heads: 3, head_dim: 64 }, vec![(300, 300); 8]),
    ];
    for (name, h, shapes) in cases {
        let seqs = pack(&shapes);
        let qr: usize = shapes.iter().map(|s| s.0).sum();
        let kr: usize = shapes.iter().map(|s| s.1).sum();
        let q = random(&mut rng, qr * h.num_heads * h.head_dim, 1.0);
        let k = random(&mut rng, kr * h.num_kv_heads * h.head_dim, 1.0);
        let v = random(&mut rng, kr * h.num_kv_heads * h.head_dim, 1.0);
        let g = attention_on(&gpu, &q, &k, &v, &seqs, h);
        let c = attention_on(&cpu, &q, &k, &v, &seqs, h);
        let d = max_abs_diff(&g, &c);
        assert!(d < 1e-5, "attention {name}: max |diff| {d}");
    }
}

#[test]
fn row_operations_match_cpu_and_clones_stay_independent() {
    let Some(gpu) = cuda("rows") else { return };
    let mut rng = StdRng::seed_from_u64(5);
    let cols = 48;
    let a_host = random(&mut rng, 10 * cols, 1.0);
    let b_host = random(&mut rng, 6 * cols, 1.0);
    let a = gpu.from_host(&a_host, 10, cols).unwrap();
    let b = gpu.from_host(&b_host, 6, cols).unwrap();
    assert_eq!(gpu.dims(&a), (10, cols));

    let g = gpu.gather_rows(&[RowSlice { tensor: &a, rows: 2..5 }, RowSlice { tensor: &b, rows: 0..6 }, RowSlice { tensor: &a, rows: 9..10 }]).unwrap();
    let mut expected = a_host[2 * cols..5 * cols].to_vec();
    expected.extend_from_slice(&b_host);
    expected.extend_from_slice(&a_host[9 * cols..]);
    assert_eq!(gpu.to_host(&g).unwrap(), expected);

    // Appends one row at a time (growth by doubling); a clone taken midway keeps its rows.
    let mut cache = gpu.gather_rows(&[RowSlice { tensor: &a, rows: 0..1 }]).unwrap();
    let mut host = a_host[..cols].to_vec();
    let mut snapshot = None;
    for r in 1..10 {
        gpu.append_rows(&mut cache, &a, r..r + 1).unwrap();
        host.extend_from_slice(&a_host[r * cols..(r + 1) * cols]);
        if r == 4 {
            snapshot = Some((cache.clone(), host.clone()));
        }
    }
    gpu.append_rows(&mut cache, &b, 1..4).unwrap();
    host.extend_from_slice(&b_host[cols..4 * cols]);
    assert_eq!(gpu.dims(&cache), (13, cols));
    assert_eq!(gpu.to_host(&cache).unwrap(), host);
    let (mut snap, snap_host) = snapshot.unwrap();
    assert_eq!(gpu.to_host(&snap).unwrap(), snap_host, "a clone must not see later appends");

    // Scatter into the clone: the original is untouched.
    gpu.scatter_rows(&mut snap, &[0, 3], &gpu.gather_rows(&[RowSlice { tensor: &b, rows: 4..6 }]).unwrap()).unwrap();
    let mut snap_expected = snap_host.clone();
    snap_expected[..cols].copy_from_slice(&b_host[4 * cols..5 * cols]);
    snap_expected[3 * cols..4 * cols].copy_from_slice(&b_host[5 * cols..6 * cols]);
    assert_eq!(gpu.to_host(&snap).unwrap(), snap_expected);
    assert_eq!(gpu.to_host(&cache).unwrap(), host);

    // Truncate keeps the first rows; appending afterwards overwrites the dropped ones.
    gpu.truncate_rows(&mut cache, 2).unwrap();
    assert_eq!(gpu.to_host(&cache).unwrap(), host[..2 * cols].to_vec());
    gpu.append_rows(&mut cache, &b, 0..1).unwrap();
    let mut t = host[..2 * cols].to_vec();
    t.extend_from_slice(&b_host[..cols]);
    assert_eq!(gpu.to_host(&cache).unwrap(), t);

    // Bad shapes are errors.
    let checked = Checked::new(&gpu);
    assert!(checked.append_rows(&mut cache, &b, 5..7).is_err());
    assert!(checked.scatter_rows(&mut cache, &[3], &b).is_err());
    assert!(checked.from_host(&[1.0, 2.0], 3, 1).is_err());
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
