#!/usr/bin/env bash
# Install torch==VERSION with PIP: from INDEX first when one is given and this is a Linux machine without an NVIDIA
# driver (PyTorch's CPU-only index: ~200 MB instead of PyPI's default build and its ~3 GB of CUDA libraries), else,
# or when that index cannot be reached, the default build from the configured package index.
#
#   scripts/install_torch.sh PIP VERSION [INDEX]
set -euo pipefail
pip="$1" version="$2" index="${3:-}"
if "$pip" show torch 2>/dev/null | grep -qx "Version: ${version}\(+.*\)\?"; then
  exit 0
fi
if [[ -n "$index" && "$(uname -s)" == Linux ]] && ! command -v nvidia-smi >/dev/null; then
  if "$pip" install -q "torch==${version}" --index-url "$index"; then
    exit 0
  fi
  echo "install_torch: the CPU wheel index could not be used; installing torch from the default index" >&2
fi
"$pip" install -q "torch==${version}"
