#!/usr/bin/env bash
# Session 17, call 3 (driver JIT): full-tile copies in the dropout builds too (exe-flashattn,
# the candidate) against call 2's code (exe-cur, bc1f4bf: dropout builds on the general copy);
# exe-head (f86c5f8) only for the full table's reference. gpu_masks; the dropout-core table
# cur / new alternating; PyTorch's FA2 and cuDNN (forward and backward) and our sweep with them;
# the full dropout table (every tile row) of the candidate if time is left.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s17c3; mkdir -p $W
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
( timeout 300 .gpu/bin/exe-cur bench --op fwd --head-dims 64 --quick --budget-ms 1 --out $W/warm-cur.json > $W/warm-cur.log 2>&1; el "cur warm rc=$?" ) &
timeout 300 .gpu/bin/test-gpu_masks --include-ignored --test-threads=8 > $W/test-gpu_masks.log 2>&1; el "gpu_masks rc=$?"
grep -E "test result|FAILED|panicked" $W/test-gpu_masks.log | head -12
wait
for r in cur1 new2 cur3 new4; do
  b=.gpu/bin/exe-flashattn; [[ $r == cur* ]] && b=.gpu/bin/exe-cur
  timeout 60 $b bench-masks --only dropout-core --call s17c3-$r --out $W/dropout-$r.json --budget-ms 100 > $W/dropout-$r.log 2>&1; el "dropout $r rc=$?"
done
PYTHONUNBUFFERED=1 timeout 150 python3 benches/peers/sdpa_peers.py --dims 64,128,256 --backends fa2,cudnn --out $W/peers.json > $W/peers.log 2>&1; el "peers rc=$?"
timeout 150 .gpu/bin/exe-flashattn bench --op fwd,bwd --head-dims 64,128,256 --budget-ms 60 --peers $W/peers.json --out $W/sweep-new.json > $W/sweep-new.log 2>&1; el "sweep rc=$?"
if [ $(( $(date +%s) - T0 )) -lt 470 ]; then
  timeout $(( 575 - ($(date +%s) - T0) )) .gpu/bin/exe-flashattn bench-masks --only dropout --call s17c3-full --out $W/dropout-full.json --budget-ms 100 > $W/dropout-full.log 2>&1; el "dropout full rc=$?"
fi
tar -C /tmp -czf $OUT/s17c3.tgz s17c3; ls -la $OUT
