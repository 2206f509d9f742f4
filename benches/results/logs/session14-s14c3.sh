#!/usr/bin/env bash
# Session 14, call 3 (driver JIT): the final code (causal dropout-only backward at d = 128 on the
# plain kernel's dropout build; every other kernel's PTX as at 5066e7a). gpu_masks and
# gpu_backward, then the dropout-core table three times (fresh processes); its "-masked" rows are
# the session's starting code's kernels (unchanged PTX), timed in the same processes.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s14c3; mkdir -p $W
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
timeout 280 .gpu/bin/test-gpu_masks --include-ignored --test-threads=8 > $W/test-gpu_masks.log 2>&1; el "gpu_masks rc=$?"
grep -E "test result|FAILED|panicked" $W/test-gpu_masks.log | head -12
timeout 200 .gpu/bin/test-gpu_backward --include-ignored --test-threads=8 > $W/test-gpu_backward.log 2>&1; el "gpu_backward rc=$?"
grep -E "test result|FAILED|panicked" $W/test-gpu_backward.log | head -12
for i in 1 2 3; do
  [ $(( $(date +%s) - T0 )) -gt 500 ] && { el "skip run $i (time)"; continue; }
  timeout 90 .gpu/bin/exe-flashattn bench-masks --only dropout-core --call s14c3-run$i --out $W/dropout-run$i.json --budget-ms 100 > $W/dropout-run$i.log 2>&1; el "dropout run$i rc=$?"
done
for f in $W/dropout-*.log; do echo "== $f"; grep -E "^(fwd|bwd) .* flash-dropout" $f | awk '{print $1,$2,$3,$5,$8}' | paste -sd' ' | fold -w 240; done
tar -C /tmp -czf $OUT/s14c3.tgz s14c3; ls -la $OUT
