#!/usr/bin/env bash
# Session 20, call 3 (driver JIT, as users run it): the dropout-core table on exe-flashattn
# (c949086: the dense dropout forward's own loop, landed) and exe-head (1afce1d: the session's
# start plus the instruction test), 40 ms budgets (head and new again only if time allows); gpu_masks and gpu_instructions on
# the landed build; then ncu (--clock-control none) warp-state / scheduler / pipe counters of the
# d = 128 dropout forward, one launch at N = 1k, from the cubins v1 (landed) and v2 (the P V wait
# pinned after the flags, 11-12% slower in s20c2): why the pin costs so much there.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s20c3; mkdir -p $W; B=.gpu/bin; C=.gpu/cubin
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
bench() { for r in "$@"; do
  b=$B/exe-flashattn; case $r in head*) b=$B/exe-head;; esac
  timeout 200 $b bench-masks --only dropout-core --call s20c3-$r --out $W/dropout-$r.json --budget-ms 40 > $W/dropout-$r.log 2>&1; el "$r rc=$?"
  grep -E "^(fwd|bwd) .*(flash  |dropout-0.1  |dropout-0.1-causal  |causal  )" $W/dropout-$r.log | awk '{printf "%s %s/%s %s %s %s | ", $1, $2, $3, $5, $6, $8} END {print ""}'
done; }
bench new
timeout 120 $B/test-gpu_masks --include-ignored --test-threads=16 > $W/test-gpu_masks.log 2>&1; el "masks rc=$?"; grep "test result" $W/test-gpu_masks.log
timeout 60 $B/test-gpu_instructions --include-ignored --test-threads=4 > $W/test-gpu_instructions.log 2>&1; el "instructions rc=$?"; grep "test result" $W/test-gpu_instructions.log
for f in $C/v1.cubin.xz $C/v2.cubin.xz; do xz -d "$f" 2>/dev/null || python3 -c "import lzma,sys; open(sys.argv[1][:-3],\"wb\").write(lzma.open(sys.argv[1]).read())" "$f"; done
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
for v in v1 v2; do
  [ $(( $(date +%s) - T0 )) -gt 330 ] && { el "skip ncu $v (time)"; continue; }
  FLASHATTN_CUBIN=$C/$v.cubin timeout 75 $NCU --clock-control none --kernel-name regex:"flash_fwd_wgmma_masked_dropout_bf16_d128\$" --launch-skip 10 --launch-count 1 \
    --section WarpStateStats --section SchedulerStats --section ComputeWorkloadAnalysis --section SpeedOfLight --section InstructionStats \
    --page raw --csv $B/exe-flashattn bench-masks --only dropout-core --call ncu --out $W/ncu-rows-$v.json --budget-ms 5 \
    > $W/ncu-$v.csv 2> $W/ncu-$v.err; el "ncu $v rc=$?"
done
[ $(( $(date +%s) - T0 )) -lt 330 ] && bench head new2
tar -C /tmp -czf $OUT/s20c3.tgz s20c3; ls -la $OUT
