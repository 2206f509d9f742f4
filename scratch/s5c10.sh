#!/usr/bin/env bash
# Session 5, call 10: masked backward without the block-mask scan when there is no block mask: tests, bench-masks.
set -u
B=.gpu/bin/exe-flashattn
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
for t in gpu_masks gpu_backward; do
  timeout 250 .gpu/bin/test-$t --include-ignored --test-threads=12 > $OUT/test-$t.log 2>&1; el "test $t rc=$?"
  grep -E "^test result|FAILED|panicked" $OUT/test-$t.log | head -20
done
timeout 150 $B bench-masks --call s5c10 --out $OUT/masks.json --budget-ms 100 > $OUT/masks.log 2>&1; el "masks rc=$?"
grep -E "masked-noop|varlen|blocks|dropout-0.1 " $OUT/masks.log | grep -v "^ " | grep bwd
