#!/usr/bin/env bash
# The project's test command: fetch the default model and NVRTC (for the CUDA kernel tests) if
# missing, build llama.cpp from PyPI's sdist once (cached) to requantise the default model and
# record llama.cpp's logits for tests/llama_cpp_golden.rs, then build once in release and run every
# test of the workspace against that build, and the CUDA backend's device tests again on the CPU
# emulator of the CUDA driver.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/fetch_model.sh >/dev/null
bash scripts/make_requantized.sh >/dev/null
if [ -f scripts/install_nvrtc.sh ]; then
  nvrtc_dir=$(bash scripts/install_nvrtc.sh)
  export LD_LIBRARY_PATH="$nvrtc_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
cargo test --release --workspace "$@"
# The CPU backend's tests again with its kernels capped at each lower level, so that the AVX2 and
# portable builds stay checked end to end on a CPU that has AVX-512.
for level in avx2 portable; do
  FOCUSLLM_CPU_KERNEL=$level cargo test --release -p focusllm-cpu "$@"
done
# The CUDA backend's device tests once more, on the CPU emulator of the CUDA driver.
bash scripts/test_cuda_emulated.sh
