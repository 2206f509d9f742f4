#!/usr/bin/env bash
# One device session: every GPU test, PyTorch peers, our forward benchmark and the long-sequence
# check, all in one call so the ratios compare kernels timed on the same GPU at the same time.
# Run from the repository root on the GPU machine after `../shared/tools/gpu-bundle` built
# `.gpu/` here (the device tool: carry [".gpu"], command "bash benches/device_run.sh").
# Extra tiles to sweep as candidates: TILES_64_128="128x64x2x1" TILES_256="64x64x1x1".
set -uo pipefail
OUT=${OUT:-/tmp/flashattn-out}; mkdir -p "$OUT"
B=.gpu/bin/exe-flashattn
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt"
rc=0
for t in .gpu/bin/test-gpu_instructions .gpu/bin/test-gpu_forward; do
  [ -x "$t" ] || continue
  "$t" --include-ignored --test-threads=8 --nocapture >> "$OUT/tests.log" 2>&1 || rc=1
done
grep -E "^test result|FAILED|panicked" "$OUT/tests.log"
PYTHONUNBUFFERED=1 python3 benches/peers/sdpa_peers.py --no-bwd --out "$OUT/peers.json" 2>&1 | tail -n 1
$B bench --head-dims 64,128,256 --peers "$OUT/peers.json" --out "$OUT/bench-bf16.json" --budget-ms 150 2>/dev/null | tail -n 38
[ -n "${TILES_64_128:-}" ] && $B bench --head-dims 64,128 --tiles "$TILES_64_128" --peers "$OUT/peers.json" --out "$OUT/cand-64-128.json" --budget-ms 150 2>/dev/null | tail -n 25
[ -n "${TILES_256:-}" ] && $B bench --head-dims 256 --tiles "$TILES_256" --peers "$OUT/peers.json" --out "$OUT/cand-256.json" --budget-ms 150 2>/dev/null | tail -n 25
$B bench --quick --dtype f16 --head-dims 64,128 --out "$OUT/bench-f16.json" --budget-ms 150 2>/dev/null | tail -n 9
for c in "" "--causal"; do $B check --batch 1 --heads 16 --seqlen 65536 $c 2>&1 | tail -n 4; done | tee "$OUT/check-65536.log"
exit $rc
