#!/usr/bin/env bash
# Session 17, call 8 (driver JIT): the final code (the mma.sync copies of call 7): gpu_masks
# (masked mma.sync builds among them), gpu_standard, gpu_run.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s17c8; mkdir -p $W
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
for t in gpu_masks gpu_standard gpu_run; do
  timeout 300 .gpu/bin/test-$t --include-ignored --test-threads=8 > $W/test-$t.log 2>&1; el "$t rc=$?"
  grep -E "test result|FAILED|panicked" $W/test-$t.log | head -12
done
tar -C /tmp -czf $OUT/s17c8.tgz s17c8; ls -la $OUT
