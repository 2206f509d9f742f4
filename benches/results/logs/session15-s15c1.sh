#!/usr/bin/env bash
# Session 15, call 1 (driver JIT): the wgmma dK/dV kernel masks keys past the end per key, not
# per element, without causal (plain builds), and the plain kernel gets dropout builds at every
# (d, causal). gpu_masks and gpu_backward; the dropout-core table twice (its "-masked" rows are
# the masked builds, as the session's start ran them); the plain backward sweep of the new build
# and of the session's start (exe-head, 074ea65), alternating.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s15c1; mkdir -p $W
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
# Warm the head build's JIT cache beside the tests (not timed).
( timeout 400 .gpu/bin/exe-head bench --op bwd --head-dims 64 --quick --budget-ms 1 --out $W/warm-head.json > $W/warm-head.log 2>&1; el "head warm rc=$?" ) &
timeout 300 .gpu/bin/test-gpu_masks --include-ignored --test-threads=8 > $W/test-gpu_masks.log 2>&1; el "gpu_masks rc=$?"
grep -E "test result|FAILED|panicked" $W/test-gpu_masks.log | head -12
timeout 200 .gpu/bin/test-gpu_backward --include-ignored --test-threads=8 > $W/test-gpu_backward.log 2>&1; el "gpu_backward rc=$?"
grep -E "test result|FAILED|panicked" $W/test-gpu_backward.log | head -12
wait
for i in 1 2; do
  timeout 90 .gpu/bin/exe-flashattn bench-masks --only dropout-core --call s15c1-run$i --out $W/dropout-run$i.json --budget-ms 100 > $W/dropout-run$i.log 2>&1; el "dropout run$i rc=$?"
done
for f in $W/dropout-*.log; do echo "== $f"; grep -E "^(fwd|bwd) .* flash-dropout" $f | awk '{print $1,$2,$3,$5,$8}' | paste -sd' ' | fold -w 240; done
for r in new1 head2 new3 head4; do
  [ $(( $(date +%s) - T0 )) -gt 520 ] && { el "skip $r (time)"; continue; }
  b=.gpu/bin/exe-flashattn; [[ $r == head* ]] && b=.gpu/bin/exe-head
  timeout 120 $b bench --op bwd --head-dims 64,128,256 --budget-ms 60 --out $W/bwd-$r.json > $W/bwd-$r.log 2>&1; el "bwd $r rc=$?"
done
tar -C /tmp -czf $OUT/s15c1.tgz s15c1; ls -la $OUT
