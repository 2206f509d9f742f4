#!/usr/bin/env bash
# Session 18, call 1 (driver JIT): warp-uniform descriptors (77a1359) against the session's start
# (exe-head, 1b46307). gpu_masks, gpu_forward; forward sweeps new / head / new; backward d = 64 /
# 128 new / head; the dropout-core table new / head alternating; block-sparse and packed batches
# new / head.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s18c1; mkdir -p $W
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
( timeout 300 .gpu/bin/exe-head bench --op fwd --head-dims 64 --quick --budget-ms 1 --out $W/warm-head.json > $W/warm-head.log 2>&1; el "head warm rc=$?" ) &
for t in gpu_masks gpu_forward; do
  timeout 300 .gpu/bin/test-$t --include-ignored --test-threads=8 > $W/test-$t.log 2>&1; el "$t rc=$?"
  grep -E "test result|FAILED|panicked" $W/test-$t.log | head -12
done
wait
for r in new1 head2 new3; do
  b=.gpu/bin/exe-flashattn; [[ $r == head* ]] && b=.gpu/bin/exe-head
  timeout 60 $b bench --op fwd --head-dims 64,128,256 --budget-ms 60 --out $W/fwd-$r.json > $W/fwd-$r.log 2>&1; el "fwd $r rc=$?"
done
for r in new1 head2; do
  b=.gpu/bin/exe-flashattn; [[ $r == head* ]] && b=.gpu/bin/exe-head
  timeout 70 $b bench --op bwd --head-dims 64,128 --budget-ms 60 --out $W/bwd-$r.json > $W/bwd-$r.log 2>&1; el "bwd $r rc=$?"
done
for r in new1 head2 new3 head4; do
  [ $(( $(date +%s) - T0 )) -gt 470 ] && { el "skip dropout $r (time)"; continue; }
  b=.gpu/bin/exe-flashattn; [[ $r == head* ]] && b=.gpu/bin/exe-head
  timeout 60 $b bench-masks --only dropout-core --call s18c1-$r --out $W/dropout-$r.json --budget-ms 100 > $W/dropout-$r.log 2>&1; el "dropout $r rc=$?"
  if [ $r == new1 ] || [ $r == head2 ]; then
    timeout 50 $b bench-masks --only sparse,varlen --call s18c1-$r --out $W/sparse-$r.json --budget-ms 100 > $W/sparse-$r.log 2>&1; el "sparse $r rc=$?"
  fi
done
tar -C /tmp -czf $OUT/s18c1.tgz s18c1; ls -la $OUT
