#!/usr/bin/env bash
# Installs what a fresh machine lacks to build flashattn: the nightly toolchain's rust-src (the
# kernels build `core` from source for nvptx64) and, with --ptxas, NVIDIA's ptxas from PyPI
# (for the PTX resource check; no GPU needed).
set -euo pipefail
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
rustup component add rust-src --toolchain nightly
if [ "${1:-}" = "--ptxas" ]; then
  tools=${CUDA_TOOLS_DIR:-$HOME/.cache/cuda-tools}
  if [ ! -x "$tools/nvidia/cu13/bin/ptxas" ]; then
    python3 -m pip install -q --root-user-action=ignore --no-deps --target "$tools" nvidia-cuda-nvcc
  fi
fi
