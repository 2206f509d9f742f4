#!/usr/bin/env bash
# Session 15, call 3 (driver JIT): the final code. gpu_masks and gpu_backward; the dropout-core
# table three times (fresh processes; "-masked" rows: the masked builds, the previous path);
# PyTorch's FA2 and cuDNN (SDPA) and our backward sweep twice with them as peers; the session's
# start (exe-head, 074ea65) once more if time is left.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s15c3; mkdir -p $W
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
( timeout 300 .gpu/bin/exe-head bench --op bwd --head-dims 64 --quick --budget-ms 1 --out $W/warm-head.json > $W/warm-head.log 2>&1; el "head warm rc=$?" ) &
timeout 300 .gpu/bin/test-gpu_masks --include-ignored --test-threads=8 > $W/test-gpu_masks.log 2>&1; el "gpu_masks rc=$?"
grep -E "test result|FAILED|panicked" $W/test-gpu_masks.log | head -12
timeout 200 .gpu/bin/test-gpu_backward --include-ignored --test-threads=8 > $W/test-gpu_backward.log 2>&1; el "gpu_backward rc=$?"
grep -E "test result|FAILED|panicked" $W/test-gpu_backward.log | head -12
wait
for i in 1 2 3; do
  timeout 60 .gpu/bin/exe-flashattn bench-masks --only dropout-core --call s15c3-run$i --out $W/dropout-run$i.json --budget-ms 100 > $W/dropout-run$i.log 2>&1; el "dropout run$i rc=$?"
done
PYTHONUNBUFFERED=1 timeout 150 python3 .gpu/peers_sdpa.py --dims 64,128,256 --backends fa2,cudnn --out $W/peers.json > $W/peers.log 2>&1; el "peers rc=$?"
for r in new1 new2 head3; do
  [ $(( $(date +%s) - T0 )) -gt 500 ] && { el "skip $r (time)"; continue; }
  b=.gpu/bin/exe-flashattn; [[ $r == head* ]] && b=.gpu/bin/exe-head
  timeout 90 $b bench --op bwd --head-dims 64,128,256 --budget-ms 60 --peers $W/peers.json --out $W/bwd-$r.json > $W/bwd-$r.log 2>&1; el "bwd $r rc=$?"
done
tar -C /tmp -czf $OUT/s15c3.tgz s15c3; ls -la $OUT
