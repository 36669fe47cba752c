#!/usr/bin/env bash
# The CUDA backend's device tests on a machine without a GPU. Builds the CUDA emulator
# (focusllm-cuda/emulator: a libcuda.so.1 that runs the crate's kernels on the CPU; the backend,
# the binding and NVRTC stay the real ones), runs the emulator's self-test, then the backend's
# operation and golden tests against it twice: as a compute capability 9.0 device (tensor-core
# products), and as a 7.5 device (CUDA-core products) with every phase's threads run in reverse
# order, so a result that depends on thread order between barriers fails one of the two.
# Needs NVRTC on LD_LIBRARY_PATH (scripts/test.sh puts it there), a C++17 compiler and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

emulator=$(bash focusllm-cuda/emulator/build.sh)
"$emulator/selftest"
export LD_LIBRARY_PATH="$emulator${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# The emulator is the device now: a test that finds none fails instead of skipping. A device of
# 512 MiB is large enough for every test and small enough for the out-of-memory one to overflow.
export FOCUSLLM_REQUIRE_CUDA=1 FOCUSLLM_EMULATOR_MEMORY_MIB=512
# The test binaries of the workspace build (`cargo test -p focusllm-cuda` would resolve features
# for that package alone and rebuild its dependencies).
mapfile -t binaries < <(cargo test --release --workspace --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if (m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]
            and m["target"]["name"] in ("ops", "golden") and "focusllm-cuda" in m["package_id"]):
        print(m["executable"])
')
if [ "${#binaries[@]}" -ne 2 ]; then
  echo "test_cuda_emulated.sh: found ${#binaries[@]} of focusllm-cuda's ops and golden test binaries" >&2
  exit 1
fi
run_all() {
  for binary in "${binaries[@]}"; do
    (cd focusllm-cuda && "$binary")
  done
}
echo "== CUDA tests on the emulator: sm_90"
FOCUSLLM_EMULATOR_CC=9.0 run_all
echo "== CUDA tests on the emulator: sm_75, threads in reverse order"
FOCUSLLM_EMULATOR_CC=7.5 FOCUSLLM_EMULATOR_REVERSE=1 run_all
