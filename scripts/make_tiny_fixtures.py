#!/usr/bin/env python3
"""Make the tiny random-weight model fixtures and their golden logits with Hugging Face transformers.

Each fixture directory under tests/fixtures/ holds a complete Hugging Face model directory
(config.json, safetensors weights, tokenizer.json) and `golden.json`:

  {"cases": [{"text": ..., "ids": [...], "logits": [[...] per position], "greedy": [...]}]}

`ids` are the tokenizer's encoding of `text` (add_special_tokens=True); `logits` are transformers'
float32 logits at every position of one full forward; `greedy` are the next 12 tokens chosen by
arg-max, each computed by a fresh full forward over the whole prefix (no KV cache), so the reference
does not share the incremental path it is checked against.

Usage: python3 scripts/make_tiny_fixtures.py [--out tests/fixtures]
Needs: torch, transformers (5.x), tokenizers.
"""
import argparse
import json
import os

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM

CORPUS = [
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.",
    "The pass key is 71432. Remember it. 71432 is the pass key.",
    "A long book has many chapters, and every chapter has many pages full of words.",
    "Rust is a language for reliable and efficient software; numbers: 0 1 2 3 4 5 6 7 8 9.",
    "Quick brown foxes jump over lazy dogs while the cat sleeps on a warm mat.",
]

TEXTS = [
    "The grass is green.",
    "The pass key is 71432. Remember it.",
    "Quick brown foxes jump over the lazy dog and the sky is blue, numbers 4 5 6.",
]


def make_tokenizer(bos, eos, vocab_size):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = [t for t in (bos, eos) if t is not None]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer)
    if bos is not None:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def randomize(model, seed):
    """Re-draw every parameter at a scale that gives logits of order one (the default init gives ~0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p.shape[-1]
                p.copy_(torch.randn(p.shape, generator=g) / fan_in**0.5)


def golden(model, tok, steps=12):
    cases = []
    for text in TEXTS:
        ids = tok.encode(text).ids
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].float()
            seq = list(ids)
            greedy = []
            for _ in range(steps):
                nxt = int(model(torch.tensor([seq])).logits[0, -1].float().argmax())
                greedy.append(nxt)
                seq.append(nxt)
        cases.append({"text": text, "ids": ids, "logits": [[float(x) for x in row] for row in logits], "greedy": greedy})
    return {"cases": cases}


def build(out, name, config_cls, model_cls, cfg, tok, seed, dtype, shard):
    torch.manual_seed(seed)
    config = config_cls(**cfg)
    config._attn_implementation = "eager"
    model = model_cls(config).eval()
    randomize(model, seed)
    path = os.path.join(out, name)
    os.makedirs(path, exist_ok=True)
    model.to(dtype).save_pretrained(path, max_shard_size=shard)
    tok.save(os.path.join(path, "tokenizer.json"))
    if name == "tiny-llama":
        to_classic_config(path)
    # The reference is transformers loading the saved checkpoint afresh, computing in float32
    # (converting the in-memory model would also round its RoPE buffers to the storage type).
    model = model_cls.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()
    with open(os.path.join(path, "golden.json"), "w") as f:
        json.dump(golden(model, tok), f)
    print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters, {dtype}")


def to_classic_config(path):
    """Rewrite config.json in the transformers 4.x form (rope_theta + rope_scaling) that most
    checkpoints on disk use, so both forms are covered by the fixtures."""
    cfg_path = os.path.join(path, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    rope = dict(cfg.pop("rope_parameters"))
    cfg["rope_theta"] = rope.pop("rope_theta")
    cfg["rope_scaling"] = rope if rope.get("rope_type", "default") != "default" else None
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures"))
    out = ap.parse_args().out

    tok = make_tokenizer("<s>", "</s>", 300)
    vocab = tok.get_vocab_size()
    build(out, "tiny-llama", LlamaConfig, LlamaForCausalLM, dict(
        vocab_size=vocab, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5,
        rope_theta=10000.0, tie_word_embeddings=False,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 16},
        bos_token_id=tok.token_to_id("<s>"), eos_token_id=tok.token_to_id("</s>"),
    ), tok, seed=1, dtype=torch.float32, shard="10GB")

    tok_q = make_tokenizer(None, "<|endoftext|>", 300)
    build(out, "tiny-qwen2", Qwen2Config, Qwen2ForCausalLM, dict(
        vocab_size=tok_q.get_vocab_size(), hidden_size=48, intermediate_size=96, num_hidden_layers=3,
        num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-6,
        rope_theta=1000000.0, tie_word_embeddings=True, use_sliding_window=False,
        bos_token_id=None, eos_token_id=tok_q.token_to_id("<|endoftext|>"),
    ), tok_q, seed=2, dtype=torch.bfloat16, shard="40KB")

    build(out, "tiny-mistral", MistralConfig, MistralForCausalLM, dict(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=1, head_dim=16, max_position_embeddings=128,
        rms_norm_eps=1e-5, rope_theta=500.0, rope_scaling={"rope_type": "linear", "factor": 2.0},
        sliding_window=None, tie_word_embeddings=False,
        bos_token_id=tok.token_to_id("<s>"), eos_token_id=tok.token_to_id("</s>"),
    ), tok, seed=3, dtype=torch.float16, shard="10GB")


if __name__ == "__main__":
    main()
