#!/usr/bin/env bash
# Session 19, call 1 (driver JIT). Three builds: exe-head = 1b46307 (the landed code), exe-a =
# 95d1e97 (only the masked forward's block-mask scan answer warp-uniform), exe-flashattn =
# 4100319 (a + the dropout forward's Philox calls tied to chunk sums + the block-sparse forward
# longest first). gpu_masks on the last; the dropout-core table and the block-sparse / packed
# tables new / a / head (fresh process each).
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s19c1; mkdir -p $W
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
for b in head a; do
  ( timeout 300 .gpu/bin/exe-$b bench --op fwd --head-dims 64 --quick --budget-ms 1 --out $W/warm-$b.json > $W/warm-$b.log 2>&1; el "$b warm rc=$?" ) &
done
timeout 200 .gpu/bin/test-gpu_masks --include-ignored --test-threads=16 > $W/test-gpu_masks.log 2>&1; el "gpu_masks rc=$?"
grep -E "test result|FAILED|panicked" $W/test-gpu_masks.log | head -12
wait
for r in new1 a2 head3; do
  b=.gpu/bin/exe-${r%[0-9]}; [ ${r%[0-9]} == new ] && b=.gpu/bin/exe-flashattn
  [ $(( $(date +%s) - T0 )) -gt 270 ] && { el "skip $r (time)"; continue; }
  timeout 60 $b bench-masks --only sparse,varlen --call s19c1-$r --out $W/sparse-$r.json --budget-ms 100 > $W/sparse-$r.log 2>&1; el "sparse $r rc=$?"
  timeout 60 $b bench-masks --only dropout-core --call s19c1-$r --out $W/dropout-$r.json --budget-ms 100 > $W/dropout-$r.log 2>&1; el "dropout $r rc=$?"
done
tar -C /tmp -czf $OUT/s19c1.tgz s19c1; ls -la $OUT
for r in new1 a2 head3; do
  echo "== $r"; grep -E "blocks|flash  |varlen|packed" $W/sparse-$r.log | awk '{printf "%s %s %s %s %s | ", $1, $5, $6, $8, $9} NR%2==0 {print ""}'
  grep -E "^(fwd|bwd) " $W/dropout-$r.log | grep -v masked | awk '{printf "%s%s/%s %s %s %s | ", $1, $2, $3, $5, $6, $8} NR%4==0 {print ""}'
done
