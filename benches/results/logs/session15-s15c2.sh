#!/usr/bin/env bash
# Session 15, call 2 (driver JIT): the non-causal plain dropout dK/dV builds with their Philox
# rounds anchored after the S^T MMAs' issue (a clock read ANDed with a run-time zero) and the
# K / V descriptors re-derived per block (no spills), against call 1's build (exe-v1: the same
# code without the anchor), alternating; gpu_masks and gpu_backward of the new build.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s15c2; mkdir -p $W
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
( timeout 300 .gpu/bin/exe-v1 bench --op bwd --head-dims 64 --quick --budget-ms 1 --out $W/warm-v1.json > $W/warm-v1.log 2>&1; el "v1 warm rc=$?" ) &
timeout 300 .gpu/bin/test-gpu_masks --include-ignored --test-threads=8 > $W/test-gpu_masks.log 2>&1; el "gpu_masks rc=$?"
grep -E "test result|FAILED|panicked" $W/test-gpu_masks.log | head -12
timeout 200 .gpu/bin/test-gpu_backward --include-ignored --test-threads=8 > $W/test-gpu_backward.log 2>&1; el "gpu_backward rc=$?"
grep -E "test result|FAILED|panicked" $W/test-gpu_backward.log | head -12
wait
for r in new1 v1-2 new3 v1-4 new5 v1-6; do
  [ $(( $(date +%s) - T0 )) -gt 540 ] && { el "skip $r (time)"; continue; }
  b=.gpu/bin/exe-flashattn; [[ $r == v1* ]] && b=.gpu/bin/exe-v1
  timeout 60 $b bench-masks --only dropout-core --call s15c2-$r --out $W/dropout-$r.json --budget-ms 100 > $W/dropout-$r.log 2>&1; el "dropout $r rc=$?"
done
tar -C /tmp -czf $OUT/s15c2.tgz s15c2; ls -la $OUT
