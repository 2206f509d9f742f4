#!/usr/bin/env bash
# Session 17, call 10 (driver JIT): the mma.sync kernels whose registers rose with the full-tile
# copies (the dQ kernel of the deterministic backward; the `mods` builds: ALiBi / softcap) against
# the code before them (exe-prev, 82339df); exe-flashattn is the final code (e75648e). The full
# dropout table (its `mods` rows) and the deterministic backward at d = 64 / 128, N = 1k / 4k,
# new / prev alternating.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s17c10; mkdir -p $W
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
( timeout 300 .gpu/bin/exe-prev bench --op fwd --head-dims 64 --quick --budget-ms 1 --out $W/warm-prev.json > $W/warm-prev.log 2>&1; el "prev warm rc=$?" ) &
timeout 300 .gpu/bin/exe-flashattn bench --op fwd --head-dims 64 --quick --budget-ms 1 --out $W/warm-new.json > $W/warm-new.log 2>&1; el "new warm rc=$?"
wait
for r in new1 prev2 new3 prev4; do
  [ $(( $(date +%s) - T0 )) -gt 480 ] && { el "skip $r (time)"; continue; }
  b=.gpu/bin/exe-flashattn; [[ $r == prev* ]] && b=.gpu/bin/exe-prev
  timeout 60 $b bench --op bwd --head-dims 64,128 --quick --deterministic --budget-ms 60 --out $W/det-$r.json > $W/det-$r.log 2>&1; el "det $r rc=$?"
  timeout 80 $b bench-masks --only dropout --call s17c10-$r --out $W/dropout-full-$r.json --budget-ms 60 > $W/dropout-full-$r.log 2>&1; el "full $r rc=$?"
done
tar -C /tmp -czf $OUT/s17c10.tgz s17c10; ls -la $OUT
