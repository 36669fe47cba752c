#!/usr/bin/env bash
# Builds llama.cpp, the peer of the speed tables, from the source vendored in PyPI's
# llama-cpp-python sdist (no other download), for this machine's processor (-DGGML_NATIVE=ON), and
# prints the directory of its tools (llama-bench, llama-quantize, llama-completion, llama-tokenize)
# and shared libraries. The sdist's Python bindings are kept beside it (`../../python`), so that
# scripts can call the same build through `llama_cpp` with LLAMA_CPP_LIB_PATH set to that directory.
# The build is cached in $FOCUSLLM_CACHE (default ~/.cache/focusllm), keyed by the CPU model, since
# a native build may not run on another processor.
set -euo pipefail

version=0.3.36
cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //; s/[^A-Za-z0-9]/-/g' || echo unknown)
root="${FOCUSLLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/focusllm}/llama.cpp-$version-$cpu"
bin="$root/build/bin"
targets=(llama-bench llama-quantize llama-completion llama-tokenize)

if [ -x "$bin/llama-bench" ] && [ -x "$bin/llama-tokenize" ] && [ -d "$root/python/llama_cpp" ]; then
  echo "$bin"
  exit 0
fi
# cmake and the sdist's build backend (pip reads the sdist's metadata through it).
python3 -m pip install -q cmake scikit-build-core >&2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "build_llama_cpp: downloading the llama-cpp-python $version sdist ..." >&2
python3 -m pip download -q --no-deps --no-binary :all: --no-build-isolation "llama-cpp-python==$version" -d "$tmp" >&2
tar -xzf "$tmp/llama_cpp_python-$version.tar.gz" -C "$tmp"
mkdir -p "$root"
rm -rf "$root/src"
cp -r "$tmp/llama_cpp_python-$version/vendor/llama.cpp" "$root/src"
rm -rf "$root/python"
mkdir -p "$root/python"
cp -r "$tmp/llama_cpp_python-$version/llama_cpp" "$root/python/llama_cpp"
echo "build_llama_cpp: building ${targets[*]} (about 10 minutes on 2 cores) ..." >&2
cmake -S "$root/src" -B "$root/build" -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release >&2
cmake --build "$root/build" -j"$(nproc)" --target "${targets[@]}" >&2
# The bindings load libllama and libggml from their package's lib directory.
ln -sfn "$bin" "$root/python/llama_cpp/lib"
echo "$bin"
