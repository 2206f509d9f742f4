#!/usr/bin/env bash
# Session 11, call 1 (driver JIT): the dQ conversion overlapping the wgmma dK/dV kernel (PDL,
# per-(batch, KV head) counters): block-sparse table twice for the new build and HEAD, then
# gpu_backward (with the new atomic-vs-deterministic test) and gpu_masks.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s11c1; mkdir -p $W
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
for i in 1 2; do
  for v in new head; do
    exe=.gpu/bin/exe-flashattn; [ $v = head ] && exe=.gpu/bin/exe-head
    timeout 300 $exe bench-masks --only sparse --call s11c1-$v$i --out $W/sparse-$v$i.json --budget-ms 200 > $W/sparse-$v$i.log 2>&1; el "sparse $v $i rc=$?"
    grep -E "^bwd " $W/sparse-$v$i.log | head -5
  done
done
for t in gpu_backward gpu_masks; do
  timeout 300 .gpu/bin/test-$t --include-ignored --test-threads=8 > $W/test-$t.log 2>&1; el "$t rc=$?"
  grep -E "test result|FAILED|panicked|worst" $W/test-$t.log | head -12
done
tar -C /tmp -czf $OUT/s11c1.tgz s11c1; ls -la $OUT
