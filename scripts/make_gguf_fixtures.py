#!/usr/bin/env python3
"""Small GGUF fixtures, written with Python's `gguf` package (llama.cpp's own writer).

tests/fixtures/gguf/types.gguf
    One tensor per supported ggml type (F32, F16, BF16, Q8_0, Q4_0, Q4_1), named `t.<TYPE>`, of
    shape [rows=3, cols=64], from seeded random normal data quantised by `gguf.quants.quantize`.
    tests/fixtures/gguf/types_expected.safetensors holds, under the same names, the float32 values
    `gguf.quants.dequantize` gives for the stored bytes: the reference the Rust dequantiser must
    reproduce bit for bit.

tests/fixtures/gguf/blocks.gguf
    The same for the block types added later (Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL,
    IQ4_XS), of shape [rows=4, cols=512] (whole 256-element blocks): quantised by
    `gguf.quants.quantize` where it implements the type (Q5_0, Q5_1), otherwise random blocks
    (every quant bit pattern, finite f16 scales); blocks_expected.safetensors holds what
    `gguf.quants.dequantize` gives for them.

tests/fixtures/gguf/tiny-llama3.gguf
    The tiny random LLaMA of tests/fixtures/tiny-llama (llama3 RoPE scaling, f32 weights) written
    as llama.cpp's converter writes a Llama 3.x checkpoint: the scaling as the tensor
    `rope_freqs.weight` of per-frequency divisors and no scaling keys; loading it must give the
    HF model's logits.

tests/fixtures/gguf/tiny-qwen3.gguf
    A tiny random Qwen3-style model (per-head q/k RMSNorm) written directly in llama.cpp's `qwen3`
    layout, f32 weights; its reference is llama.cpp itself (scripts/make_llama_cpp_golden.py).

tests/fixtures/gguf/tiny-gemma3.gguf
    A tiny random Gemma 3 model written directly in llama.cpp's `gemma3` layout, f32 weights: norms
    stored as llama.cpp's converter stores them (1 + w), q/k norms, tied embeddings, three layers of
    which the first two slide over a window of 24 positions (`attention.sliding_window_pattern` as
    a list of flags) with their own RoPE base (`rope.freq_base_swa`); its reference is llama.cpp.
    tests/fixtures/tiny-gemma3 holds the same model as a Hugging Face directory (`gemma3_text`
    config.json as transformers writes it, norms as w, the tiny-llama tokenizer.json).

tests/fixtures/gguf/tiny-mistral.gguf
    The tiny random Mistral-style model of tests/fixtures/tiny-mistral (made by
    make_tiny_fixtures.py: GQA, head_dim 16 != hidden/heads, linear RoPE scaling, untied head, f16
    weights) converted as llama.cpp's convert_hf_to_gguf.py converts a LLaMA/Mistral checkpoint:
    architecture `llama`, q/k rows permuted for interleaved RoPE, weights kept in F16 (norms F32),
    the byte-level BPE tokenizer as `tokenizer.ggml.*` (model gpt2), and a chat template. Since the
    values are the same f16 numbers, loading it must give exactly the model of the HF directory.

fuzz/seeds/gguf_parse/tiny-llama.gguf, tiny-llama-blocks.gguf, tiny-gemma3.gguf
    One-layer llama GGUFs with every supported tensor type and a byte-level tokenizer, and a
    one-layer gemma3 one: the seed corpus of the cargo-fuzz target (fuzz/fuzz_targets/gguf_parse.rs).

tests/fixtures/gguf/spm-vocab.gguf, spm_expected.json
    A SentencePiece-style vocabulary (`tokenizer.ggml.model` llama: byte tokens, scores, no
    merges) and the ids and decoded texts transformers' GGUF tokenizer gives for a few texts.

With --wide DIR, only DIR/wide-gemma3.gguf and DIR/wide-qwen3.gguf: the tiny Gemma 3 and Qwen3 at
width 256 (head width 64, MLP 512), whose rows are whole blocks of every type, for
scripts/make_requantized.sh to quantise with llama-quantize (not committed).

Usage: python3 scripts/make_gguf_fixtures.py [--out tests/fixtures/gguf] [--wide DIR]
Needs: numpy, gguf, safetensors, transformers (for the SentencePiece expectations).
"""
import argparse
import json
import math
import os

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter
from gguf.quants import dequantize, quantize
from safetensors.numpy import load_file, save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1"]

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<s>' + message['role'] + '\n' + message['content'] + '</s>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<s>assistant\n' }}{% endif %}"
)


