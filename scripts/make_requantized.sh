#!/usr/bin/env bash
# The default model requantised by llama.cpp's own llama-quantize (--allow-requantize) into the
# formats people download (Q4_K_M, Q5_K_M, Q6_K, IQ4_XS, Q3_K_M), with llama.cpp's logits for them,
# for a real third-party file (Gemma 3 270M Q4_K_M, scripts/fetch_gemma3.sh), for tiny random Gemma 3
# and Qwen3 models quantised by llama-quantize into each block type (Q8_0 to IQ4_XS), and for the committed
# tiny GGUF fixtures (scripts/make_llama_cpp_golden.py; those goldens are committed, in
# tests/fixtures/gguf/llama_cpp), and llama.cpp's tokenization with the default model's and Gemma's
# vocabularies, for tests/llama_cpp_golden.rs, the backends' conformance suite and the README.
# Writes $FOCUSLLM_CACHE/requantized/ (default ~/.cache/focusllm) and prints that directory; files
# already there are kept.
set -euo pipefail
cd "$(dirname "$0")/.."

model=$(bash scripts/fetch_model.sh)
gemma=$(bash scripts/fetch_gemma3.sh)
bin=$(bash scripts/build_llama_cpp.sh)
out="${FOCUSLLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/focusllm}/requantized"
mkdir -p "$out"
files=("$model")
for type in Q4_K_M Q5_K_M Q6_K IQ4_XS Q3_K_M; do
  f="$out/SmolLM2-135M-Instruct.$type.gguf"
  if [ ! -s "$f" ]; then
    "$bin/llama-quantize" --allow-requantize "$model" "$f.tmp" "$type" >"$out/quantize-$type.log" 2>&1
    mv "$f.tmp" "$f"
  fi
  files+=("$f")
done
files+=("$gemma")
# Tiny random Gemma 3 and Qwen3 models, 256 wide (every block type's rows whole), quantised into
# each block type.
if [ ! -s "$out/wide-gemma3.gguf" ] || [ ! -s "$out/wide-qwen3.gguf" ]; then
  python3 -m pip install -q numpy gguf safetensors >&2
  python3 scripts/make_gguf_fixtures.py --wide "$out" >&2
fi
for arch in gemma3 qwen3; do
  for type in Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 IQ4_NL Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_XS; do
    f="$out/wide-$arch.$type.gguf"
    if [ ! -s "$f" ]; then
      "$bin/llama-quantize" "$out/wide-$arch.gguf" "$f.tmp" "$type" >"$out/quantize-wide-$arch-$type.log" 2>&1
      mv "$f.tmp" "$f"
    fi
    files+=("$f")
  done
done
# The committed tiny Llama 3.x-style (RoPE frequency factors), Mistral-style, Qwen3-style and Gemma
# 3-style fixtures: their goldens are small and committed beside them (recorded when missing).
tiny_out=tests/fixtures/gguf/llama_cpp
tiny=()
for stem in tiny-llama3 tiny-mistral tiny-qwen3 tiny-gemma3; do
  [ -s "$tiny_out/$stem.safetensors" ] || tiny+=("tests/fixtures/gguf/$stem.gguf")
done
missing=()
for f in "${files[@]}"; do
  stem=$(basename "$f" .gguf)
  [ -s "$out/$stem.safetensors" ] || missing+=("$f")
done
tokens=()
for f in "$model" "$gemma"; do
  [ -s "$out/$(basename "$f" .gguf).tokens.json" ] || tokens+=(--tokens "$f")
done
if [ ${#missing[@]} -gt 0 ] || [ ${#tokens[@]} -gt 0 ] || [ ${#tiny[@]} -gt 0 ]; then
  # What the golden-maker and the bindings import (only when there is something to record).
  python3 -m pip install -q numpy safetensors gguf diskcache jinja2 typing-extensions >&2
  export PYTHONPATH="$bin/../../python"
  if [ ${#missing[@]} -gt 0 ] || [ ${#tokens[@]} -gt 0 ]; then
    python3 scripts/make_llama_cpp_golden.py --out "$out" "${tokens[@]}" "${missing[@]}" >&2
  fi
  if [ ${#tiny[@]} -gt 0 ]; then
    python3 scripts/make_llama_cpp_golden.py --out "$tiny_out" "${tiny[@]}" >&2
  fi
fi
echo "$out"
