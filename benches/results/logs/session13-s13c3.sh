#!/usr/bin/env bash
# Session 13, call 3 (driver JIT): the key-block order kernel with 16-byte mask loads: gpu_masks
# and gpu_backward; the block-sparse table for the new build and HEAD (3bc0389) alternately,
# twice; ncu durations of the order kernel over the block-sparse table.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s13c3; mkdir -p $W
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
for t in gpu_masks gpu_backward; do
  timeout 200 .gpu/bin/test-$t --include-ignored --test-threads=8 --nocapture > $W/test-$t.log 2>&1; el "$t rc=$?"
  grep -E "test result|FAILED|panicked" $W/test-$t.log | head -12
done
i=0
for v in new head new head; do
  i=$((i+1))
  exe=.gpu/bin/exe-flashattn; [ $v = head ] && exe=.gpu/bin/exe-head
  timeout 120 $exe bench-masks --only sparse --call s13c3-$v$i --out $W/sparse-$v$i.json --budget-ms 200 > $W/sparse-$v$i.log 2>&1; el "sparse $v$i rc=$?"
  grep -E "^bwd " $W/sparse-$v$i.log | head -5
done
timeout 150 ncu --clock-control none --kernel-name regex:"key_block_order" --metrics gpu__time_duration.sum --csv --launch-count 80 \
  .gpu/bin/exe-flashattn bench-masks --only sparse --call ncu --out $W/ncu-rows.json --budget-ms 5 > $W/ncu.csv 2> $W/ncu.err; el "ncu rc=$?"
grep -E "key_block_order" $W/ncu.csv | awk -F'","' '{print $(NF)}' | tr '\n' ' '; echo
tar -C /tmp -czf $OUT/s13c3.tgz s13c3; ls -la $OUT
