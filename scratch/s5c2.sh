#!/usr/bin/env bash
# Session 5, call 2: peers, our bench (auto), bench-masks, mma.sync forward at d = 64 (causal comparison).
set -u
B=.gpu/bin/exe-flashattn
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
el peers
timeout 150 python3 benches/peers/sdpa_peers.py --dims 64,128,256 --backends fa2,cudnn --out $OUT/peers.json > $OUT/peers.log 2>&1; el "peers rc=$?"
timeout 220 $B bench --head-dims 64,128,256 --peers $OUT/peers.json --out $OUT/bench-auto.json --budget-ms 80 > $OUT/bench-auto.log 2>$OUT/bench-auto.progress; el "bench auto rc=$?"
left=$(( 520 - ($(date +%s) - T0) ))
timeout $left $B bench-masks --call s5c2 --out $OUT/masks.json --budget-ms 100 > $OUT/masks.log 2>&1; el "masks rc=$?"
left=$(( 590 - ($(date +%s) - T0) ))
[ $left -gt 15 ] && { timeout $left $B bench --op fwd --head-dims 64 --kernel tensor-core --peers $OUT/peers.json --out $OUT/bench-mma64.json --budget-ms 60 > $OUT/bench-mma64.log 2>&1; el "mma64 rc=$?"; }
