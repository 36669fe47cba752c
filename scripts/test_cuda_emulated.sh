#!/usr/bin/env bash
# The CUDA backend's device tests on a machine without a GPU. Builds the CUDA emulator
# (focusllm-cuda/emulator: a libcuda.so.1 that runs the crate's kernels on the CPU; the backend,
# the binding and NVRTC stay the real ones), runs the emulator's self-test, then the backend's
# operation and golden tests against it twice: as a compute capability 9.0 device (tensor-core
# products), and as a 7.5 device (CUDA-core products) with every phase's threads run in reverse
# order, so a result that depends on thread order between barriers fails one of the two.
# Needs NVRTC on LD_LIBRARY_PATH (scripts/test.sh puts it there) and a C++17 compiler.
set -euo pipefail
cd "$(dirname "$0")/.."

emulator=$(bash focusllm-cuda/emulator/build.sh)
"$emulator/selftest"
export LD_LIBRARY_PATH="$emulator${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# The emulator is the device now: a test that finds none fails instead of skipping.
export FOCUSLLM_REQUIRE_CUDA=1
tests=(--release -p focusllm-cuda --test ops --test golden)
echo "== CUDA tests on the emulator: sm_90"
FOCUSLLM_EMULATOR_CC=9.0 cargo test "${tests[@]}"
echo "== CUDA tests on the emulator: sm_75, threads in reverse order"
FOCUSLLM_EMULATOR_CC=7.5 FOCUSLLM_EMULATOR_REVERSE=1 cargo test "${tests[@]}"
