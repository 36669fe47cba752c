#!/usr/bin/env python3
"""Golden data from llama.cpp itself for GGUF files of any block type.

For each GGUF file given and each prompt of tests/fixtures/smollm2/golden.json (a 5-token text, a
chat-templated question and ~2200 tokens of prose), llama.cpp (through the `llama_cpp` bindings of
the build scripts/build_llama_cpp.sh makes, so the very same library) records:

  - `ids`:     the prompt's token ids as llama.cpp tokenizes it (the Rust side feeds these ids, so
               this golden checks the forward, not the tokenizer),
  - `greedy`:  the next 24 tokens by arg-max of llama.cpp's own logits, through its KV cache,
  - `logits`:  float32 [25, vocab]: the logits at the last prompt position and after each greedy
               token (teacher forcing: row i+1 follows `greedy[i]`).

Output: OUT/<stem>.json and OUT/<stem>.safetensors per file, and OUT/<stem>.tokens.json for each
file given with --tokens: llama.cpp's tokenization of a few hundred lines of mixed text (the
repository's README and design documents, and lines of other scripts, emoji and special tokens).
First, the dequantised values the committed fixtures expect
(tests/fixtures/gguf/{types,blocks}_expected.safetensors, written with `gguf.quants`) are checked
bit for bit against llama.cpp's own `to_float` of each block type.

Usage: python3 scripts/make_llama_cpp_golden.py --out DIR [--tokens FILE.gguf]... FILE.gguf...
Needs: numpy, safetensors, gguf, and the bindings' own dependencies (diskcache, jinja2,
typing-extensions); PYTHONPATH must hold the bindings (scripts/make_requantized.sh sets it).
"""
import argparse
import json
import os

import numpy as np
from safetensors.numpy import save_file

import llama_cpp

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
GREEDY = 24


def prompts():
    cases = json.load(open(os.path.join(ROOT, "tests", "fixtures", "smollm2", "golden.json")))["cases"]
    return [(c["name"], c["text"]) for c in cases]


def record(path, out):
    # One thread: the summation order of llama.cpp's kernels then does not depend on the machine's
    # core count. The KV cache in f32 (llama.cpp's default is f16) and no flash attention, so that
    # what differs from focusllm is the 8-bit rounding of activations in the weight products.
    vocab = llama_cpp.Llama(path, vocab_only=True, verbose=False)
    prompt_ids = [(name, vocab.tokenize(text.encode("utf-8"), add_bos=True, special=True)) for name, text in prompts()]
    del vocab
    llm = llama_cpp.Llama(
        path,
        n_ctx=(max(len(ids) for _, ids in prompt_ids) + GREEDY + 256) // 256 * 256,
        n_batch=512,
        logits_all=True,
        verbose=False,
        n_threads=1,
        flash_attn=False,
        type_k=llama_cpp.GGML_TYPE_F32,
        type_v=llama_cpp.GGML_TYPE_F32,
    )
    meta, tensors = {"file": os.path.basename(path), "cases": []}, {}
    for name, ids in prompt_ids:
        llm.reset()
        llm.eval(ids)
        rows = [np.array(llm.scores[len(ids) - 1], dtype=np.float32)]
        greedy = []
        for _ in range(GREEDY):
            token = int(np.argmax(rows[-1]))
            greedy.append(token)
            llm.eval([token])
            rows.append(np.array(llm.scores[len(ids) + len(greedy) - 1], dtype=np.float32))
        meta["cases"].append({"name": name, "ids": [int(i) for i in ids], "greedy": greedy})
        tensors[f"logits.{name}"] = np.stack(rows[: GREEDY + 1])
        print(f"{os.path.basename(path)} {name}: {len(ids)} tokens, greedy {llm.detokenize(greedy)[:60]!r}")
    stem = os.path.splitext(os.path.basename(path))[0]
    json.dump(meta, open(os.path.join(out, stem + ".json"), "w"), indent=1)
    save_file(tensors, os.path.join(out, stem + ".safetensors"))


