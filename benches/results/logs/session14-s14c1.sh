#!/usr/bin/env bash
# Session 14, call 1 (driver JIT): dropout alone on the plain wgmma kernels' dropout builds.
# gpu_masks and gpu_backward, then the dropout-core table twice (fresh processes): plain,
# dropout (new path), dropout on the masked builds (the old path, same process), causal pairs.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s14c1; mkdir -p $W
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
timeout 280 .gpu/bin/test-gpu_masks --include-ignored --test-threads=8 > $W/test-gpu_masks.log 2>&1; el "gpu_masks rc=$?"
grep -E "test result|FAILED|panicked|^test " $W/test-gpu_masks.log | head -20
timeout 200 .gpu/bin/test-gpu_backward --include-ignored --test-threads=8 > $W/test-gpu_backward.log 2>&1; el "gpu_backward rc=$?"
grep -E "test result|FAILED|panicked" $W/test-gpu_backward.log | head -12
for i in 1 2; do
  [ $(( $(date +%s) - T0 )) -gt 440 ] && { el "skip run $i (time)"; continue; }
  timeout 140 .gpu/bin/exe-flashattn bench-masks --only dropout-core --call s14c1-run$i --out $W/dropout-run$i.json --budget-ms 100 > $W/dropout-run$i.log 2>&1; el "dropout run$i rc=$?"
  grep -E "^(fwd|bwd) " $W/dropout-run$i.log | head -40
done
tar -C /tmp -czf $OUT/s14c1.tgz s14c1; ls -la $OUT
