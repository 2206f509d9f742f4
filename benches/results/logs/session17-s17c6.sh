#!/usr/bin/env bash
# Session 17, call 6 (driver JIT): ncu of the forward at N = 16k, d = 128 (bench-masks --only
# sparse): the plain kernel and the masked one at block densities 1 / 0.5 / 0.25 / 0.1, every
# launch: why a kept block costs the block-sparse forward more than a dense block (for the next
# attempt at the 1.3x target). Final code (82339df).
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s17c6; mkdir -p $W
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
timeout 280 .gpu/bin/exe-flashattn bench-masks --only sparse --call s17c6 --out $W/sparse.json --budget-ms 20 > $W/sparse.log 2>&1; el "sparse rc=$?"
timeout 300 ncu --clock-control none --kernel-name regex:"flash_fwd_wgmma(_masked)?_bf16_d128\$" --launch-count 40 \
  --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section SchedulerStats --section LaunchStats \
  --page raw --csv .gpu/bin/exe-flashattn bench-masks --only sparse --call ncu --out $W/ncu-rows.json --budget-ms 5 \
  > $W/ncu-sparse-fwd.csv 2> $W/ncu-sparse-fwd.err; el "ncu rc=$?"
tar -C /tmp -czf $OUT/s17c6.tgz s17c6; ls -la $OUT
