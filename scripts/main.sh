#!/usr/bin/env bash
# The main job: set-up, then compute attention on the GPU, check it against the CPU reference,
# print time and TFLOPS. Extra arguments go to `flashattn check` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo run --release --quiet -- check "$@"
