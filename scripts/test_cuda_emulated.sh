#!/usr/bin/env bash
# The CUDA backend's device tests on a machine without a GPU. Builds the CUDA emulator
# (focusllm-cuda/emulator: a libcuda.so.1 that runs the crate's kernels on the CPU; the backend,
# the binding and NVRTC stay the real ones), runs the emulator's self-test, then the backend's
# operation and golden tests against it twice: as a compute capability 9.0 device (tensor-core
# products), and as a 7.5 device (CUDA-core products) with every phase's threads run in reverse
# order, so a result that depends on thread order between barriers fails one of the two; and the
# default model's device memory and greedy continuation against the CPU backend.
# Needs NVRTC on LD_LIBRARY_PATH (scripts/test.sh puts it there), a C++17 compiler and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

emulator=$(bash focusllm-cuda/emulator/build.sh)
"$emulator/selftest"
export LD_LIBRARY_PATH="$emulator${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# The emulator is the device now: a test that finds none fails instead of skipping.
export FOCUSLLM_REQUIRE_CUDA=1
# The test binaries of the workspace build (`cargo test -p focusllm-cuda` would resolve features
# for that package alone and rebuild its dependencies).
declare -A binary
while read -r name path; do
  binary[$name]=$path
done < <(cargo test --release --workspace --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if (m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]
            and "focusllm-cuda" in m["package_id"]):
        print(m["target"]["name"], m["executable"])
')
for name in ops golden model_scale; do
  if [ -z "${binary[$name]:-}" ]; then
    echo "test_cuda_emulated.sh: no test binary \`$name\` of focusllm-cuda in the workspace build" >&2
    exit 1
  fi
done
# Every operation and the tiny models, on a device of 512 MiB: large enough for every test, small
# enough for the out-of-memory one to overflow.
run_small() {
  for name in ops golden; do
    (cd focusllm-cuda && FOCUSLLM_EMULATOR_MEMORY_MIB=512 "${binary[$name]}")
  done
}
echo "== CUDA tests on the emulator: sm_90"
FOCUSLLM_EMULATOR_CC=9.0 run_small
echo "== CUDA tests on the emulator: sm_75, threads in reverse order"
FOCUSLLM_EMULATOR_CC=7.5 FOCUSLLM_EMULATOR_REVERSE=1 run_small
# The default model (its Q4_1 and Q8_0 blocks kept on the device): its weights' device memory
# against the file's size, and a greedy continuation against the CPU backend, every step's logits
# compared (about 3 minutes here; the test's 32K-token FocusLLM half needs a real GPU).
echo "== CUDA on the emulator: the default model's device memory and greedy continuation"
(cd focusllm-cuda && FOCUSLLM_EMULATOR_CC=9.0 "${binary[model_scale]}" --exact \
  weights_take_about_their_size_on_disk_on_the_device greedy_continuation_matches_cpu)
