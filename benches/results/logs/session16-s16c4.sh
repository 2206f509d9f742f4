#!/usr/bin/env bash
# Session 16, call 4 (driver JIT): the final code. Forward: the wait pinned in the plain and
# masked builds (not plain causal d = 64, masked d = 64 or dropout). Backward: the dP^T wait pinned
# in the plain dK/dV builds at d = 64 and causal d = 128. gpu_backward, gpu_masks (gpu_forward ran on
# the same plain forward builds in calls 1-3; the size limit leaves it out);
# the dropout-core table twice; block-sparse and packed batches once; PyTorch's FA2 and cuDNN;
# our forward + backward sweep with them as peers, the session's start (exe-head, f2e0181)
# backward sweep at d = 64 and 128, ours again.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s16c4; mkdir -p $W
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
( timeout 300 .gpu/bin/exe-head bench --op bwd --head-dims 64 --quick --budget-ms 1 --out $W/warm-head.json > $W/warm-head.log 2>&1; el "head warm rc=$?" ) &
for t in gpu_backward gpu_masks; do
  timeout 300 .gpu/bin/test-$t --include-ignored --test-threads=8 > $W/test-$t.log 2>&1; el "$t rc=$?"
  grep -E "test result|FAILED|panicked" $W/test-$t.log | head -12
done
for r in run1 run2; do
  timeout 60 .gpu/bin/exe-flashattn bench-masks --only dropout-core --call s16c4-$r --out $W/dropout-$r.json --budget-ms 100 > $W/dropout-$r.log 2>&1; el "dropout $r rc=$?"
done
timeout 60 .gpu/bin/exe-flashattn bench-masks --only sparse,varlen --call s16c4-run1 --out $W/sparse-run1.json --budget-ms 100 > $W/sparse-run1.log 2>&1; el "sparse rc=$?"
wait
PYTHONUNBUFFERED=1 timeout 150 python3 benches/peers/sdpa_peers.py --dims 64,128,256 --backends fa2,cudnn --out $W/peers.json > $W/peers.log 2>&1; el "peers rc=$?"
timeout 120 .gpu/bin/exe-flashattn bench --op fwd,bwd --head-dims 64,128,256 --budget-ms 60 --peers $W/peers.json --out $W/sweep-new1.json > $W/sweep-new1.log 2>&1; el "sweep new1 rc=$?"
for r in head2 new3; do
  [ $(( $(date +%s) - T0 )) -gt 540 ] && { el "skip bwd $r (time)"; continue; }
  b=.gpu/bin/exe-flashattn; [[ $r == head* ]] && b=.gpu/bin/exe-head
  timeout 60 $b bench --op bwd --head-dims 64,128 --budget-ms 60 --out $W/bwd-$r.json > $W/bwd-$r.log 2>&1; el "bwd $r rc=$?"
done
tar -C /tmp -czf $OUT/s16c4.tgz s16c4; ls -la $OUT