def finish(writer):
    """Writes the header, the metadata and the tensors, and closes the file."""
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def add_vocabulary(writer, tok):
    """The byte-level BPE vocabulary of a `tokenizer.json` as `tokenizer.ggml.*` (model gpt2)."""
    vocab = tok["model"]["vocab"]
    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    special = {a["content"] for a in tok["added_tokens"] if a["special"]}
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if t in special else 1 for t in tokens])
    writer.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in tok["model"]["merges"]])


def write_types(out):
    rng = np.random.default_rng(1234)
    writer = GGUFWriter(os.path.join(out, "types.gguf"), "llama")
    expected = {}
    for name in TYPES:
        qtype = GGMLQuantizationType[name]
        data = (rng.standard_normal((3, 64)) * 2.0).astype(np.float32)
        # Extreme values too: zeros, a large magnitude, a tiny one.
        data[0, :4] = [0.0, 1000.0, -1e-3, 3.0e-5]
        raw = quantize(data, qtype)
        expected[f"t.{name}"] = np.ascontiguousarray(dequantize(raw, qtype).astype(np.float32).reshape(3, 64))
        if name == "F32":
            writer.add_tensor(f"t.{name}", raw)
        else:
            writer.add_tensor(f"t.{name}", raw, raw_dtype=qtype)
    finish(writer)
    save_file(expected, os.path.join(out, "types_expected.safetensors"))


BLOCK_TYPES = ["Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"]

# Byte offsets of the f16 fields (scales, minimums) of one block of each type.
F16_FIELDS = {
    "Q5_0": [0], "Q5_1": [0, 2], "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2],
    "Q6_K": [208], "IQ4_NL": [0], "IQ4_XS": [0],
}


