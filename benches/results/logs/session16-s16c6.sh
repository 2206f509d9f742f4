#!/usr/bin/env bash
# Session 16, call 6 (driver JIT): the d = 128 dropout forward computes every block's drop flags
# under its S and the previous P V MMAs (tied to a clock read after their issue, the wait for S
# pinned after them), against the committed code (exe-prev, dd4062e: only the first block's).
# gpu_masks; the dropout-core table three times against exe-prev twice, alternating.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s16c6; mkdir -p $W
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
( timeout 300 .gpu/bin/exe-prev bench --op fwd --head-dims 64 --quick --budget-ms 1 --out $W/warm-prev.json > $W/warm-prev.log 2>&1; el "prev warm rc=$?" ) &
timeout 300 .gpu/bin/test-gpu_masks --include-ignored --test-threads=8 > $W/test-gpu_masks.log 2>&1; el "gpu_masks rc=$?"
grep -E "test result|FAILED|panicked" $W/test-gpu_masks.log | head -12
wait
for r in new1 prev2 new3 prev4 new5; do
  [ $(( $(date +%s) - T0 )) -gt 480 ] && { el "skip dropout $r (time)"; continue; }
  b=.gpu/bin/exe-flashattn; [[ $r == prev* ]] && b=.gpu/bin/exe-prev
  timeout 60 $b bench-masks --only dropout-core --call s16c6-$r --out $W/dropout-$r.json --budget-ms 100 > $W/dropout-$r.log 2>&1; el "dropout $r rc=$?"
done
tar -C /tmp -czf $OUT/s16c6.tgz s16c6; ls -la $OUT
