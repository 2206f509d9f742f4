#!/usr/bin/env bash
# Session 21, call 1: the warp-specialized forward (ForwardKernel::WarpSpecialized: TMA producer
# warpgroup, two consumer warpgroups in turns), from cubins built here by ptxas 13.5 (no JIT):
# a = 2e9f4fa (the P V wait where ptxas puts it), b = the P V wait pinned after the softmax
# (plain) or the drop flags (dropout). GPU tests first (each under a timeout: a barrier-protocol
# bug would hang), then the dropout-core table with the ws rows beside Auto's (same process),
# a, b, a again.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s21c1; mkdir -p $W; B=.gpu/bin
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee $W/device.txt
for v in new vb; do xz -d .gpu/cubin/$v.cubin.xz 2>/dev/null || python3 -c "import lzma,sys; open(sys.argv[1][:-3],'wb').write(lzma.open(sys.argv[1]).read())" .gpu/cubin/$v.cubin.xz; done
t() { local name=$1 lim=$2; shift 2; timeout $lim "$@" > $W/test-$name.log 2>&1; el "$name rc=$?"; grep -E "test result|FAILED|panicked|failed" $W/test-$name.log | head -8; }
bench() { timeout 200 $B/exe-flashattn bench-masks --only dropout-core --call s21c1-$1 --out $W/dropout-$1.json --budget-ms 40 > $W/dropout-$1.log 2>&1; el "bench $1 rc=$?"
  grep -E "^ +(flash|ws)" $W/dropout-$1.log | grep -v masked | awk '{printf "%s %s%s fwd %s bwd %s | ", $1, $2, $3, $5, $8} END {print ""}'; }
export FLASHATTN_CUBIN=$PWD/.gpu/cubin/new.cubin
t a-smoke 60 $B/test-gpu_wgmma --include-ignored --test-threads=1 ws_forward_rejects
t a-seqlens 120 $B/test-gpu_wgmma --include-ignored --test-threads=4 ws_forward_seqlens
t a-dropout 120 $B/test-gpu_masks --include-ignored --test-threads=8 ws_dropout
bench a1
export FLASHATTN_CUBIN=$PWD/.gpu/cubin/vb.cubin
t b-smoke 60 $B/test-gpu_wgmma --include-ignored --test-threads=1 ws_forward_rejects
t b-seqlens 120 $B/test-gpu_wgmma --include-ignored --test-threads=4 ws_forward_seqlens
t b-dropout 120 $B/test-gpu_masks --include-ignored --test-threads=8 ws_dropout
bench b1
t b-square 150 $B/test-gpu_wgmma --include-ignored --test-threads=4 ws_forward_matches wgmma_forward_strided
[ $(( $(date +%s) - T0 )) -lt 420 ] && { export FLASHATTN_CUBIN=$PWD/.gpu/cubin/new.cubin; bench a2; }
tar -C /tmp -czf $OUT/s21c1.tgz s21c1; ls -la $OUT
