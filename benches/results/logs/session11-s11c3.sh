#!/usr/bin/env bash
# Session 11, call 3 (driver JIT): the backward sweep (d = 64, 128) of the new build and of HEAD
# beside PyTorch's FA2 / cuDNN measured in the same call; the dropout table of HEAD.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s11c3; mkdir -p $W
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
PYTHONUNBUFFERED=1 timeout 300 python3 benches/peers/sdpa_peers.py --dims 64,128 --backends fa2,cudnn --out $W/peers.json > $W/peers.log 2>&1; el "peers rc=$?"
tail -n 2 $W/peers.log
for v in new head; do
  exe=.gpu/bin/exe-flashattn; [ $v = head ] && exe=.gpu/bin/exe-head
  timeout 300 $exe bench --op bwd --head-dims 64,128 --peers $W/peers.json --out $W/bwd-$v.json --budget-ms 150 > $W/bwd-$v.log 2>$W/bwd-$v.progress; el "bwd $v rc=$?"
  tail -n 30 $W/bwd-$v.log
done
timeout 300 .gpu/bin/exe-head bench-masks --only dropout --call s11c3-head --out $W/dropout-head.json --budget-ms 150 > $W/dropout-head.log 2>&1; el "dropout head rc=$?"
grep -E "^(bwd) .* (flash|flash-dropout-0.1) " $W/dropout-head.log | head -12
tar -C /tmp -czf $OUT/s11c3.tgz s11c3; ls -la $OUT
