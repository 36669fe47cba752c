#!/usr/bin/env bash
# Fetch the evaluation suite's prose: the Jargon File (Debian package jargon-text), a lexicon of
# real English prose that the trainer (training/fetch_data.sh) never reads. Nothing is installed:
# the package is downloaded and unpacked in a temporary directory.
# Output: $1, else $FOCUSLLM_CACHE/eval/jargon.txt (default ~/.cache/focusllm/eval/jargon.txt).
# Prints the file's path on stdout.
set -euo pipefail

cache="${FOCUSLLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/focusllm}"
out="${1:-$cache/eval/jargon.txt}"
if [ -s "$out" ]; then
  echo "$out"
  exit 0
fi
command -v apt-get >/dev/null || { echo "fetch_eval_text: needs apt-get (Debian or Ubuntu)" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
echo "fetch_eval_text: downloading jargon-text (about 0.7 MB) ..." >&2
apt-get download jargon-text >&2
dpkg-deb -x jargon-text_*.deb root
zcat root/usr/share/doc/jargon-text/jargon.txt.gz > "$out.part"
mv "$out.part" "$out"
echo "fetch_eval_text: $(wc -c < "$out") bytes" >&2
echo "$out"
