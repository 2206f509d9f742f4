#!/usr/bin/env bash
# Session 5, call 7: forward tests and forward bench after the copy-only warpgroup fix.
set -u
B=.gpu/bin/exe-flashattn
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
for t in gpu_wgmma gpu_forward; do
  timeout 250 .gpu/bin/test-$t --include-ignored --test-threads=12 > $OUT/test-$t.log 2>&1; el "test $t rc=$?"
  grep -E "^test result|FAILED|panicked" $OUT/test-$t.log | head -20
done
timeout 80 python3 benches/peers/sdpa_peers.py --dims 64,128,256 --backends fa2,cudnn --no-bwd --out $OUT/peers.json > $OUT/peers.log 2>&1; el "peers rc=$?"
timeout 80 $B bench --op fwd --head-dims 64,128,256 --peers $OUT/peers.json --out $OUT/bench-fwd.json --budget-ms 80 > $OUT/bench-fwd.log 2>$OUT/bench-fwd.progress; el "bench fwd rc=$?"
timeout 60 $B bench --op fwd --quick --dtype f16 --head-dims 64,128,256 --out $OUT/bench-f16.json --budget-ms 60 > $OUT/bench-f16.log 2>&1; el "f16 rc=$?"
rm -f $OUT/peers.log $OUT/bench-fwd.progress
