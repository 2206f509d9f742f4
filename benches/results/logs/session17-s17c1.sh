#!/usr/bin/env bash
# Session 17, call 1 (driver JIT): the forward's K, V and Q tiles wholly inside the sequence
# copied by copy_full_tile_sw128 (~3 instructions a chunk instead of ~23); otherwise the session's
# start (exe-head, f86c5f8). gpu_forward, gpu_masks; forward sweeps new / head / new; the
# dropout-core table new / head alternating; block-sparse and packed batches new / head; PyTorch's
# FA2 and cuDNN forward last, as peers of one more sweep of ours.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s17c1; mkdir -p $W
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
( timeout 300 .gpu/bin/exe-head bench --op fwd --head-dims 64 --quick --budget-ms 1 --out $W/warm-head.json > $W/warm-head.log 2>&1; el "head warm rc=$?" ) &
for t in gpu_forward gpu_masks; do
  timeout 300 .gpu/bin/test-$t --include-ignored --test-threads=8 > $W/test-$t.log 2>&1; el "$t rc=$?"
  grep -E "test result|FAILED|panicked" $W/test-$t.log | head -12
done
wait
for r in new1 head2 new3; do
  b=.gpu/bin/exe-flashattn; [[ $r == head* ]] && b=.gpu/bin/exe-head
  timeout 60 $b bench --op fwd --head-dims 64,128,256 --budget-ms 60 --out $W/fwd-$r.json > $W/fwd-$r.log 2>&1; el "fwd $r rc=$?"
done
for r in new1 head2 new3 head4; do
  [ $(( $(date +%s) - T0 )) -gt 400 ] && { el "skip dropout $r (time)"; continue; }
  b=.gpu/bin/exe-flashattn; [[ $r == head* ]] && b=.gpu/bin/exe-head
  timeout 60 $b bench-masks --only dropout-core --call s17c1-$r --out $W/dropout-$r.json --budget-ms 100 > $W/dropout-$r.log 2>&1; el "dropout $r rc=$?"
done
for r in new1 head2; do
  [ $(( $(date +%s) - T0 )) -gt 460 ] && { el "skip sparse $r (time)"; continue; }
  b=.gpu/bin/exe-flashattn; [[ $r == head* ]] && b=.gpu/bin/exe-head
  timeout 60 $b bench-masks --only sparse,varlen --call s17c1-$r --out $W/sparse-$r.json --budget-ms 100 > $W/sparse-$r.log 2>&1; el "sparse $r rc=$?"
done
if [ $(( $(date +%s) - T0 )) -lt 440 ]; then
  PYTHONUNBUFFERED=1 timeout 100 python3 benches/peers/sdpa_peers.py --dims 64,128,256 --backends fa2,cudnn --no-bwd --out $W/peers.json > $W/peers.log 2>&1; el "peers rc=$?"
  timeout 50 .gpu/bin/exe-flashattn bench --op fwd --head-dims 64,128,256 --budget-ms 60 --peers $W/peers.json --out $W/fwd-new4.json > $W/fwd-new4.log 2>&1; el "fwd new4 rc=$?"
fi
tar -C /tmp -czf $OUT/s17c1.tgz s17c1; ls -la $OUT
