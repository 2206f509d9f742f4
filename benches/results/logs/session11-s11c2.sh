#!/usr/bin/env bash
# Session 11, call 2 (driver JIT): the overlapped dQ conversion: gpu_backward, gpu_masks,
# gpu_run, compute-sanitizer racecheck / memcheck of the small backward case, and the dropout
# table (new build).
set -u
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
W=/tmp/s11c2; mkdir -p $W
export CUDA_CACHE_MAXSIZE=4294967296
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
for t in gpu_backward gpu_masks gpu_run; do
  timeout 300 .gpu/bin/test-$t --include-ignored --test-threads=8 --nocapture > $W/test-$t.log 2>&1; el "$t rc=$?"
  grep -E "test result|FAILED|panicked|worst" $W/test-$t.log | head -12
done
CS=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -n 1)
if [ -n "$CS" ]; then
  for tool in racecheck memcheck; do
    timeout 200 "$CS" --tool $tool --error-exitcode 9 .gpu/bin/test-gpu_backward --include-ignored --exact backward_small_case_for_sanitizer > $W/sanitizer-$tool.log 2>&1; el "sanitizer $tool rc=$?"
    tail -n 3 $W/sanitizer-$tool.log
  done
else
  echo "compute-sanitizer: not found"
fi
timeout 300 .gpu/bin/exe-flashattn bench-masks --only dropout --call s11c2-new --out $W/dropout-new.json --budget-ms 150 > $W/dropout-new.log 2>&1; el "dropout new rc=$?"
grep -E "^(fwd|bwd) .* (flash|flash-dropout-0.1) " $W/dropout-new.log | head -24
tar -C /tmp -czf $OUT/s11c2.tgz s11c2; ls -la $OUT
