#!/usr/bin/env bash
# Session 22, call 2: Auto now runs the warp-specialized forward where call s22c1
# (session21-ws-first-run.sh, run in session 22) measured it faster. The GPU test suites that
# go through Auto (gpu_forward, gpu_masks, gpu_backward: its outputs feed the backward);
# the dropout table (Auto's rows beside the explicit ws rows); the forward / backward
# sweep at d = 64 / 128 beside FA2 and cuDNN measured in this call. Driver JIT.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=$OUT/s22c2; mkdir -p $W; B=.gpu/bin  # in $OUT: what is written comes back even if the call is cut
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee $W/device.txt
for t in gpu_forward gpu_masks gpu_backward; do
  timeout 240 $B/test-$t --include-ignored > $W/test-$t.log 2>&1; el "$t rc=$?"
  grep -E "test result|FAILED|panicked|failed" $W/test-$t.log | head -8
done
timeout 120 $B/exe-flashattn bench-masks --only dropout-core --call s22c2 --out $W/dropout.json --budget-ms 40 > $W/dropout.log 2>&1; el "dropout bench rc=$?"
grep -E "^ +(flash|ws)" $W/dropout.log | grep -v masked
[ $(( $(date +%s) - T0 )) -lt 280 ] && { PYTHONUNBUFFERED=1 timeout 90 python3 benches/peers/sdpa_peers.py --dims 64,128 --backends fa2,cudnn --out $W/peers.json > $W/peers.log 2>&1; el "peers rc=$?"; tail -n 20 $W/peers.log; }
[ $(( $(date +%s) - T0 )) -lt 370 ] && { timeout 90 $B/exe-flashattn bench --head-dims 64,128 --call s22c2 --peers $W/peers.json --out $W/bench.json --budget-ms 60 2> $W/bench.progress | tail -n 60; el "bench done"; }
ls -la $W
