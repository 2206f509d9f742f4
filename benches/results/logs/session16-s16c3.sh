#!/usr/bin/env bash
# Session 16, call 3 (driver JIT): the wait pinned at d = 128 in the dropout builds too, their
# flags computed after it (tied to O); plain causal d = 64 and the d = 64 dropout builds keep the
# hoisted wait. gpu_forward and gpu_masks; the dropout-core table three times against the
# session's start (exe-head, f2e0181) twice, alternating.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s16c3; mkdir -p $W
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
( timeout 300 .gpu/bin/exe-head bench --op fwd --head-dims 64 --quick --budget-ms 1 --out $W/warm-head.json > $W/warm-head.log 2>&1; el "head warm rc=$?" ) &
for t in gpu_forward gpu_masks; do
  timeout 300 .gpu/bin/test-$t --include-ignored --test-threads=8 > $W/test-$t.log 2>&1; el "$t rc=$?"
  grep -E "test result|FAILED|panicked" $W/test-$t.log | head -12
done
wait
for r in new1 head2 new3 head4 new5; do
  [ $(( $(date +%s) - T0 )) -gt 420 ] && { el "skip dropout $r (time)"; continue; }
  b=.gpu/bin/exe-flashattn; [[ $r == head* ]] && b=.gpu/bin/exe-head
  timeout 60 $b bench-masks --only dropout-core --call s16c3-$r --out $W/dropout-$r.json --budget-ms 100 > $W/dropout-$r.log 2>&1; el "dropout $r rc=$?"
done
tar -C /tmp -czf $OUT/s16c3.tgz s16c3; ls -la $OUT
