#!/usr/bin/env bash
# Session 12, call 2 (driver JIT): the final code (PTX identical to 69a4961) with the dropout
# test's new deterministic dQ cases beside the wgmma dropout dK/dV kernel.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s12c2; mkdir -p $W
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
timeout 300 .gpu/bin/test-gpu_masks --include-ignored --test-threads=8 --nocapture dropout > $W/test-gpu_masks-dropout.log 2>&1; el "gpu_masks dropout rc=$?"
grep -E "test result|FAILED|panicked|det=true" $W/test-gpu_masks-dropout.log | cut -c1-330 | head -20
tar -C /tmp -czf $OUT/s12c2.tgz s12c2; ls -la $OUT
