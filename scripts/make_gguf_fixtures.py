#!/usr/bin/env python3
"""Small GGUF fixtures, written with Python's `gguf` package (llama.cpp's own writer).

tests/fixtures/gguf/types.gguf
    One tensor per supported ggml type (F32, F16, BF16, Q8_0, Q4_0, Q4_1), named `t.<TYPE>`, of
    shape [rows=3, cols=64], from seeded random normal data quantised by `gguf.quants.quantize`.
    tests/fixtures/gguf/types_expected.safetensors holds, under the same names, the float32 values
    `gguf.quants.dequantize` gives for the stored bytes: the reference the Rust dequantiser must
    reproduce bit for bit.

tests/fixtures/gguf/tiny-mistral.gguf
    The tiny random Mistral-style model of tests/fixtures/tiny-mistral (made by
    make_tiny_fixtures.py: GQA, head_dim 16 != hidden/heads, linear RoPE scaling, untied head, f16
    weights) converted as llama.cpp's convert_hf_to_gguf.py converts a LLaMA/Mistral checkpoint:
    architecture `llama`, q/k rows permuted for interleaved RoPE, weights kept in F16 (norms F32),
    the byte-level BPE tokenizer as `tokenizer.ggml.*` (model gpt2), and a chat template. Since the
    values are the same f16 numbers, loading it must give exactly the model of the HF directory.

fuzz/seeds/gguf_parse/tiny-llama.gguf
    A one-layer llama GGUF with every supported tensor type and a byte-level tokenizer: the seed
    corpus of the cargo-fuzz target (fuzz/fuzz_targets/gguf_parse.rs).

tests/fixtures/gguf/spm-vocab.gguf, spm_expected.json
    A SentencePiece-style vocabulary (`tokenizer.ggml.model` llama: byte tokens, scores, no
    merges) and the ids and decoded texts transformers' GGUF tokenizer gives for a few texts.

Usage: python3 scripts/make_gguf_fixtures.py [--out tests/fixtures/gguf]
Needs: numpy, gguf, safetensors, transformers (for the SentencePiece expectations).
"""
import argparse
import json
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
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    save_file(expected, os.path.join(out, "types_expected.safetensors"))


def permute(w, n_head, n_head_kv):
    """llama.cpp's convert_hf_to_gguf.py LlamaModel.permute."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_mistral(out):
    src = os.path.join(ROOT, "tests", "fixtures", "tiny-mistral")
    config = json.load(open(os.path.join(src, "config.json")))
    tok = json.load(open(os.path.join(src, "tokenizer.json")))
    weights = load_file(os.path.join(src, "model.safetensors"))
    n_head, n_kv = config["num_attention_heads"], config["num_key_value_heads"]
    rope = config["rope_parameters"]

    writer = GGUFWriter(os.path.join(out, "tiny-mistral.gguf"), "llama")
    writer.add_name("tiny-mistral")
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
    writer.add_rope_scaling_type(__import__("gguf").RopeScalingType.LINEAR)
    writer.add_rope_scaling_factor(rope["factor"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(config["vocab_size"])

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
        w = w.astype(np.float32) if w.ndim == 1 else w.astype(np.float16)
        writer.add_tensor(name, np.ascontiguousarray(w))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def write_fuzz_seed(path):
    """A complete but minimal llama GGUF (one layer, 8 tokens, every supported tensor type), the
    seed of the cargo-fuzz target in fuzz/."""
    rng = np.random.default_rng(7)
    writer = GGUFWriter(path, "llama")
    writer.add_context_length(64)
    writer.add_embedding_length(32)
    writer.add_feed_forward_length(32)
    writer.add_block_count(1)
    writer.add_head_count(2)
    writer.add_head_count_kv(1)
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
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


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
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

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
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    write_types(args.out)
    write_tiny_mistral(args.out)
    write_spm_vocab(args.out)
    seeds = os.path.join(ROOT, "fuzz", "seeds", "gguf_parse")
    os.makedirs(seeds, exist_ok=True)
    write_fuzz_seed(os.path.join(seeds, "tiny-llama.gguf"))
    for f in sorted(os.listdir(args.out)):
        print(f, os.path.getsize(os.path.join(args.out, f)))


if __name__ == "__main__":
    main()
