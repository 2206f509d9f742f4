#!/usr/bin/env bash
# Session 20, call 1: one exe (the landed host code), the kernels from cubins built here by
# ptxas 13.5 (FLASHATTN_CUBIN): head = HEAD's PTX; v1 = the dense dropout forward's uniform
# trip count (next block j + 1 without a block mask); v2 = v1 + the P V wait pinned after the
# softmax and Philox (d = 128 dropout); v3 = v2 on 128 x 64 tiles. dropout-core tables (40 ms
# budgets), head again at the end; gpu_instructions (head) and gpu_masks (v2, v1).
set -u
W=$OUT; B=.gpu/bin; C=.gpu/cubin
for f in $C/*.xz; do xz -d "$f" 2>/dev/null || python3 -c "import lzma,sys; open(sys.argv[1][:-3],\"wb\").write(lzma.open(sys.argv[1]).read())" "$f"; done; ls -la $C
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader > $W/smi.txt 2>&1; cat $W/smi.txt
FLASHATTN_CUBIN=$C/head.cubin timeout 60 $B/test-gpu_instructions --include-ignored --test-threads=4 > $W/test-gpu_instructions.log 2>&1; echo "instructions rc=$?"; grep "test result" $W/test-gpu_instructions.log
for r in head v1 v2 v3 head2; do
  c=${r%2}
  FLASHATTN_CUBIN=$C/$c.cubin timeout 45 $B/exe-flashattn bench-masks --only dropout-core --call s20c1-$r --out $W/dropout-$r.json --budget-ms 40 > $W/dropout-$r.log 2>&1; echo "$r rc=$?"
  grep -E "^fwd .*(flash  |dropout-0.1  |dropout-0.1-causal  |causal  )" $W/dropout-$r.log | awk '{printf "%s/%s %s %s %s | ", $2, $3, $5, $6, $8} END {print ""}'
done
FLASHATTN_CUBIN=$C/v2.cubin timeout 150 $B/test-gpu_masks --include-ignored --test-threads=16 > $W/test-gpu_masks-v2.log 2>&1; echo "masks v2 rc=$?"; grep "test result" $W/test-gpu_masks-v2.log
FLASHATTN_CUBIN=$C/v1.cubin timeout 150 $B/test-gpu_masks --include-ignored --test-threads=16 > $W/test-gpu_masks-v1.log 2>&1; echo "masks v1 rc=$?"; grep "test result" $W/test-gpu_masks-v1.log
