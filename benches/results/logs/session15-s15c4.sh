#!/usr/bin/env bash
# Session 15, call 4 (driver JIT, same binaries as call 3, whose backward sweeps found no peers
# file): PyTorch's FA2 and cuDNN through benches/peers/sdpa_peers.py, then our backward sweep
# twice with them as peers, and the session's start (exe-head, 074ea65) between.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s15c4; mkdir -p $W
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
PYTHONUNBUFFERED=1 timeout 200 python3 benches/peers/sdpa_peers.py --dims 64,128,256 --backends fa2,cudnn --out $W/peers.json > $W/peers.log 2>&1; el "peers rc=$?"
for r in new1 head2 new3; do
  [ $(( $(date +%s) - T0 )) -gt 480 ] && { el "skip $r (time)"; continue; }
  b=.gpu/bin/exe-flashattn; [[ $r == head* ]] && b=.gpu/bin/exe-head
  timeout 100 $b bench --op bwd --head-dims 64,128,256 --budget-ms 60 --peers $W/peers.json --out $W/bwd-$r.json > $W/bwd-$r.log 2>&1; el "bwd $r rc=$?"
done
tar -C /tmp -czf $OUT/s15c4.tgz s15c4; ls -la $OUT
