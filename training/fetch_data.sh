#!/usr/bin/env bash
# Fetch the trainer's English text from the Debian archive and write it as plain text:
#   kjv.txt         the King James Bible (package bible-kjv-text, dumped with the bible-kjv program)
#   pydocs/*.txt    the Python 3.11 documentation's reStructuredText sources (package python3.11-doc)
# Nothing is installed: the packages are downloaded and unpacked in a temporary directory.
# Output directory: $1, else $FOCUSLLM_CACHE/training-data (default ~/.cache/focusllm/training-data).
# Prints the output directory on stdout.
set -euo pipefail

cache="${FOCUSLLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/focusllm}"
out="${1:-$cache/training-data}"
if [ -s "$out/kjv.txt" ] && [ -d "$out/pydocs" ]; then
  echo "$out"
  exit 0
fi
command -v apt-get >/dev/null || { echo "fetch_data: needs apt-get (Debian or Ubuntu)" >&2; exit 1; }
mkdir -p "$out/pydocs"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
echo "fetch_data: downloading bible-kjv, bible-kjv-text and python3.11-doc (about 15 MB) ..." >&2
apt-get download bible-kjv bible-kjv-text python3.11-doc >&2
for deb in *.deb; do dpkg-deb -x "$deb" root; done
# The whole book, Genesis 1:1 to Revelation 22:21, one verse per paragraph.
root/usr/bin/bible -p root/usr/lib "Gen1:1-Rev22:21" > "$out/kjv.txt"
src=root/usr/share/doc/python3.11/html/_sources
find "$src" -name '*.rst.txt' | sort | while read -r f; do
  rel=${f#"$src"/}
  cp "$f" "$out/pydocs/$(echo "${rel%.rst.txt}" | tr / _).txt"
done
echo "fetch_data: $(wc -c < "$out/kjv.txt") bytes of KJV, $(ls "$out/pydocs" | wc -l) Python documentation files" >&2
echo "$out"
