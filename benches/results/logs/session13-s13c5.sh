#!/usr/bin/env bash
# Session 13, call 5 (driver JIT): ncu warp-state and pipe counters of the wgmma dK/dV kernels,
# plain and with dropout p = 0.1, d = 64 and 128, N = 4096 (bench-masks --only dropout --quick),
# one launch each: where the dropout backward's extra time goes (for the next attempt).
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s13c5; mkdir -p $W
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
# JIT once (the module cache then serves the profiled runs).
timeout 280 .gpu/bin/exe-flashattn bench-masks --only dropout --quick --call s13c5 --out $W/dropout.json --budget-ms 50 > $W/dropout.log 2>&1; el "dropout rc=$?"
grep -E "^bwd " $W/dropout.log | head -8
for k in dkdv_wgmma_bf16_d128 dkdv_wgmma_masked_dropout_bf16_d128 dkdv_wgmma_bf16_d64 dkdv_wgmma_masked_dropout_bf16_d64; do
  [ $(( $(date +%s) - T0 )) -gt 500 ] && { el "skip $k (time)"; continue; }
  timeout 120 ncu --clock-control none --kernel-name regex:"flash_bwd_${k}\$" --launch-skip 3 --launch-count 1 \
    --section WarpStateStats --section SchedulerStats --section ComputeWorkloadAnalysis --section SpeedOfLight \
    --page raw --csv .gpu/bin/exe-flashattn bench-masks --only dropout --quick --call ncu --out $W/ncu-rows.json --budget-ms 5 \
    > $W/ncu-$k.csv 2> $W/ncu-$k.err; el "ncu $k rc=$?"
done
tar -C /tmp -czf $OUT/s13c5.tgz s13c5; ls -la $OUT
