#!/usr/bin/env bash
# Session 5, call 3: peers, bench (auto), m192 causal d = 64 forward, bench-masks, then GPU tests.
set -u
B=.gpu/bin/exe-flashattn
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
timeout 120 python3 benches/peers/sdpa_peers.py --dims 64,128,256 --backends fa2,cudnn --out $OUT/peers.json > $OUT/peers.log 2>&1; el "peers rc=$?"
timeout 150 $B bench --head-dims 64,128,256 --peers $OUT/peers.json --out $OUT/bench-auto.json --budget-ms 80 > $OUT/bench-auto.log 2>$OUT/bench-auto.progress; el "bench auto rc=$?"
timeout 40 $B bench --op fwd --head-dims 64 --kernel wgmma --tiles 192x128 --peers $OUT/peers.json --out $OUT/bench-m192.json --budget-ms 60 > $OUT/bench-m192.log 2>&1; el "m192 rc=$?"
timeout 60 $B bench-masks --call s5c3 --out $OUT/masks.json --budget-ms 100 > $OUT/masks.log 2>&1; el "masks rc=$?"
for t in gpu_forward gpu_masks gpu_backward gpu_wgmma; do
  left=$(( 585 - ($(date +%s) - T0) )); [ $left -lt 20 ] && { el "no time for $t"; continue; }
  timeout $left .gpu/bin/test-$t --include-ignored --test-threads=12 > $OUT/test-$t.log 2>&1; el "test $t rc=$?"
  grep -E "^test result|FAILED|panicked" $OUT/test-$t.log | head -20
done
