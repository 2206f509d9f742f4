#!/usr/bin/env bash
# Session 17, call 9 (driver JIT): the 64-row plain forward tiles held at 168 registers
# (.maxnreg; exe-flashattn) against 99fb2f4 (exe-prev). gpu_forward; the d = 64 forward sweep
# prev / new alternating (the 64-row tiles run causal N <= 1k and non-causal N = 512).
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s17c9; mkdir -p $W
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
( timeout 300 .gpu/bin/exe-prev bench --op fwd --head-dims 64 --quick --budget-ms 1 --out $W/warm-prev.json > $W/warm-prev.log 2>&1; el "prev warm rc=$?" ) &
timeout 300 .gpu/bin/test-gpu_forward --include-ignored --test-threads=8 > $W/test-gpu_forward.log 2>&1; el "gpu_forward rc=$?"
grep -E "test result|FAILED|panicked" $W/test-gpu_forward.log | head -12
wait
for r in new1 prev2 new3 prev4; do
  b=.gpu/bin/exe-flashattn; [[ $r == prev* ]] && b=.gpu/bin/exe-prev
  timeout 60 $b bench --op fwd --head-dims 64 --budget-ms 100 --out $W/fwd64-$r.json > $W/fwd64-$r.log 2>&1; el "fwd64 $r rc=$?"
done
tar -C /tmp -czf $OUT/s17c9.tgz s17c9; ls -la $OUT
