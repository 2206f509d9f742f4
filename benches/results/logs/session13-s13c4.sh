#!/usr/bin/env bash
# Session 13, call 4 (driver JIT): the block-sparse table of the final build (4a6f637) and of HEAD
# (3bc0389) alternately, HEAD first (its JIT), four times each.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s13c4; mkdir -p $W
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
i=0
for v in head new head new head new head new; do
  i=$((i+1))
  [ $(( $(date +%s) - T0 )) -gt 480 ] && { el "skip $v$i (time)"; continue; }
  exe=.gpu/bin/exe-flashattn; [ $v = head ] && exe=.gpu/bin/exe-head
  to=60; [ $i -le 2 ] && to=280
  timeout $to $exe bench-masks --only sparse --call s13c4-$v$i --out $W/sparse-$v$i.json --budget-ms 300 > $W/sparse-$v$i.log 2>&1; el "sparse $v$i rc=$?"
  grep -E "^bwd " $W/sparse-$v$i.log | head -5
done
tar -C /tmp -czf $OUT/s13c4.tgz s13c4; ls -la $OUT
