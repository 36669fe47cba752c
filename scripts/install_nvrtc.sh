#!/usr/bin/env bash
# Installs NVRTC (CUDA's run-time compiler, no GPU needed) from the PyPI wheel nvidia-cuda-nvrtc
# into a private directory and prints the directory holding libnvrtc.so.13, for
#   export LD_LIBRARY_PATH=$(bash scripts/install_nvrtc.sh):$LD_LIBRARY_PATH
# focusllm-cuda's binding (cudarc, feature cuda-13000) dlopens "libnvrtc.so.13" by name, so the
# directory must be on LD_LIBRARY_PATH (libnvrtc also dlopens its libnvrtc-builtins.so.13.0 from there:
# preloading libnvrtc by full path alone is not enough).
#
# The version is pinned to CUDA 13.0, the driver generation of the lent H200 machines: PTX from a
# newer NVRTC carries a newer PTX ISA version that a 13.0 driver refuses to load.
# Override with NVRTC_VERSION=... and the directory with FOCUSLLM_NVRTC_DIR=...
# Everything but the final directory goes to stderr.
set -euo pipefail

version="${NVRTC_VERSION:-13.0.88}"
dir="${FOCUSLLM_NVRTC_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/focusllm/nvrtc-$version}"
lib="$dir/nvidia/cu13/lib"

if [ ! -e "$lib/libnvrtc.so.13" ]; then
    python="$(command -v python3 || command -v python)"
    PIP_ROOT_USER_ACTION=ignore "$python" -m pip install --quiet --disable-pip-version-check --no-deps --target "$dir" \
        "nvidia-cuda-nvrtc==$version" >&2
fi
if [ ! -e "$lib/libnvrtc.so.13" ]; then
    echo "install_nvrtc.sh: libnvrtc.so.13 not found under $dir after installing nvidia-cuda-nvrtc==$version" >&2
    find "$dir" -name 'libnvrtc*' >&2 || true
    exit 1
fi
echo "$lib"
