#!/usr/bin/env bash
# The default model requantised by llama.cpp's own llama-quantize (--allow-requantize) into the
# formats people download (Q4_K_M, Q5_K_M, Q6_K, IQ4_XS, Q3_K_M), with llama.cpp's logits for them
# and for three committed tiny GGUF fixtures (scripts/make_llama_cpp_golden.py), for
# tests/llama_cpp_golden.rs and the README's tables.
# Writes $FOCUSLLM_CACHE/requantized/ (default ~/.cache/focusllm) and prints that directory; files
# already there are kept.
set -euo pipefail
cd "$(dirname "$0")/.."

model=$(bash scripts/fetch_model.sh)
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
# The committed Llama 3.x-style (RoPE frequency factors), Mistral-style and Qwen3-style fixtures too.
files+=(tests/fixtures/gguf/tiny-llama3.gguf tests/fixtures/gguf/tiny-mistral.gguf tests/fixtures/gguf/tiny-qwen3.gguf)
missing=()
for f in "${files[@]}"; do
  stem=$(basename "$f" .gguf)
  [ -s "$out/$stem.safetensors" ] || missing+=("$f")
done
tokens=()
[ -s "$out/$(basename "$model" .gguf).tokens.json" ] || tokens=(--tokens "$model")
if [ ${#missing[@]} -gt 0 ] || [ ${#tokens[@]} -gt 0 ]; then
  # What the golden-maker and the bindings import (only when there is something to record).
  python3 -m pip install -q numpy safetensors gguf diskcache jinja2 typing-extensions >&2
  PYTHONPATH="$bin/../../python" python3 scripts/make_llama_cpp_golden.py --out "$out" "${tokens[@]}" "${missing[@]}" >&2
fi
echo "$out"
