#!/usr/bin/env bash
# Session 16, call 1 (driver JIT): the forward's wait for P V_{j-1} pinned after the softmax
# (wgmma_wait_group_after). Forward tests (gpu_forward, gpu_masks); PyTorch's FA2 and
# cuDNN forward; our forward sweep twice around the session's start (exe-head, f2e0181); the
# dropout-core table twice around the session's start.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s16c1; mkdir -p $W
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
( timeout 300 .gpu/bin/exe-head bench --op fwd --head-dims 64 --quick --budget-ms 1 --out $W/warm-head.json > $W/warm-head.log 2>&1; el "head warm rc=$?" ) &
for t in gpu_forward gpu_masks; do
  timeout 300 .gpu/bin/test-$t --include-ignored --test-threads=8 > $W/test-$t.log 2>&1; el "$t rc=$?"
  grep -E "test result|FAILED|panicked" $W/test-$t.log | head -12
done
wait
PYTHONUNBUFFERED=1 timeout 150 python3 benches/peers/sdpa_peers.py --dims 64,128,256 --backends fa2,cudnn --no-bwd --out $W/peers.json > $W/peers.log 2>&1; el "peers rc=$?"
for r in new1 head2 new3; do
  [ $(( $(date +%s) - T0 )) -gt 480 ] && { el "skip fwd $r (time)"; continue; }
  b=.gpu/bin/exe-flashattn; [[ $r == head* ]] && b=.gpu/bin/exe-head
  timeout 90 $b bench --op fwd --head-dims 64,128,256 --budget-ms 60 --peers $W/peers.json --out $W/fwd-$r.json > $W/fwd-$r.log 2>&1; el "fwd $r rc=$?"
done
for r in new1 head2 new3; do
  [ $(( $(date +%s) - T0 )) -gt 540 ] && { el "skip dropout $r (time)"; continue; }
  b=.gpu/bin/exe-flashattn; [[ $r == head* ]] && b=.gpu/bin/exe-head
  timeout 60 $b bench-masks --only dropout-core --call s16c1-$r --out $W/dropout-$r.json --budget-ms 100 > $W/dropout-$r.log 2>&1; el "dropout $r rc=$?"
done
tar -C /tmp -czf $OUT/s16c1.tgz s16c1; ls -la $OUT
