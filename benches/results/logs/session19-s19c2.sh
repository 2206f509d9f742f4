#!/usr/bin/env bash
# Session 19, call 2 (driver JIT; call 1 lost its machine mid-run and returned nothing): the
# little device time left. gpu_masks on exe-flashattn = 4100319 (block-sparse forward longest
# first, dropout forward chunk anchors, the masked forward's uniform scan answer); the
# block-sparse / packed tables new / head (1b46307) / a (95d1e97) as time allows.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s19c2; mkdir -p $W
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
for b in head a; do
  ( timeout 150 .gpu/bin/exe-$b bench --op fwd --head-dims 64 --quick --budget-ms 1 --out $W/warm-$b.json > $W/warm-$b.log 2>&1; el "$b warm rc=$?" ) &
done
timeout 140 .gpu/bin/test-gpu_masks --include-ignored --test-threads=16 > $W/test-gpu_masks.log 2>&1; el "gpu_masks rc=$?"
grep -E "^test |test result|FAILED|panicked" $W/test-gpu_masks.log | head -14
for r in new1 head2 a3 new4; do
  b=.gpu/bin/exe-${r%[0-9]}; [ ${r%[0-9]} == new ] && b=.gpu/bin/exe-flashattn
  [ $(( $(date +%s) - T0 )) -gt 175 ] && { el "skip $r (time)"; continue; }
  timeout 40 $b bench-masks --only sparse --call s19c2-$r --out $W/sparse-$r.json --budget-ms 60 > $W/sparse-$r.log 2>&1; el "sparse $r rc=$?"
  grep -E "^fwd .*(flash |blocks)" $W/sparse-$r.log | awk '{printf "%s %s %s %s | ", $5, $6, $8, $9} END {print ""}'
done
tar -C /tmp -czf $OUT/s19c2.tgz s19c2; ls -la $OUT