def random_blocks(rng, qtype, name, rows, cols):
    """Random bytes of whole blocks with finite f16 scales (small, so values stay moderate)."""
    from gguf import GGML_QUANT_SIZES
    block, size = GGML_QUANT_SIZES[qtype]
    n = rows * cols // block
    raw = rng.integers(0, 256, size=(n, size), dtype=np.uint8)
    for k, at in enumerate(F16_FIELDS[name]):
        v = rng.uniform(0.001, 0.05, size=n) if k == 0 else rng.uniform(-0.1, 0.1, size=n)
        raw[:, at:at + 2] = v.astype(np.float16).view(np.uint8).reshape(n, 2)
    return raw.reshape(rows, cols // block * size)


def write_blocks(out):
    rng = np.random.default_rng(5678)
    writer = GGUFWriter(os.path.join(out, "blocks.gguf"), "llama")
    expected = {}
    rows, cols = 4, 512
    for name in BLOCK_TYPES:
        qtype = GGMLQuantizationType[name]
        data = (rng.standard_normal((rows, cols)) * 2.0).astype(np.float32)
        try:
            raw = quantize(data, qtype)
        except NotImplementedError:
            raw = random_blocks(rng, qtype, name, rows, cols)
        expected[f"t.{name}"] = np.ascontiguousarray(dequantize(raw, qtype).astype(np.float32).reshape(rows, cols))
        writer.add_tensor(f"t.{name}", raw, raw_dtype=qtype)
    finish(writer)
    save_file(expected, os.path.join(out, "blocks_expected.safetensors"))


def permute(w, n_head, n_head_kv):
    """llama.cpp's convert_hf_to_gguf.py LlamaModel.permute."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_frequency_factors(config):
    """The per-frequency RoPE divisors a Llama 3.x GGUF carries as `rope_freqs.weight`, from the
    checkpoint's llama3 rope scaling: 1 for short wavelengths, `factor` for long ones, and between
    them the inverse of transformers' interpolation weight."""
    scaling = config["rope_scaling"]
    dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    inv_freq = 1.0 / (config["rope_theta"] ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old = scaling["original_max_position_embeddings"]
    out = []
    for f in inv_freq:
        wavelen = 2 * math.pi / f
        if wavelen < old / high:
            out.append(1.0)
        elif wavelen > old / low:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def write_tiny_mistral(out):
    write_tiny(out, "tiny-mistral", half=True)


def write_tiny_llama3(out):
    write_tiny(out, "tiny-llama", half=False, file_name="tiny-llama3.gguf")


def write_tiny(out, fixture, half, file_name=None):
    src = os.path.join(ROOT, "tests", "fixtures", fixture)
    config = json.load(open(os.path.join(src, "config.json")))
    tok = json.load(open(os.path.join(src, "tokenizer.json")))
    weights = load_file(os.path.join(src, "model.safetensors"))
    n_head, n_kv = config["num_attention_heads"], config["num_key_value_heads"]
    rope = config.get("rope_parameters") or {"rope_theta": config["rope_theta"], **config["rope_scaling"]}

    writer = GGUFWriter(os.path.join(out, file_name or f"{fixture}.gguf"), "llama")
    writer.add_name(fixture)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_key_length(config["head_dim"])
    writer.add_value_length(config["head_dim"])
    writer.add_rope_dimension_count(config["head_dim"])
    writer.add_rope_freq_base(rope["rope_theta"])
    if rope["rope_type"] == "linear":
        writer.add_rope_scaling_type(__import__("gguf").RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(rope["factor"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(config["vocab_size"])

    add_vocabulary(writer, tok)
    writer.add_bos_token_id(config["bos_token_id"])
    writer.add_eos_token_id(config["eos_token_id"])
    writer.add_add_bos_token(True)
    writer.add_chat_template(CHAT_TEMPLATE)

    names = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    parts = {
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }
    for hf, w in sorted(weights.items()):
        if hf in names:
            name = names[hf]
        else:
            _, _, layer, rest = hf.split(".", 3)
            stem, suffix = rest.rsplit(".", 1)
            name = f"blk.{layer}.{parts[stem]}.{suffix}"
        if hf.endswith("q_proj.weight"):
            w = permute(w, n_head, n_head)
        elif hf.endswith("k_proj.weight"):
            w = permute(w, n_head, n_kv)
        w = w.astype(np.float32) if w.ndim == 1 or not half else w.astype(np.float16)
        writer.add_tensor(name, np.ascontiguousarray(w))
    if rope["rope_type"] == "llama3":
        # As llama.cpp's converter writes Llama 3.x: the scaling as a tensor, no scaling keys.
        writer.add_tensor("rope_freqs.weight", llama3_frequency_factors(config))
    finish(writer)


def small_llama_writer(path, width, heads, kv_heads, arch="llama"):
    """A GGUF writer with the metadata of a one-layer model of architecture `arch` (llama by
    default) of `width` (also the MLP's) and an 8-token byte-level vocabulary, for the fuzz seeds."""
    writer = GGUFWriter(path, arch)
    writer.add_context_length(64)
    writer.add_embedding_length(width)
    writer.add_feed_forward_length(width)
    writer.add_block_count(1)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    tokens = ["<s>", "</s>", "a", "b", "ab", "\u0120", "\u0120a", "c"]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types([3, 3, 1, 1, 1, 1, 1, 4])
    writer.add_token_merges(["a b", "\u0120 a"])
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(1)
    writer.add_add_bos_token(True)
    writer.add_chat_template(CHAT_TEMPLATE)
    return writer


def write_tiny_qwen3(out, name="tiny-qwen3", hidden=64, head_dim=16, ffn=160):
    """A tiny random Qwen3-style model written directly as llama.cpp's `qwen3` architecture: per-head
    q/k RMSNorm weights (`attn_q_norm`, `attn_k_norm`), no biases, NEOX RoPE (q/k rows as in
    transformers), f32 weights, the tiny-llama fixture's byte-level BPE vocabulary. Wider (256)
    with --wide."""
    rng = np.random.default_rng(3)
    tok = json.load(open(os.path.join(ROOT, "tests", "fixtures", "tiny-llama", "tokenizer.json")))
    heads, kv_heads, layers = 4, 2, 2
    vocab_size = len(tok["model"]["vocab"])
    writer = GGUFWriter(os.path.join(out, name + ".gguf"), "qwen3")
    writer.add_name(name)
    writer.add_context_length(512)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(ffn)
    writer.add_block_count(layers)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_freq_base(1000000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_vocab_size(vocab_size)
    add_vocabulary(writer, tok)
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(1)
    writer.add_add_bos_token(True)
    writer.add_chat_template(CHAT_TEMPLATE)

    def matrix(rows, cols):
        return (rng.standard_normal((rows, cols)) / cols**0.5).astype(np.float32)

    def norm(n):
        return (1.0 + 0.2 * rng.standard_normal(n)).astype(np.float32)

    writer.add_tensor("token_embd.weight", rng.standard_normal((vocab_size, hidden)).astype(np.float32))
    writer.add_tensor("output_norm.weight", norm(hidden))
    writer.add_tensor("output.weight", matrix(vocab_size, hidden))
    for l in range(layers):
        p = f"blk.{l}."
        writer.add_tensor(p + "attn_norm.weight", norm(hidden))
        writer.add_tensor(p + "attn_q.weight", matrix(heads * head_dim, hidden))
        writer.add_tensor(p + "attn_k.weight", matrix(kv_heads * head_dim, hidden))
        writer.add_tensor(p + "attn_v.weight", matrix(kv_heads * head_dim, hidden))
        writer.add_tensor(p + "attn_q_norm.weight", norm(head_dim))
        writer.add_tensor(p + "attn_k_norm.weight", norm(head_dim))
        writer.add_tensor(p + "attn_output.weight", matrix(hidden, heads * head_dim))
        writer.add_tensor(p + "ffn_norm.weight", norm(hidden))
        writer.add_tensor(p + "ffn_gate.weight", matrix(ffn, hidden))
        writer.add_tensor(p + "ffn_up.weight", matrix(ffn, hidden))
        writer.add_tensor(p + "ffn_down.weight", matrix(hidden, ffn))
    finish(writer)


def write_tiny_gemma3(out, name="tiny-gemma3", hidden=64, head_dim=32, ffn=128, hf_dir=True):
    """A tiny random Gemma 3 model in llama.cpp's `gemma3` layout (see the module doc), with the
    tiny-llama fixture's byte-level BPE vocabulary; with `hf_dir`, also as the Hugging Face
    directory tests/fixtures/<name>. Wider (256: every block type's rows whole) with --wide."""
    rng = np.random.default_rng(5)
    tok = json.load(open(os.path.join(ROOT, "tests", "fixtures", "tiny-llama", "tokenizer.json")))
    heads, kv_heads, layers = 4, 2, 3
    vocab_size = len(tok["model"]["vocab"])
    writer = GGUFWriter(os.path.join(out, name + ".gguf"), "gemma3")
    writer.add_name(name)
    writer.add_context_length(8192)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(ffn)
    writer.add_block_count(layers)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_freq_base(1000000.0)
    writer.add_float32("gemma3.rope.freq_base_swa", 20000.0)
    writer.add_sliding_window(24)
    writer.add_array("gemma3.attention.sliding_window_pattern", [True, True, False])
    writer.add_layer_norm_rms_eps(1e-6)
    add_vocabulary(writer, tok)
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(1)
    writer.add_add_bos_token(True)

    def matrix(rows, cols):
        return (rng.standard_normal((rows, cols)) / cols**0.5).astype(np.float32)

    def norm(n):
        # Stored as 1 + w, as llama.cpp's converter stores Gemma's norms.
        return (1.0 + 0.2 * rng.standard_normal(n)).astype(np.float32)

    # (GGUF name, Hugging Face name, value as GGUF stores it); HF norms are the stored value - 1.
    tensors = [
        ("token_embd", "model.embed_tokens", (0.2 * rng.standard_normal((vocab_size, hidden))).astype(np.float32)),
        ("output_norm", "model.norm", norm(hidden)),
    ]
    for l in range(layers):
        g, h = f"blk.{l}.", f"model.layers.{l}."
        tensors += [
            (g + "attn_norm", h + "input_layernorm", norm(hidden)),
            (g + "attn_q", h + "self_attn.q_proj", matrix(heads * head_dim, hidden)),
            (g + "attn_k", h + "self_attn.k_proj", matrix(kv_heads * head_dim, hidden)),
            (g + "attn_v", h + "self_attn.v_proj", matrix(kv_heads * head_dim, hidden)),
            (g + "attn_q_norm", h + "self_attn.q_norm", norm(head_dim)),
            (g + "attn_k_norm", h + "self_attn.k_norm", norm(head_dim)),
            (g + "attn_output", h + "self_attn.o_proj", matrix(hidden, heads * head_dim)),
            (g + "post_attention_norm", h + "post_attention_layernorm", norm(hidden)),
            (g + "ffn_norm", h + "pre_feedforward_layernorm", norm(hidden)),
            (g + "ffn_gate", h + "mlp.gate_proj", matrix(ffn, hidden)),
            (g + "ffn_up", h + "mlp.up_proj", matrix(ffn, hidden)),
            (g + "ffn_down", h + "mlp.down_proj", matrix(hidden, ffn)),
            (g + "post_ffw_norm", h + "post_feedforward_layernorm", norm(hidden)),
        ]
    for gguf_name, _, value in tensors:
        writer.add_tensor(gguf_name + ".weight", value)
    finish(writer)

    if not hf_dir:
        return
    hf_dir = os.path.join(ROOT, "tests", "fixtures", name)
    os.makedirs(hf_dir, exist_ok=True)
    hf = {h + ".weight": (v - np.float32(1.0) if "norm" in g else v) for g, h, v in tensors}
    save_file(hf, os.path.join(hf_dir, "model.safetensors"), metadata={"format": "pt"})
    config = {
        "architectures": ["Gemma3ForCausalLM"],
        "model_type": "gemma3_text",
        "hidden_size": hidden,
        "intermediate_size": ffn,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "hidden_activation": "gelu_pytorch_tanh",
        "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "rope_local_base_freq": 20000.0,
        "rope_scaling": None,
        "sliding_window": 24,
        "layer_types": ["sliding_attention", "sliding_attention", "full_attention"],
        "query_pre_attn_scalar": head_dim,
        "final_logit_softcapping": None,
        "attn_logit_softcapping": None,
        "attention_bias": False,
        "vocab_size": vocab_size,
        "tie_word_embeddings": True,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "torch_dtype": "float32",
    }
    json.dump(config, open(os.path.join(hf_dir, "config.json"), "w"), indent=2)
    with open(os.path.join(ROOT, "tests", "fixtures", "tiny-llama", "tokenizer.json")) as src:
        open(os.path.join(hf_dir, "tokenizer.json"), "w").write(src.read())


def write_fuzz_seed(path):
    """A complete but minimal llama GGUF (one layer, 8 tokens, every supported tensor type), the
    seed of the cargo-fuzz target in fuzz/."""
    rng = np.random.default_rng(7)
    writer = small_llama_writer(path, 32, 2, 1)
    def rand(*shape):
        return rng.standard_normal(shape).astype(np.float32)
    def q(name, data, qtype):
        writer.add_tensor(name, quantize(data, qtype), raw_dtype=qtype)
    T = GGMLQuantizationType
    q("token_embd.weight", rand(8, 32), T.Q8_0)
    writer.add_tensor("output_norm.weight", rand(32))
    writer.add_tensor("blk.0.attn_norm.weight", rand(32))
    writer.add_tensor("blk.0.ffn_norm.weight", rand(32))
    q("blk.0.attn_q.weight", rand(32, 32), T.Q4_0)
    q("blk.0.attn_k.weight", rand(16, 32), T.Q4_1)
    q("blk.0.attn_v.weight", rand(16, 32), T.BF16)
    writer.add_tensor("blk.0.attn_output.weight", rand(32, 32).astype(np.float16))
    q("blk.0.ffn_gate.weight", rand(32, 32), T.Q8_0)
    q("blk.0.ffn_up.weight", rand(32, 32), T.Q4_0)
    q("blk.0.ffn_down.weight", rand(32, 32), T.Q4_1)
    finish(writer)


def write_fuzz_seed_blocks(path):
    """A minimal llama GGUF as write_fuzz_seed's, 256 wide so that every 256-element block type
    fits, with one tensor of each block type added later: a second seed of the GGUF target."""
    rng = np.random.default_rng(8)
    writer = small_llama_writer(path, 256, 4, 2)
    T = GGMLQuantizationType

    def blocks(name, rows, cols, qtype):
        raw = random_blocks(rng, qtype, qtype.name, rows, cols)
        writer.add_tensor(name, raw, raw_dtype=qtype)

    blocks("token_embd.weight", 8, 256, T.IQ4_XS)
    blocks("output.weight", 8, 256, T.Q3_K)
    writer.add_tensor("output_norm.weight", rng.standard_normal(256).astype(np.float32))
    writer.add_tensor("blk.0.attn_norm.weight", rng.standard_normal(256).astype(np.float32))
    writer.add_tensor("blk.0.ffn_norm.weight", rng.standard_normal(256).astype(np.float32))
    blocks("blk.0.attn_q.weight", 256, 256, T.Q5_0)
    blocks("blk.0.attn_k.weight", 128, 256, T.Q5_1)
    blocks("blk.0.attn_v.weight", 128, 256, T.Q2_K)
    blocks("blk.0.attn_output.weight", 256, 256, T.IQ4_NL)
    blocks("blk.0.ffn_gate.weight", 256, 256, T.Q4_K)
    blocks("blk.0.ffn_up.weight", 256, 256, T.Q5_K)
    blocks("blk.0.ffn_down.weight", 256, 256, T.Q6_K)
    finish(writer)


def write_fuzz_seed_gemma3(path):
    """A minimal gemma3 GGUF (one sliding layer of window 4, sandwich and q/k norms): a third seed
    of the GGUF target, reaching the Gemma 3 metadata and norm conventions."""
    rng = np.random.default_rng(9)
    writer = small_llama_writer(path, 32, 2, 1, arch="gemma3")
    writer.add_key_length(16)
    writer.add_value_length(16)
    writer.add_sliding_window(4)
    writer.add_array("gemma3.attention.sliding_window_pattern", [True])
    writer.add_float32("gemma3.rope.freq_base_swa", 10000.0)

    def rand(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    T = GGMLQuantizationType
    writer.add_tensor("token_embd.weight", quantize(rand(8, 32), T.Q8_0), raw_dtype=T.Q8_0)
    for name, shape in [("output_norm", (32,)), ("blk.0.attn_norm", (32,)), ("blk.0.attn_q", (32, 32)),
                        ("blk.0.attn_k", (16, 32)), ("blk.0.attn_v", (16, 32)), ("blk.0.attn_q_norm", (16,)),
                        ("blk.0.attn_k_norm", (16,)), ("blk.0.attn_output", (32, 32)),
                        ("blk.0.post_attention_norm", (32,)), ("blk.0.ffn_norm", (32,)), ("blk.0.ffn_gate", (32, 32)),
                        ("blk.0.ffn_up", (32, 32)), ("blk.0.ffn_down", (32, 32)), ("blk.0.post_ffw_norm", (32,))]:
        writer.add_tensor(name + ".weight", rand(*shape))
    finish(writer)


SPM_TEXTS = ["hello world", "abc ab a", " hello  world", "h\u00e9llo w\u00f6rld!", "a\nb", "<s>hello</s>"]


def write_spm_vocab(out):
    """A SentencePiece-style (`tokenizer.ggml.model` = llama) vocabulary with byte tokens and
    scores but no merges, and the ids transformers' GGUF tokenizer gives for a few texts."""
    pieces = ["\u2581", "a", "b", "c", "h", "e", "l", "o", "w", "r", "d", " ", "\u2581a", "ab", "\u2581ab", "bc",
              "\u2581abc", "he", "ll", "llo", "hello", "\u2581hello", "\u2581w", "or", "ld", "world", "\u2581world",
              "\u2581\u2581"]
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + pieces
    types = [2, 3, 3] + [6] * 256 + [1] * len(pieces)
    scores = [0.0] * 259 + [-float(100 - len(p) * 3 - i * 0.01) for i, p in enumerate(pieces)]
    path = os.path.join(out, "spm-vocab.gguf")
    writer = GGUFWriter(path, "llama")
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_scores(scores)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_space_prefix(True)
    finish(writer)

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out, gguf_file="spm-vocab.gguf")
    cases = []
    for text in SPM_TEXTS:
        ids = tok(text)["input_ids"]
        cases.append({"text": text, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=True)})
    with open(os.path.join(out, "spm_expected.json"), "w") as f:
        json.dump({"cases": cases}, f, indent=1, ensure_ascii=False)
        f.write("\n")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "gguf"))
    parser.add_argument("--wide", metavar="DIR",
                        help="write only wide-gemma3.gguf and wide-qwen3.gguf (256 wide, for llama-quantize) to DIR")
    args = parser.parse_args()
    if args.wide:
        os.makedirs(args.wide, exist_ok=True)
        write_tiny_gemma3(args.wide, name="wide-gemma3", hidden=256, head_dim=64, ffn=512, hf_dir=False)
        write_tiny_qwen3(args.wide, name="wide-qwen3", hidden=256, head_dim=64, ffn=512)
        return
    os.makedirs(args.out, exist_ok=True)
    write_types(args.out)
    write_blocks(args.out)
    write_tiny_mistral(args.out)
    write_tiny_llama3(args.out)
    write_tiny_qwen3(args.out)
    write_tiny_gemma3(args.out)
    seeds = os.path.join(ROOT, "fuzz", "seeds", "gguf_parse")
    os.makedirs(seeds, exist_ok=True)
    write_fuzz_seed(os.path.join(seeds, "tiny-llama.gguf"))
    write_fuzz_seed_blocks(os.path.join(seeds, "tiny-llama-blocks.gguf"))
    write_fuzz_seed_gemma3(os.path.join(seeds, "tiny-gemma3.gguf"))
    write_spm_vocab(args.out)
    for f in sorted(os.listdir(args.out)):
        print(f, os.path.getsize(os.path.join(args.out, f)))


if __name__ == "__main__":
    main()
