#!/usr/bin/env bash
# One device session: GPU tests, PyTorch peers, our forward and backward benchmarks and the
# long-sequence check, in one call so the ratios compare kernels timed on the same GPU at the
# same time. Run from the repository root on the GPU machine after `../shared/tools/gpu-bundle`
# built `.gpu/` here (the device tool: carry [".gpu"], command "bash benches/device_run.sh").
#
# STAGES picks parts (default: all): tests sanitizer peers bench wgmma run memory criterion long.
# QUICK=1: N = 1k and 4k only. HEAD_DIMS (default 64,128,256) for peers and bench.
# Extra forward tiles to sweep as candidates: TILES_64_128="128x64x2x1" TILES_256="64x64x1x1".
set -uo pipefail
OUT=${OUT:-/tmp/flashattn-out}; mkdir -p "$OUT"
B=.gpu/bin/exe-flashattn
STAGES=${STAGES:-tests sanitizer peers bench wgmma run memory criterion long}
DIMS=${HEAD_DIMS:-64,128,256}
Q=(); [ -n "${QUICK:-}" ] && Q=(--quick)
has() { [[ " $STAGES " == *" $1 "* ]]; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt"
# cuBLAS for the standard-attention baseline (flashattn::standard, tests/gpu_standard.rs, the
# "standard" rows): cudarc loads it at run time by name, so its folder must be on LD_LIBRARY_PATH.
# Here it is PyTorch's pip wheel (nvidia-cublas-cu12: nvidia/cublas/lib; CUDA 13 wheels:
# nvidia/cu13/lib). A link named libcublas.so (the first name cudarc tries) covers a version
# suffix cudarc's list lacks (.so.13). Without it the standard rows say NoCublas; nothing fails.
CUBLAS_LIB=$(python3 - 2>/dev/null <<'PY' || true
import glob, importlib, os
for mod in ("nvidia.cublas", "nvidia.cu13", "nvidia.cu12"):
    try:
        m = importlib.import_module(mod)
    except ImportError:
        continue
    libs = sorted(l for p in m.__path__ for l in glob.glob(os.path.join(p, "lib", "libcublas.so.*[0-9]")))
    if libs:
        print(libs[-1])
        break
PY
)
if [ -n "$CUBLAS_LIB" ]; then
  mkdir -p /tmp/flashattn-cublas && ln -sf "$CUBLAS_LIB" /tmp/flashattn-cublas/libcublas.so
  export LD_LIBRARY_PATH="/tmp/flashattn-cublas:$(dirname "$CUBLAS_LIB")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "cuBLAS: $CUBLAS_LIB"
else
  echo "cuBLAS: not found in PyTorch's wheels (the standard-attention baseline will report it)"
fi
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
  # --standard: our standard-attention baseline on every shape (skipped where N x N does not fit).
  # Per-shape progress lines (with elapsed time and an estimate of what is left) go to a log.
  $B bench "${Q[@]}" --standard --head-dims "$DIMS" --peers "$OUT/peers.json" --out "$OUT/bench-bf16.json" --budget-ms 150 2>"$OUT/bench-bf16.progress" | tail -n 150
  $B bench --quick --op bwd --deterministic --head-dims 64,128 --peers "$OUT/peers.json" --out "$OUT/bench-det.json" --budget-ms 150 2>/dev/null | tail -n 9
  [ -n "${TILES_64_128:-}" ] && $B bench --op fwd --head-dims 64,128 --tiles "$TILES_64_128" --peers "$OUT/peers.json" --out "$OUT/cand-64-128.json" --budget-ms 150 2>/dev/null | tail -n 25
  [ -n "${TILES_256:-}" ] && $B bench --op fwd --head-dims 256 --tiles "$TILES_256" --peers "$OUT/peers.json" --out "$OUT/cand-256.json" --budget-ms 150 2>/dev/null | tail -n 25
  $B bench --quick --dtype f16 --head-dims 64,128,256 --out "$OUT/bench-f16.json" --budget-ms 150 2>/dev/null | tail -n 9
fi
if has wgmma; then
  # The Hopper (wgmma) forward with its first table row per head dim (128-row tiles; Auto runs
  # the 192-row ones at d <= 64) beside the mma.sync forward: same shapes, same peers.
  $B bench "${Q[@]}" --op fwd --kernel wgmma --head-dims 64,128,256 --peers "$OUT/peers.json" --out "$OUT/bench-wgmma.json" --budget-ms 150 2>/dev/null | tail -n 38
  $B bench "${Q[@]}" --op fwd --kernel tensor-core --head-dims 64,256 --peers "$OUT/peers.json" --out "$OUT/bench-mma.json" --budget-ms 150 2>/dev/null | tail -n 26
fi
if has run; then
  # `flashattn run` round trip from PyTorch: safetensors in, SDPA in float64 as the judge.
  python3 benches/peers/safetensors_roundtrip.py "$B" 2>&1 | tail -n 20
fi
if has memory; then
  # Peak memory of forward + backward against N (B = 1, H = 16, d = 128): PyTorch's fa2 and math,
  # then ours and our standard baseline (each stops at its first N that does not fit); the table
  # gives standard / ours; the plot goes beside the results file: $OUT/memory/memory_bf16_d128.svg.
  PYTHONUNBUFFERED=1 python3 benches/peers/sdpa_peers.py --memory --out "$OUT/peers-memory.json" 2>"$OUT/peers-memory.progress" | tail -n 20
  $B bench --memory --peers "$OUT/peers-memory.json" --out "$OUT/memory.json" 2>"$OUT/memory.progress" | tail -n 12
  $B plot --results "$OUT/memory.json" --out "$OUT/memory" | tail -n 2
fi
if has criterion; then
  for b in .gpu/bin/bench-*; do
    [ -x "$b" ] || continue
    "$b" --bench 2>&1 | tee "$OUT/criterion-$(basename "$b").log" | grep -E "skipped|time:|thrpt:|^[a-z_]+/" | head -n 120
  done
fi
if has long; then
  for c in "" "--causal"; do $B check --batch 1 --heads 16 --seqlen 65536 --backward $c 2>&1 | tail -n 8; done | tee "$OUT/check-65536.log"
fi
exit $rc
