#!/usr/bin/env bash
# Session 13, call 1 (driver JIT): the block-sparse backward's dK/dV CTAs longest first per KV
# head (flash_bwd_key_block_order, first version d0c67b6: one thread per key block reading down
# its mask column): block-sparse table for the new build and HEAD (3bc0389) alternately, twice;
# gpu_masks and gpu_backward; the long sequences (N = 65536 dense, 262144 at density 0.05).
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s13c1; mkdir -p $W
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
i=0
for v in new head new head; do
  i=$((i+1))
  exe=.gpu/bin/exe-flashattn; [ $v = head ] && exe=.gpu/bin/exe-head
  timeout 150 $exe bench-masks --only sparse --call s13c1-$v$i --out $W/sparse-$v$i.json --budget-ms 200 > $W/sparse-$v$i.log 2>&1; el "sparse $v$i rc=$?"
  grep -E "^bwd " $W/sparse-$v$i.log | head -5
done
for t in gpu_masks gpu_backward; do
  timeout 200 .gpu/bin/test-$t --include-ignored --test-threads=8 --nocapture > $W/test-$t.log 2>&1; el "$t rc=$?"
  grep -E "test result|FAILED|panicked" $W/test-$t.log | head -12
done
if [ $(( $(date +%s) - T0 )) -lt 420 ]; then
  timeout 150 .gpu/bin/exe-flashattn bench-masks --long --call s13c1-long --out $W/long.json --budget-ms 100 > $W/long.log 2>&1; el "long rc=$?"
  grep -E "^(fwd|bwd) " $W/long.log | head -6
fi
tar -C /tmp -czf $OUT/s13c1.tgz s13c1; ls -la $OUT
