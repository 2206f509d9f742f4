#!/usr/bin/env bash
# Session 17, call 2 (driver JIT): the final forward of call 1, and the backward's dK/dV kernel
# copying Q and dO tiles through copy_full_tile_sw128 (not the dropout builds), against the
# session's start (exe-head, f86c5f8). gpu_backward, gpu_masks; backward sweeps new / head / new;
# the dropout-core table new / head / new; block-sparse and packed batches new / head.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s17c2; mkdir -p $W
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
( timeout 300 .gpu/bin/exe-head bench --op bwd --head-dims 64 --quick --budget-ms 1 --out $W/warm-head.json > $W/warm-head.log 2>&1; el "head warm rc=$?" ) &
for t in gpu_backward gpu_masks; do
  timeout 300 .gpu/bin/test-$t --include-ignored --test-threads=8 > $W/test-$t.log 2>&1; el "$t rc=$?"
  grep -E "test result|FAILED|panicked" $W/test-$t.log | head -12
done
wait
for r in new1 head2 new3; do
  b=.gpu/bin/exe-flashattn; [[ $r == head* ]] && b=.gpu/bin/exe-head
  timeout 70 $b bench --op bwd --head-dims 64,128 --budget-ms 60 --out $W/bwd-$r.json > $W/bwd-$r.log 2>&1; el "bwd $r rc=$?"
done
for r in new1 head2 new3; do
  [ $(( $(date +%s) - T0 )) -gt 480 ] && { el "skip dropout $r (time)"; continue; }
  b=.gpu/bin/exe-flashattn; [[ $r == head* ]] && b=.gpu/bin/exe-head
  timeout 60 $b bench-masks --only dropout-core --call s17c2-$r --out $W/dropout-$r.json --budget-ms 100 > $W/dropout-$r.log 2>&1; el "dropout $r rc=$?"
done
for r in new1 head2; do
  [ $(( $(date +%s) - T0 )) -gt 540 ] && { el "skip sparse $r (time)"; continue; }
  b=.gpu/bin/exe-flashattn; [[ $r == head* ]] && b=.gpu/bin/exe-head
  timeout 60 $b bench-masks --only sparse,varlen --call s17c2-$r --out $W/sparse-$r.json --budget-ms 100 > $W/sparse-$r.log 2>&1; el "sparse $r rc=$?"
done
tar -C /tmp -czf $OUT/s17c2.tgz s17c2; ls -la $OUT
