#!/usr/bin/env bash
# Session 11, call 4 (driver JIT, final code): the block-mask path against a window that masks
# nothing, same call: the block-sparse table and the dropout table (its masked-noop rows).
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s11c4; mkdir -p $W
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
timeout 300 .gpu/bin/exe-flashattn bench-masks --only sparse,dropout --call s11c4 --out $W/masks.json --budget-ms 150 > $W/masks.log 2>&1; el "masks rc=$?"
grep -E "^bwd .* (flash|flash-masked-noop|flash-blocks-[0-9.]*) " $W/masks.log | head -24
tar -C /tmp -czf $OUT/s11c4.tgz s11c4; ls -la $OUT
