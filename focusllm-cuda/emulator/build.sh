#!/usr/bin/env bash
# Builds the CUDA emulator (driver.cpp: a libcuda.so.1 that runs the crate's kernels on the CPU)
# and its self-test (DIR/selftest) into DIR (default target/cuda-emulator), and prints DIR. Needs a C++17 compiler (g++ 12 or newer,
# for _Float16). Put DIR first on LD_LIBRARY_PATH, with NVRTC's directory, to run the CUDA tests
# without a GPU: see scripts/test.sh.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
kernels="$here/../src/kernels"
out="${1:-$here/../../target/cuda-emulator}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# The sources as NVRTC sees them (the shared prelude first), with each `extern __shared__` array
# pointed at the launch's dynamic shared memory.
{
  cat "$kernels/common.cuh"
  for f in elementwise matmul attention; do
    echo "// ---- $f.cu"
    cat "$kernels/$f.cu"
  done
} | sed -E 's/extern __shared__ ([A-Za-z0-9_]+) ([A-Za-z0-9_]+)\[\];/\1* \2 = reinterpret_cast<\1*>(emu::dynamic_shared);/' \
  >"$out/kernels.inc.new"
# The kernels by name, for driver.cpp's table: every `extern "C"` function of the sources after
# the preprocessor (so macro-written entry points are there too).
${CXX:-c++} -E -P -x c++ -DFOCUSLLM_EMULATOR "$out/kernels.inc.new" \
  | grep -oE 'extern "C" __global__ void [A-Za-z0-9_]+' \
  | awk '{ printf "{\"%s\", bind(%s)},\n", $5, $5 }' >"$out/kernel_table.inc.new"
# Replaces a generated file only when it changed, so an unchanged source rebuilds nothing.
replace() {
  if ! cmp -s "$1.new" "$1" 2>/dev/null; then
    mv "$1.new" "$1"
  else
    rm "$1.new"
  fi
}
replace "$out/kernels.inc"
replace "$out/kernel_table.inc"

flags=(-std=c++17 -O2 -g -DFOCUSLLM_EMULATOR -D__CUDA_ARCH__=900 -Wall -Wno-unknown-pragmas
       -Wno-unused-function -I "$here" -I "$out")
# build TARGET SOURCE SOURCE FLAGS...: compiles when TARGET is missing or older than any input.
build() {
  local target="$1" sources=("$2" "$3")
  shift 3
  if [ ! -e "$target" ] || [ -n "$(find "$here" "$out/kernels.inc" "$out/kernel_table.inc" -newer "$target" -print -quit)" ]; then
    ${CXX:-c++} "${flags[@]}" "$@" "${sources[@]}" -o "$target.tmp"
    mv "$target.tmp" "$target"
  fi
}
build "$out/libcuda.so.1" "$here/driver.cpp" "$here/fibers.cpp" -fPIC -shared -fvisibility=hidden
build "$out/selftest" "$here/selftest.cpp" "$here/fibers.cpp"
ln -sf libcuda.so.1 "$out/libcuda.so"
echo "$out"
