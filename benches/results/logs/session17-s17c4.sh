#!/usr/bin/env bash
# Session 17, call 4 (driver JIT): the forward's block-mask scan kept as a warp ballot across the
# loop, the non-causal plain dropout dK/dV builds copying dO as full tiles, the d = 128 dropout
# forward without the thread index reread (exe-flashattn), against call 3's candidate (exe-prev,
# 984c093). gpu_masks, gpu_backward; block-sparse and packed batches prev / new alternating; the
# dropout-core table prev / new alternating.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s17c4; mkdir -p $W
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
( timeout 300 .gpu/bin/exe-prev bench --op fwd --head-dims 64 --quick --budget-ms 1 --out $W/warm-prev.json > $W/warm-prev.log 2>&1; el "prev warm rc=$?" ) &
for t in gpu_masks gpu_backward; do
  timeout 300 .gpu/bin/test-$t --include-ignored --test-threads=8 > $W/test-$t.log 2>&1; el "$t rc=$?"
  grep -E "test result|FAILED|panicked" $W/test-$t.log | head -12
done
wait
for r in new1 prev2 new3 prev4; do
  b=.gpu/bin/exe-flashattn; [[ $r == prev* ]] && b=.gpu/bin/exe-prev
  timeout 60 $b bench-masks --only sparse,varlen --call s17c4-$r --out $W/sparse-$r.json --budget-ms 100 > $W/sparse-$r.log 2>&1; el "sparse $r rc=$?"
done
for r in new1 prev2 new3 prev4; do
  [ $(( $(date +%s) - T0 )) -gt 520 ] && { el "skip dropout $r (time)"; continue; }
  b=.gpu/bin/exe-flashattn; [[ $r == prev* ]] && b=.gpu/bin/exe-prev
  timeout 60 $b bench-masks --only dropout-core --call s17c4-$r --out $W/dropout-$r.json --budget-ms 100 > $W/dropout-$r.log 2>&1; el "dropout $r rc=$?"
done
tar -C /tmp -czf $OUT/s17c4.tgz s17c4; ls -la $OUT
