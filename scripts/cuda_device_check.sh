#!/usr/bin/env bash
# The prepared check of focusllm-cuda on a lent GPU machine, in two halves:
#
#   here (no GPU, no CUDA toolkit needed):   bash scripts/cuda_device_check.sh build
#       builds the crate's test binaries with `cargo test --release -p focusllm-cuda --no-run`,
#       strips them into .device-carry/cuda/ (git-ignored through .git/info/exclude), and prints
#       what to carry and the one command to run there.
#
#   there (the device tool's `run`, carry [".device-carry"]):   bash scripts/cuda_device_check.sh run
#       finds the driver and libnvrtc.so.13 on that machine, runs every binary with
#       FOCUSLLM_REQUIRE_CUDA=1 (a missing device fails instead of skipping) and prints a table of
#       binary, tests passed / failed, seconds. Logs go to $OUT when the tool sets it.
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
    echo "built into $carry/cuda (carry this folder; tests/fixtures travels with the working tree):"
    (cd "$root" && du -sh "$carry" && ls -l "$carry/cuda")
    echo
    echo "on the GPU machine, the device tool's run with carry [\"$carry\"] and timeout_s 420:"
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
    echo
    if [ "$status" -ne 0 ]; then
        echo "FAILURES (from $out/tests.log):"
        awk '/^==== / { show = ($0 !~ /\(exit 0\)$/) } show' "$out/tests.log" | grep -A8 -E '^==== |panicked' | head -150
    fi
    exit "$status"
}

case "${1:-}" in
    build) build ;;
    run) run ;;
    *) echo "usage: bash scripts/cuda_device_check.sh build|run" >&2; exit 2 ;;
esac
