#!/usr/bin/env bash
# Session 13, call 2 (driver JIT): the key-block order kernel with shared-memory counts (80991b7),
# and the mma.sync masked dK/dV store fix: gpu_masks and gpu_backward; the block-sparse table for
# the new build and HEAD (3bc0389) alternately, twice; ncu durations of the order, preprocessing
# and dQ conversion kernels in the block-sparse table; the long sequences.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s13c2; mkdir -p $W
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
  timeout 120 $exe bench-masks --only sparse --call s13c2-$v$i --out $W/sparse-$v$i.json --budget-ms 200 > $W/sparse-$v$i.log 2>&1; el "sparse $v$i rc=$?"
  grep -E "^bwd " $W/sparse-$v$i.log | head -5
done
timeout 150 ncu --clock-control none --kernel-name regex:"key_block_order|preprocess|dq_convert" --metrics gpu__time_duration.sum --csv --launch-count 60 \
  .gpu/bin/exe-flashattn bench-masks --only sparse --call ncu --out $W/ncu-rows.json --budget-ms 5 > $W/ncu.csv 2> $W/ncu.err; el "ncu rc=$?"
grep -E "key_block_order|preprocess|dq_convert" $W/ncu.csv | awk -F'","' '{print $5, $(NF)}' | sort | uniq -c | head -20
if [ $(( $(date +%s) - T0 )) -lt 450 ]; then
  timeout 120 .gpu/bin/exe-flashattn bench-masks --long --call s13c2-long --out $W/long.json --budget-ms 100 > $W/long.log 2>&1; el "long rc=$?"
  grep -E "^(fwd|bwd) " $W/long.log | head -6
fi
tar -C /tmp -czf $OUT/s13c2.tgz s13c2; ls -la $OUT
