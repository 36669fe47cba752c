#!/usr/bin/env bash
# The project's test command: fetch the default model and NVRTC (for the CUDA kernel tests) if
# missing, then build once in release and run every test of the workspace against that build, and
# the CUDA backend's device tests again on the CPU emulator of the CUDA driver.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/fetch_model.sh >/dev/null
if [ -f scripts/install_nvrtc.sh ]; then
  nvrtc_dir=$(bash scripts/install_nvrtc.sh)
  export LD_LIBRARY_PATH="$nvrtc_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
cargo test --release --workspace "$@"
# The CUDA backend's device tests once more, on the CPU emulator of the CUDA driver.
bash scripts/test_cuda_emulated.sh
