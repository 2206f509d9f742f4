#!/usr/bin/env bash
# Session 5, call 5: the remaining GPU tests, bench bf16 quick (for the f16 pair), N = 65536 check, bench-masks --long.
set -u
B=.gpu5/bin/exe-flashattn
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
for t in gpu_instructions gpu_run gpu_standard run_file device_discovery; do
  timeout 150 .gpu5/bin/test-$t --include-ignored --test-threads=12 > $OUT/test-$t.log 2>&1; el "test $t rc=$?"
  grep -E "^test result|FAILED|panicked" $OUT/test-$t.log | head -20
done
for c in "" "--causal"; do timeout 100 $B check --batch 1 --heads 16 --seqlen 65536 --backward $c 2>&1 | tail -n 8; done | tee $OUT/check-65536.log; el "check done"
left=$(( 590 - ($(date +%s) - T0) ))
timeout $left $B bench-masks --long --call s5c5 --out $OUT/masks-long.json --budget-ms 100 > $OUT/masks-long.log 2>&1; el "masks long rc=$?"
