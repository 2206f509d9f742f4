#!/usr/bin/env bash
# Session 17, call 5 (driver JIT): the final code (82339df): gpu_forward, gpu_masks,
# gpu_backward; the dropout-core table twice; block-sparse and packed batches twice.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s17c5; mkdir -p $W
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
for t in gpu_masks gpu_forward gpu_backward; do
  timeout 300 .gpu/bin/test-$t --include-ignored --test-threads=8 > $W/test-$t.log 2>&1; el "$t rc=$?"
  grep -E "test result|FAILED|panicked" $W/test-$t.log | head -12
done
for r in run1 run2; do
  timeout 60 .gpu/bin/exe-flashattn bench-masks --only dropout-core --call s17c5-$r --out $W/dropout-$r.json --budget-ms 100 > $W/dropout-$r.log 2>&1; el "dropout $r rc=$?"
  timeout 60 .gpu/bin/exe-flashattn bench-masks --only sparse,varlen --call s17c5-$r --out $W/sparse-$r.json --budget-ms 100 > $W/sparse-$r.log 2>&1; el "sparse $r rc=$?"
done
tar -C /tmp -czf $OUT/s17c5.tgz s17c5; ls -la $OUT
