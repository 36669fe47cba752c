#!/usr/bin/env bash
# The prepared check of focusllm-cuda on a GPU machine that builds and downloads nothing, in two halves:
#
#   here (no GPU, no CUDA toolkit needed):   bash scripts/cuda_device_check.sh build
#       builds the crate's test binaries (`cargo test --release -p focusllm-cuda --no-run`), the
#       `focusllm` command line and the `random_model` example with `--features cuda`, strips them into
#       .device-carry/cuda/ (git-ignored through .git/info/exclude), writes the default model's
#       config and tokenizer into .device-carry/model/ (its weights, 94 MiB, cannot travel), and
#       prints the one command to run there.
#
#   there (a copy of the repository with .device-carry/):   bash scripts/cuda_device_check.sh run
#       1. makes random f16 weights shaped like the default model in .device-carry/model/;
#       2. runs every test binary with FOCUSLLM_REQUIRE_CUDA=1 (a missing device fails instead of
#          skipping) and FOCUSLLM_MODEL set to that model: the tiny fixtures against transformers'
#          logits, and model_scale (greedy continuation and a 32K-token FocusLLM passkey input,
#          CUDA against the CPU backend on the same weights);
#       3. runs `focusllm bench` on CUDA (prefill 2K/8K/32K, decode, FocusLLM prefill at 32K and 128K) with
#          the GPU's memory sampled by nvidia-smi, and on the CPU (all cores) for the ratio.
#       Prints tables; everything goes to $OUT (summary.txt, tests.log, bench.log) when set.
set -uo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
carry=".device-carry"
bin_dir="$root/$carry/cuda"

