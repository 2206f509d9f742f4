#!/usr/bin/env bash
# One device session: GPU tests, PyTorch peers, our forward and backward benchmarks and the
# long-sequence check, in one call so the ratios compare kernels timed on the same GPU at the
# same time. Run from the repository root on the GPU machine after `../shared/tools/gpu-bundle`
# built `.gpu/` here (the device tool: carry [".gpu"], command "bash benches/device_run.sh").
#
# STAGES picks parts (default: all): tests sanitizer peers bench wgmma run long.
# QUICK=1: N = 1k and 4k only. HEAD_DIMS (default 64,128,256) for peers and bench.
# Extra forward tiles to sweep as candidates: TILES_64_128="128x64x2x1" TILES_256="64x64x1x1".
set -uo pipefail
OUT=${OUT:-/tmp/flashattn-out}; mkdir -p "$OUT"
B=.gpu/bin/exe-flashattn
STAGES=${STAGES:-tests sanitizer peers bench wgmma run long}
DIMS=${HEAD_DIMS:-64,128,256}
Q=(); [ -n "${QUICK:-}" ] && Q=(--quick)
has() { [[ " $STAGES " == *" $1 "* ]]; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt"
rc=0
if has tests; then
  for t in .gpu/bin/test-*; do
    [ -x "$t" ] || continue
    echo "== $t" >> "$OUT/tests.log"
    "$t" --include-ignored --test-threads=8 --nocapture >> "$OUT/tests.log" 2>&1 || rc=1
  done
  grep -E "^== |^test result|FAILED|panicked" "$OUT/tests.log"
fi
if has sanitizer; then
  CS=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -n 1)
  if [ -n "$CS" ]; then
    for tool in racecheck memcheck; do
      "$CS" --tool $tool --error-exitcode 9 .gpu/bin/test-gpu_backward --include-ignored --exact backward_small_case_for_sanitizer \
        > "$OUT/sanitizer-$tool.log" 2>&1; echo "compute-sanitizer $tool: exit $?"; tail -n 3 "$OUT/sanitizer-$tool.log"
    done
  else
    echo "compute-sanitizer: not found on this machine"
  fi
fi
if has peers; then
  PYTHONUNBUFFERED=1 python3 benches/peers/sdpa_peers.py --dims "$DIMS" "${Q[@]}" --out "$OUT/peers.json" 2>&1 | tail -n 1
fi
if has bench; then
  $B bench "${Q[@]}" --head-dims "$DIMS" --peers "$OUT/peers.json" --out "$OUT/bench-bf16.json" --budget-ms 150 2>/dev/null | tail -n 80
  $B bench --quick --op bwd --deterministic --head-dims 64,128 --peers "$OUT/peers.json" --out "$OUT/bench-det.json" --budget-ms 150 2>/dev/null | tail -n 9
  [ -n "${TILES_64_128:-}" ] && $B bench --op fwd --head-dims 64,128 --tiles "$TILES_64_128" --peers "$OUT/peers.json" --out "$OUT/cand-64-128.json" --budget-ms 150 2>/dev/null | tail -n 25
  [ -n "${TILES_256:-}" ] && $B bench --op fwd --head-dims 256 --tiles "$TILES_256" --peers "$OUT/peers.json" --out "$OUT/cand-256.json" --budget-ms 150 2>/dev/null | tail -n 25
  $B bench --quick --dtype f16 --head-dims 64,128 --out "$OUT/bench-f16.json" --budget-ms 150 2>/dev/null | tail -n 9
fi
if has wgmma; then
  # The Hopper (wgmma) forward, opt-in until it wins: same shapes, same peers.
  $B bench "${Q[@]}" --op fwd --kernel wgmma --head-dims 64,128 --peers "$OUT/peers.json" --out "$OUT/bench-wgmma.json" --budget-ms 150 2>/dev/null | tail -n 26
fi
if has run; then
  # `flashattn run` round trip from PyTorch: safetensors in, SDPA in float64 as the judge.
  python3 benches/peers/safetensors_roundtrip.py "$B" 2>&1 | tail -n 20
fi
if has long; then
  for c in "" "--causal"; do $B check --batch 1 --heads 16 --seqlen 65536 --backward $c 2>&1 | tail -n 8; done | tee "$OUT/check-65536.log"
fi
exit $rc
