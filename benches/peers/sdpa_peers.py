"""Peers on the same GPU: PyTorch SDPA backends (FlashAttention-2 = "fa2", cuDNN = "cudnn",
standard unfused attention = "math") on the shapes of the FlashAttention-2 paper (16k tokens per
batch, hidden 2048), written in the row format of `flashattn bench`:
    {op, impl, dtype, d, causal, N, B, H, ms, tflops, peak_mib}
Run on the GPU machine (PyTorch there):  python3 benches/peers/sdpa_peers.py [--quick] --out FILE
then `flashattn bench --peers FILE` prints ours beside them, with ratios."""
import argparse, json, os, sys

import torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend
from triton.testing import do_bench

ap = argparse.ArgumentParser()
ap.add_argument("--quick", action="store_true", help="N = 1k and 4k only")
ap.add_argument("--dims", default="64,128,256")
ap.add_argument("--dtype", default="bf16", choices=["bf16", "f16"])
ap.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "peers.json"))
ap.add_argument("--no-bwd", action="store_true")
args = ap.parse_args()

dev = "cuda"
dtype = {"bf16": torch.bfloat16, "f16": torch.float16}[args.dtype]
backends = {"fa2": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}
seqs = [1024, 4096] if args.quick else [512, 1024, 2048, 4096, 8192, 16384]
rows = []
torch.manual_seed(0)
for d in [int(x) for x in args.dims.split(",")]:
    H = 2048 // d
    for causal in [False, True]:
        for N in seqs:
            B = max(1, 16384 // N)
            q, k, v = (torch.randn(B, H, N, d, device=dev, dtype=dtype, requires_grad=True) for _ in range(3))
            do = torch.randn_like(q)
            flops = 4 * B * H * N * N * d * (0.5 if causal else 1.0)
            for name, be in backends.items():
                if name == "math" and N > 8192:
                    continue  # the N x N matrix alone would be tens of GB
                base_row = {"dtype": args.dtype, "d": d, "causal": causal, "N": N, "B": B, "H": H, "impl": name}
                try:
                    with sdpa_kernel(be):
                        fwd = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                        with torch.no_grad():
                            fwd()
                            torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
                            mem0 = torch.cuda.memory_allocated()
                            fwd(); torch.cuda.synchronize()
                            fwd_mib = (torch.cuda.max_memory_allocated() - mem0) / 2**20
                            tf = do_bench(fwd, warmup=25, rep=100, return_mode="median")
                        rows.append(dict(base_row, op="fwd", ms=tf, tflops=flops / tf / 1e9, peak_mib=fwd_mib))
                        if not args.no_bwd:
                            def fb():
                                q.grad = k.grad = v.grad = None
                                F.scaled_dot_product_attention(q, k, v, is_causal=causal).backward(do)
                            fb(); torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
                            q.grad = k.grad = v.grad = None
                            mem0 = torch.cuda.memory_allocated()
                            fb(); torch.cuda.synchronize()
                            fb_mib = (torch.cuda.max_memory_allocated() - mem0) / 2**20
                            tfb = do_bench(fb, warmup=25, rep=100, return_mode="median")
                            tb = max(tfb - tf, 1e-6)
                            rows.append(dict(base_row, op="bwd", ms=tb, tflops=2.5 * flops / tb / 1e9, peak_mib=fb_mib))
                except Exception as e:  # a backend that does not support the shape: say so, go on
                    print(f"{name} d={d} causal={causal} N={N}: {str(e).splitlines()[0][:120]}", file=sys.stderr)
            del q, k, v, do
            torch.cuda.empty_cache()
        print(f"peers: d={d} causal={causal} done", file=sys.stderr, flush=True)

res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}
os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
json.dump(res, open(args.out, "w"), indent=1)
print(f"{'op':4} {'impl':6} {'d':>4} {'causal':>6} {'N':>6} {'TFLOPS':>8}")
for r in rows:
    print(f"{r['op']:4} {r['impl']:6} {r['d']:4d} {str(r['causal']):>6} {r['N']:6d} {r['tflops']:8.1f}")
print(f"wrote {args.out}")
