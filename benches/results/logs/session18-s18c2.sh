#!/usr/bin/env bash
# Session 18, call 2 (driver JIT): the block-mask scan's answer warp-uniform (redux.sync) in the
# masked forward builds only (call 1's warpgroup index made uniform was 3-4% slower at d = 128 and
# is reverted); otherwise the session's start (exe-head, 1b46307; every other kernel's PTX is
# byte-identical). gpu_masks; the dropout-core table new / head alternating; block-sparse and
# packed batches new / head twice; Nsight Compute instruction counts of the d = 128 forward with
# and without dropout.
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s18c2; mkdir -p $W
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
( timeout 300 .gpu/bin/exe-head bench --op fwd --head-dims 64 --quick --budget-ms 1 --out $W/warm-head.json > $W/warm-head.log 2>&1; el "head warm rc=$?" ) &
timeout 300 .gpu/bin/test-gpu_masks --include-ignored --test-threads=8 > $W/test-gpu_masks.log 2>&1; el "gpu_masks rc=$?"
grep -E "test result|FAILED|panicked" $W/test-gpu_masks.log | head -12
wait
for r in new1 head2 new3 head4; do
  b=.gpu/bin/exe-flashattn; [[ $r == head* ]] && b=.gpu/bin/exe-head
  timeout 60 $b bench-masks --only dropout-core --call s18c2-$r --out $W/dropout-$r.json --budget-ms 100 > $W/dropout-$r.log 2>&1; el "dropout $r rc=$?"
  [ $(( $(date +%s) - T0 )) -gt 500 ] && { el "skip sparse $r (time)"; continue; }
  timeout 50 $b bench-masks --only sparse,varlen --call s18c2-$r --out $W/sparse-$r.json --budget-ms 100 > $W/sparse-$r.log 2>&1; el "sparse $r rc=$?"
done
if [ $(( $(date +%s) - T0 )) -lt 480 ]; then
  for k in flash_fwd_wgmma_masked_dropout_bf16_d128 flash_fwd_wgmma_bf16_d128; do
    timeout 60 ncu --clock-control none --kernel-name regex:"^${k}\$" --launch-skip 3 --launch-count 1 \
      --section SchedulerStats --section WarpStateStats --metrics smsp__inst_executed.sum,gpu__time_duration.sum \
      --page raw --csv .gpu/bin/exe-flashattn bench-masks --only dropout-core --call ncu --out $W/ncu-junk.json --budget-ms 1 > $W/ncu-$k.csv 2> $W/ncu-$k.err; el "ncu $k rc=$?"
  done
fi
tar -C /tmp -czf $OUT/s18c2.tgz s18c2; ls -la $OUT