# Lines llama.cpp's tokenizer is compared on, beside the repository's own prose and code.
MIXED_LINES = [
    "Grüße aus Köln — naïve café, déjà vu, œuvre, Ångström.",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "我能吞下玻璃而不伤身体。東京は日本の首都です。",
    "🙂👍🏽 emoji, 🇫🇷 flags and a zero\u200bwidth space",
    "مرحبا بالعالم — שלום עולם — नमस्ते दुनिया",
    "  leading spaces,\ttabs\tand trailing spaces   ",
    "numbers 1234567890 3.14159 -42 1e-5 0x1F 12,345.67",
    "CamelCaseWords snake_case_words kebab-case-words ALLCAPS",
    "don't won't it's we're they'll I'd y'all O'Neill",
    "<|im_start|>user\nHello<|im_end|>",
    "x = [i ** 2 for i in range(10)]  # squares; fn main() { println!(\"{}\", 1); }",
    "a\n\nb\r\nc\n\n\n",
]


def tokenizer_lines():
    """Every non-empty line of the README and the design documents (prose, tables, code, some
    non-ASCII), then MIXED_LINES."""
    lines = []
    for rel in ["README.md", "docs/architecture.md", "docs/algorithm.md", "docs/evaluation.md"]:
        path = os.path.join(ROOT, rel)
        if os.path.exists(path):
            lines += [l for l in open(path, encoding="utf-8").read().split("\n") if l.strip()]
    return lines + MIXED_LINES


def record_tokens(path, out):
    """llama.cpp's token ids (no BOS added, special tokens parsed) for every line of
    tokenizer_lines(): OUT/<stem>.tokens.json."""
    llm = llama_cpp.Llama(path, n_ctx=64, vocab_only=True, verbose=False)
    cases = [{"text": t, "ids": [int(i) for i in llm.tokenize(t.encode("utf-8"), add_bos=False, special=True)]}
             for t in tokenizer_lines()]
    stem = os.path.splitext(os.path.basename(path))[0]
    json.dump({"file": os.path.basename(path), "cases": cases}, open(os.path.join(out, stem + ".tokens.json"), "w"))
    print(f"{os.path.basename(path)}: {len(cases)} lines tokenized")


def check_dequantization():
    """The committed fixtures' expected values (from `gguf.quants.dequantize`) against llama.cpp's own
    `to_float` of every quantised tensor: exits non-zero if one value differs in a bit."""
    import ctypes

    import gguf
    from safetensors.numpy import load_file

    lib = ctypes.CDLL(os.path.join(os.path.dirname(llama_cpp.llama_cpp.__file__), "lib", "libggml-base.so"))
    to_float_t = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_int64)

    class Traits(ctypes.Structure):
        _fields_ = [
            ("type_name", ctypes.c_char_p),
            ("blck_size", ctypes.c_int64),
            ("blck_size_interleave", ctypes.c_int64),
            ("type_size", ctypes.c_size_t),
            ("is_quantized", ctypes.c_bool),
            ("to_float", to_float_t),
            ("from_float_ref", ctypes.c_void_p),
        ]

    lib.ggml_get_type_traits.restype = ctypes.POINTER(Traits)
    lib.ggml_get_type_traits.argtypes = [ctypes.c_int]
    fixtures = os.path.join(ROOT, "tests", "fixtures", "gguf")
    for stem in ["types", "blocks"]:
        expected = load_file(os.path.join(fixtures, stem + "_expected.safetensors"))
        for t in gguf.GGUFReader(os.path.join(fixtures, stem + ".gguf")).tensors:
            traits = lib.ggml_get_type_traits(int(t.tensor_type)).contents
            if not traits.is_quantized:
                continue
            raw = np.ascontiguousarray(t.data).view(np.uint8)
            out = np.zeros(int(np.prod(t.shape)), dtype=np.float32)
            traits.to_float(raw.ctypes.data, out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), out.size)
            want = expected[t.name].reshape(-1)
            if not np.array_equal(out.view(np.uint32), want.view(np.uint32)):
                raise SystemExit(f"{stem}.gguf {t.name}: llama.cpp's to_float differs from gguf.quants")
            print(f"{stem}.gguf {t.name}: llama.cpp's to_float equals gguf.quants bit for bit")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--tokens", action="append", default=[],
                        help="a GGUF file whose tokenization of the mixed lines to record (repeatable)")
    parser.add_argument("files", nargs="*")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    check_dequantization()
    for f in args.tokens:
        record_tokens(f, args.out)
    for f in args.files:
        record(f, args.out)


if __name__ == "__main__":
    main()
