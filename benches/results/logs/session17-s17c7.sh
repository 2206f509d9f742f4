#!/usr/bin/env bash
# Session 17, call 7 (driver JIT): the mma.sync kernels' tile copies with a fixed row step per
# thread (sm_90a; exe-flashattn) against the final wgmma code (exe-prev, 82339df). gpu_forward,
# gpu_backward; the d = 256 backward (mma.sync) sweep and the forward and backward at d = 96 and
# 160 (mma.sync) at N = 1k and 4k, prev / new alternating.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s17c7; mkdir -p $W
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
( timeout 300 .gpu/bin/exe-prev bench --op fwd --head-dims 64 --quick --budget-ms 1 --out $W/warm-prev.json > $W/warm-prev.log 2>&1; el "prev warm rc=$?" ) &
for t in gpu_forward gpu_backward; do
  timeout 300 .gpu/bin/test-$t --include-ignored --test-threads=8 > $W/test-$t.log 2>&1; el "$t rc=$?"
  grep -E "test result|FAILED|panicked" $W/test-$t.log | head -12
done
wait
for r in new1 prev2 new3 prev4; do
  [ $(( $(date +%s) - T0 )) -gt 500 ] && { el "skip $r (time)"; continue; }
  b=.gpu/bin/exe-flashattn; [[ $r == prev* ]] && b=.gpu/bin/exe-prev
  timeout 60 $b bench --op bwd --head-dims 256 --budget-ms 60 --out $W/bwd256-$r.json > $W/bwd256-$r.log 2>&1; el "bwd256 $r rc=$?"
  timeout 60 $b bench --op fwd,bwd --head-dims 96,160 --quick --budget-ms 60 --out $W/odd-$r.json > $W/odd-$r.log 2>&1; el "odd $r rc=$?"
done
tar -C /tmp -czf $OUT/s17c7.tgz s17c7; ls -la $OUT
