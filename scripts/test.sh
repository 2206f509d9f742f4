#!/usr/bin/env bash
# The test command: set-up, then every test. GPU tests are #[ignore]d ("needs a CUDA GPU") and
# reported as ignored here; on a GPU machine run them with `cargo test --release -- --include-ignored`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --ptxas
export FLASHATTN_PTXAS=${FLASHATTN_PTXAS:-${CUDA_TOOLS_DIR:-$HOME/.cache/cuda-tools}/nvidia/cu13/bin/ptxas}
# The host library must build on stable (build.rs calls the nightly for the kernels only).
if rustup toolchain list | grep -q '^stable'; then cargo +stable build --lib --quiet; fi
cargo test --release --workspace
# PTX check: every embedded kernel assembles for sm_80 and sm_90a, with no spills.
cargo test --release --test ptx_resources -- --ignored --nocapture