build() {
    set -e
    cd "$root"
    mkdir -p "$bin_dir"
    rm -f "$bin_dir"/*
    if [ -d .git ] && ! grep -qx "/$carry/" .git/info/exclude 2>/dev/null; then
        echo "/$carry/" >> .git/info/exclude
    fi
    # The JSON messages name each test executable.
    cargo test --release -p focusllm-cuda --no-run --message-format=json 2>/dev/null \
        | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["target"]["name"], m["executable"])
' > "$bin_dir/manifest.txt"
    if [ ! -s "$bin_dir/manifest.txt" ]; then
        echo "cuda_device_check.sh: the build produced no test binaries (run cargo test --release -p focusllm-cuda --no-run to see why)" >&2
        exit 1
    fi
    while read -r name exe; do
        cp "$exe" "$bin_dir/$name"
        strip "$bin_dir/$name" 2>/dev/null || true
    done < "$bin_dir/manifest.txt"
    cut -d' ' -f1 "$bin_dir/manifest.txt" > "$bin_dir/tests.txt"
    cargo build --release -p focusllm-cli --features cuda --bin focusllm
    cargo build --release --features cuda --example random_model
    for artifact in focusllm examples/random_model; do
        cp "target/release/$artifact" "$bin_dir/$(basename "$artifact")"
        strip "$bin_dir/$(basename "$artifact")" 2>/dev/null || true
    done
    # The default model's shape and tokenizer; its weights are made on the GPU machine.
    rm -rf "$root/$carry/model"
    "$bin_dir/random_model" --out "$root/$carry/model" --dtype f16 --seed 1
    rm -f "$root/$carry/model/model.safetensors"
    echo "built into $carry (copy it with the repository; the tests read tests/fixtures):"
    (cd "$root" && du -sh "$carry" && ls -l "$carry/cuda" "$carry/model")
    echo
    echo "then, in a copy of the repository with $carry/ on the GPU machine (about 6 minutes):"
    echo "    bash scripts/cuda_device_check.sh run"
}

# Directories holding libnvrtc.so.13 on the GPU machine's image (toolkit, or PyTorch's wheels).
find_nvrtc() {
    local d
    for d in "${FOCUSLLM_NVRTC_DIR:-}" /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
             /usr/lib/x86_64-linux-gnu; do
        [ -n "$d" ] && [ -e "$d/libnvrtc.so.13" ] && { echo "$d"; return; }
    done
    python3 - <<'PY' 2>/dev/null
import glob, site, sys
for base in site.getsitepackages() + [site.getusersitepackages()] + sys.path:
    for hit in glob.glob(base + "/nvidia/cu13/lib/libnvrtc.so.13") + glob.glob(base + "/nvidia/cuda_nvrtc/lib/libnvrtc.so.13"):
        print(hit.rsplit("/", 1)[0]); sys.exit(0)
PY
}

run() {
    cd "$root"
    local out="${OUT:-$root/$carry/out}"
    mkdir -p "$out"
    rm -f "$out/tests.log"
    if [ ! -s "$bin_dir/tests.txt" ]; then
        echo "no binaries in $carry/cuda: run 'bash scripts/cuda_device_check.sh build' first and carry $carry" >&2
        exit 1
    fi
    local nvrtc
    nvrtc="$(find_nvrtc)"
    if [ -z "$nvrtc" ]; then
        echo "libnvrtc.so.13 not found on this machine" >&2
    fi
    export LD_LIBRARY_PATH="${nvrtc:+$nvrtc:}/usr/local/nvidia/lib64:/usr/local/nvidia/lib:${LD_LIBRARY_PATH:-}"
    export FOCUSLLM_REQUIRE_CUDA=1 FOCUSLLM_TEST_STRICT=1 FOCUSLLM_FIXTURES="$root/tests/fixtures" RUST_BACKTRACE=1
    local model="$root/$carry/model"
    export FOCUSLLM_MODEL="$model"
    "$bin_dir/random_model" --like "$model" --out "$model" --dtype f16 --seed 1 2>&1 | tee "$out/bench.log"
    {
        echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
        echo "nvrtc: ${nvrtc:-missing}"
    } | tee "$out/summary.txt"
    local status=0 name start end log passed failed
    printf '\n| %-13s | %6s | %6s | %8s |\n| %s | %s | %s | %s |\n' test passed failed seconds ------------- ------ ------ -------- | tee -a "$out/summary.txt"
    while read -r name; do
        log="$(mktemp)"
        start=$(date +%s.%N)
        timeout 300 "$bin_dir/$name" --test-threads=1 > "$log" 2>&1
        local rc=$?
        end=$(date +%s.%N)
        passed=$(grep -c '\.\.\. ok$' "$log")
        failed=$(grep -c '\.\.\. FAILED$' "$log")
        [ "$rc" -ne 0 ] && status=1 && [ "$failed" -eq 0 ] && failed="rc $rc"
        printf '| %-13s | %6s | %6s | %8.1f |\n' "$name" "$passed" "$failed" "$(awk "BEGIN { print $end - $start }")" | tee -a "$out/summary.txt"
        { echo "==== $name (exit $rc)"; cat "$log"; } >> "$out/tests.log"
        rm -f "$log"
    done < "$bin_dir/tests.txt"
    bench_all "$out" "$model"
    echo
    if [ "$status" -ne 0 ]; then
        echo "FAILURES (from $out/tests.log):"
        awk '/^==== / { show = ($0 !~ /\(exit 0\)$/) } show' "$out/tests.log" | grep -A8 -E '^==== |panicked' | head -150
    fi
    exit "$status"
}

# Peak of the GPU's used memory (MiB, whole device) while "$@" runs, sampled every 50 ms.
with_gpu_memory() {
    local samples
    samples="$(mktemp)"
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 50 > "$samples" 2>/dev/null &
    local sampler=$!
    "$@"
    local rc=$?
    kill "$sampler" 2>/dev/null
    wait "$sampler" 2>/dev/null
    echo "peak GPU memory used: $(sort -n "$samples" | tail -1) MiB (whole device; idle before: $(head -1 "$samples") MiB)"
    rm -f "$samples"
    return "$rc"
}

# The benchmark tables: CUDA (plain prefill, decode, FocusLLM prefill at 32K and 128K), then the
# CPU backend on all of this machine's cores at the lengths it finishes quickly, for the ratio.
bench_all() {
    local out="$1" model="$2" b="$bin_dir/focusllm"
    local focus="--local-window 2048 --chunk-size 2048 --prefill none --runs 1 --decode-tokens 0"
    {
        echo
        echo "## bench, CUDA: plain prefill and decode"
        with_gpu_memory timeout 150 "$b" bench --model "$model" --device cuda --prefill 2048,8192,32768 --decode-tokens 64 --runs 3
        echo "## bench, CUDA: FocusLLM prefill at 32K (L = S = 2048)"
        with_gpu_memory timeout 120 "$b" bench --model "$model" --device cuda $focus --focus-lengths 32k --focus-modes frozen,cached
        echo "## bench, CUDA: FocusLLM prefill at 128K"
        with_gpu_memory timeout 150 "$b" bench --model "$model" --device cuda $focus --focus-lengths 128k --focus-modes frozen,cached
        echo "## bench, CPU ($(nproc) threads), same model"
        timeout 150 "$b" bench --model "$model" --device cpu --threads "$(nproc)" --prefill 2048,8192 --decode-tokens 32 --runs 1
    } 2>&1 | tee -a "$out/bench.log" | grep -v '^model:' | tee -a "$out/summary.txt"
}

case "${1:-}" in
    build) build ;;
    run) run ;;
    *) echo "usage: bash scripts/cuda_device_check.sh build|run" >&2; exit 2 ;;
esac
