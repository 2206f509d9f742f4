#!/usr/bin/env bash
# Session 14, call 2 (driver JIT): dropout alone on the plain wgmma kernels' dropout builds, the
# d = 128 drop flags behind a `Dropout::on` branch. gpu_masks and gpu_backward, then the
# dropout-core table (plain, dropout, dropout on the masked builds, causal pairs) twice, and the
# session's starting code (5066e7a, `exe-head`: dropout on the masked builds) between them.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s14c2; mkdir -p $W
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
timeout 280 .gpu/bin/test-gpu_masks --include-ignored --test-threads=8 > $W/test-gpu_masks.log 2>&1; el "gpu_masks rc=$?"
grep -E "test result|FAILED|panicked" $W/test-gpu_masks.log | head -12
timeout 200 .gpu/bin/test-gpu_backward --include-ignored --test-threads=8 > $W/test-gpu_backward.log 2>&1; el "gpu_backward rc=$?"
grep -E "test result|FAILED|panicked" $W/test-gpu_backward.log | head -12
timeout 100 .gpu/bin/exe-flashattn bench-masks --only dropout-core --call s14c2-new1 --out $W/dropout-new1.json --budget-ms 100 > $W/dropout-new1.log 2>&1; el "dropout new1 rc=$?"
timeout 250 .gpu/bin/exe-head bench-masks --only dropout --call s14c2-head2 --out $W/dropout-head2.json --budget-ms 100 > $W/dropout-head2.log 2>&1; el "dropout head2 rc=$?"
[ $(( $(date +%s) - T0 )) -lt 520 ] && { timeout 70 .gpu/bin/exe-flashattn bench-masks --only dropout-core --call s14c2-new3 --out $W/dropout-new3.json --budget-ms 100 > $W/dropout-new3.log 2>&1; el "dropout new3 rc=$?"; }
for f in $W/dropout-*.log; do echo "== $f"; grep -E "^(fwd|bwd) .* flash-dropout" $f | grep -v "mods\|other" | awk '{print $1,$2,$3,$5,$8}' | paste -sd' ' | fold -w 240; done
tar -C /tmp -czf $OUT/s14c2.tgz s14c2; ls -la $OUT
