#!/usr/bin/env bash
# Session 5, call 8: Nsight Compute on the plain and the masked (nothing masked) wgmma dK/dV kernels, d = 128.
set -u
NCU=/opt/nvidia/nsight-compute/2025.3.1/ncu
B=.gpu/bin/exe-flashattn
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
timeout 200 $B bench-masks --quick --budget-ms 20 > $OUT/warm.log 2>&1; el "warm rc=$?"
for k in flash_bwd_dkdv_wgmma_bf16_d128 flash_bwd_dkdv_wgmma_masked_bf16_d128; do
  timeout 150 $NCU --kernel-name $k --launch-skip 2 --launch-count 1 --section SpeedOfLight --section WarpStateStats --section InstructionStats --section SchedulerStats --section LaunchStats $B bench-masks --quick --budget-ms 20 > $OUT/ncu-$k.txt 2>&1; el "ncu $k rc=$?"
done
grep -E "Duration|Executed Ipc|Issue Slots Busy|Eligible Warps|No Eligible|Stall|Executed Instructions  |Registers|Compute \(SM\) Throughput|Memory Throughput" $OUT/ncu-*.txt | cut -c1-160
