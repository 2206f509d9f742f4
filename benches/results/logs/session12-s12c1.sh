#!/usr/bin/env bash
# Session 12, call 1 (driver JIT): the wgmma dropout backward selecting P Z once in f32
# (no packed AND of P): gpu_masks, gpu_backward, then the dropout table of the new build and of
# HEAD (69a4961) alternately, while the call's time allows.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s12c1; mkdir -p $W
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
for t in gpu_masks gpu_backward; do
  timeout 240 .gpu/bin/test-$t --include-ignored --test-threads=8 --nocapture > $W/test-$t.log 2>&1; el "$t rc=$?"
  grep -E "test result|FAILED|panicked" $W/test-$t.log | head -12
done
i=0
for v in new head new head; do
  i=$((i+1))
  [ $(( $(date +%s) - T0 )) -gt 430 ] && { el "skip $v$i (time)"; continue; }
  exe=.gpu/bin/exe-flashattn; [ $v = head ] && exe=.gpu/bin/exe-head
  timeout 150 $exe bench-masks --only dropout --call s12c1-$v$i --out $W/dropout-$v$i.json --budget-ms 120 > $W/dropout-$v$i.log 2>&1; el "dropout $v$i rc=$?"
  grep -E "^(fwd|bwd) .* (flash|flash-dropout-0.1) " $W/dropout-$v$i.log | head -24
done
tar -C /tmp -czf $OUT/s12c1.tgz s12c1; ls -la $OUT
