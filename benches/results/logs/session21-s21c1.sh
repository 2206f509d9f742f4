#!/usr/bin/env bash
# Session 21, call 1: the warp-specialized forward (ForwardKernel::WarpSpecialized: TMA producer
# warpgroup, two consumer warpgroups in turns), from a cubin built here by ptxas 13.5 (no JIT):
# its GPU tests first (each under a timeout: a barrier-protocol bug would hang), then the
# dropout-core table with the ws rows beside Auto's (same process).
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s21c1; mkdir -p $W; B=.gpu/bin
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee $W/device.txt
xz -d .gpu/cubin/new.cubin.xz 2>/dev/null || python3 -c "import lzma,sys; open(sys.argv[1][:-3],'wb').write(lzma.open(sys.argv[1]).read())" .gpu/cubin/new.cubin.xz
export FLASHATTN_CUBIN=$PWD/.gpu/cubin/new.cubin
t() { local name=$1 lim=$2; shift 2; timeout $lim "$@" > $W/test-$name.log 2>&1; el "$name rc=$?"; grep -E "test result|FAILED|panicked|failed" $W/test-$name.log | head -8; }
t ws-smoke 60 $B/test-gpu_wgmma --include-ignored --test-threads=1 ws_forward_rejects
t ws-seqlens 150 $B/test-gpu_wgmma --include-ignored --test-threads=4 ws_forward_seqlens
t ws-square 150 $B/test-gpu_wgmma --include-ignored --test-threads=4 ws_forward_matches wgmma_forward_strided
t ws-dropout 150 $B/test-gpu_masks --include-ignored --test-threads=8 ws_dropout
timeout 240 $B/exe-flashattn bench-masks --only dropout-core --call s21c1 --out $W/dropout.json --budget-ms 40 > $W/dropout.log 2>&1; el "bench rc=$?"
grep -E "^ +(flash|ws)" $W/dropout.log | head -80
tar -C /tmp -czf $OUT/s21c1.tgz s21c1; ls -la $OUT
