#!/usr/bin/env bash
# The first GPU run of the warp-specialized forward (ForwardKernel::WarpSpecialized: TMA producer
# warpgroup, two consumer warpgroups in turns), written in session 21, whose device calls were
# all refused (no machine lent), so it has not run yet. Build here with
#   ../shared/tools/gpu-bundle --tests   (then keep .gpu/bin/{test-gpu_wgmma,test-gpu_masks,exe-flashattn},
#   .gpu/run.sh and .gpu/peers_sdpa.py: 64 MiB at most travel)
# and call `run` with carry [".gpu"] and `bash benches/results/logs/session21-ws-first-run.sh`.
# The GPU tests first, each under a timeout (a barrier-protocol bug would hang rather than fail),
# then the dropout-core table: the ws rows (forward only) beside Auto's in the same process.
# Driver JIT, with the cache large enough that the second process reuses the first's.
# session21-ws-pinned-waits.patch: the dropout builds' P V wait pinned after the drop flags,
# the variant to measure next to this one. (Session 22, no device either: the TMA instruction
# test and the descriptor-rewrite test added ahead of the kernel's tests.)
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/ws1; mkdir -p $W; B=.gpu/bin
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee $W/device.txt
t() { local name=$1 lim=$2; shift 2; timeout $lim "$@" > $W/test-$name.log 2>&1; el "$name rc=$?"; grep -E "test result|FAILED|panicked|failed" $W/test-$name.log | head -8; }
# The copy path alone first (TMA descriptor, mbarrier bytes, swizzle: added in session 22),
# then the kernel: an error value, one shape queued A B A B (the descriptor buffer rewritten).
t tma 240 $B/test-gpu_wgmma --include-ignored --test-threads=1 tma_box_lands
t smoke 60 $B/test-gpu_wgmma --include-ignored --test-threads=1 ws_forward_rejects ws_forward_follows
t seqlens 120 $B/test-gpu_wgmma --include-ignored --test-threads=4 ws_forward_seqlens
t dropout 120 $B/test-gpu_masks --include-ignored --test-threads=8 ws_dropout
timeout 240 $B/exe-flashattn bench-masks --only dropout-core --call ws1 --out $W/dropout.json --budget-ms 40 > $W/dropout.log 2>&1; el "bench rc=$?"
grep -E "^ +(flash|ws)" $W/dropout.log | grep -v masked
t square 150 $B/test-gpu_wgmma --include-ignored --test-threads=4 ws_forward_matches wgmma_forward_strided
# compute-sanitizer on one small case of each head dim (synccheck: barrier misuse; racecheck:
# shared-memory hazards), reported, not asserted: its models of the TMA's async proxy may differ.
CS=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -n 1)
[ -n "$CS" ] && for tool in synccheck racecheck; do
  [ $(( $(date +%s) - T0 )) -lt 380 ] || break
  timeout 100 "$CS" --tool $tool $B/test-gpu_wgmma --include-ignored --exact ws_forward_small_case_for_sanitizer > $W/sanitizer-$tool.log 2>&1
  el "sanitizer $tool rc=$?"; tail -n 3 $W/sanitizer-$tool.log
done
# FA2 / cuDNN at the same shapes, same call (the peers script from gpu-bundle), if time is left.
[ $(( $(date +%s) - T0 )) -lt 420 ] && { OUT=$W timeout 150 bash .gpu/run.sh peers quick > $W/peers.log 2>&1; el "peers rc=$?"; }
tar -C /tmp -czf $OUT/ws1.tgz ws1; ls -la $OUT
