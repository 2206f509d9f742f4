#!/usr/bin/env bash
# Session 16, call 5 (driver JIT): the dropout forward's first block computes its drop flags
# while its S MMA runs (tied to a clock read after the issue, the wait pinned after them);
# otherwise the committed code (5df9ed1). gpu_masks; the dropout-core table three times against
# the session's start (exe-head, f2e0181) twice, alternating.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s16c5; mkdir -p $W
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
( timeout 300 .gpu/bin/exe-head bench --op fwd --head-dims 64 --quick --budget-ms 1 --out $W/warm-head.json > $W/warm-head.log 2>&1; el "head warm rc=$?" ) &
timeout 300 .gpu/bin/test-gpu_masks --include-ignored --test-threads=8 > $W/test-gpu_masks.log 2>&1; el "gpu_masks rc=$?"
grep -E "test result|FAILED|panicked" $W/test-gpu_masks.log | head -12
wait
for r in new1 head2 new3 head4 new5; do
  [ $(( $(date +%s) - T0 )) -gt 480 ] && { el "skip dropout $r (time)"; continue; }
  b=.gpu/bin/exe-flashattn; [[ $r == head* ]] && b=.gpu/bin/exe-head
  timeout 60 $b bench-masks --only dropout-core --call s16c5-$r --out $W/dropout-$r.json --budget-ms 100 > $W/dropout-$r.log 2>&1; el "dropout $r rc=$?"
done
tar -C /tmp -czf $OUT/s16c5.tgz s16c5; ls -la $OUT
