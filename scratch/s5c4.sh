#!/usr/bin/env bash
# Session 5, call 4: GPU tests (forward, wgmma, masks, backward), peers, bench bf16 (full) + f16 (quick), bench-masks.
set -u
B=.gpu/bin/exe-flashattn
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/device.txt
for t in gpu_masks gpu_backward gpu_forward gpu_wgmma; do
  timeout 250 .gpu/bin/test-$t --include-ignored --test-threads=12 > $OUT/test-$t.log 2>&1; el "test $t rc=$?"
  grep -E "^test result|FAILED|panicked" $OUT/test-$t.log | head -20
done
timeout 100 python3 benches/peers/sdpa_peers.py --dims 64,128,256 --backends fa2,cudnn --out $OUT/peers.json > $OUT/peers.log 2>&1; el "peers rc=$?"
timeout 130 $B bench --head-dims 64,128,256 --peers $OUT/peers.json --out $OUT/bench-bf16.json --budget-ms 80 > $OUT/bench-bf16.log 2>$OUT/bench-bf16.progress; el "bench bf16 rc=$?"
left=$(( 520 - ($(date +%s) - T0) ))
timeout $left $B bench-masks --call s5c4 --out $OUT/masks.json --budget-ms 100 > $OUT/masks.log 2>&1; el "masks rc=$?"
left=$(( 590 - ($(date +%s) - T0) ))
[ $left -gt 20 ] && { timeout $left $B bench --quick --dtype f16 --head-dims 64,128,256 --out $OUT/bench-f16.json --budget-ms 60 > $OUT/bench-f16.log 2>&1; el "f16 rc=$?"; }
