#!/usr/bin/env bash
# Session 5, call 1: peers, our bench (auto; mma.sync at d = 64 for the causal comparison), then GPU tests.
set -u
B=.gpu/bin/exe-flashattn
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
el peers
timeout 200 python3 benches/peers/sdpa_peers.py --dims 64,128,256 --backends fa2,cudnn --out $OUT/peers.json > $OUT/peers.log 2>&1; el "peers rc=$?"
timeout 170 $B bench --head-dims 64 128 256 --peers $OUT/peers.json --out $OUT/bench-auto.json --budget-ms 80 > $OUT/bench-auto.log 2>&1; el "bench auto rc=$?"
timeout 50 $B bench --head-dims 64 --kernel tensor-core --peers $OUT/peers.json --out $OUT/bench-mma64.json --budget-ms 80 > $OUT/bench-mma64.log 2>&1; el "bench mma64 rc=$?"
for t in gpu_wgmma gpu_masks gpu_backward; do
  left=$(( 560 - ($(date +%s) - T0) )); [ $left -lt 20 ] && { el "no time for $t"; continue; }
  timeout $left .gpu/bin/test-$t --include-ignored --test-threads=8 > $OUT/test-$t.log 2>&1; el "test $t rc=$?"
  grep -E "^test result|FAILED|panicked" $OUT/test-$t.log | head -20
done
grep -E "ours|ratio" $OUT/bench-auto.log | head -5
