"""Peers on the same GPU: PyTorch SDPA backends (FlashAttention-2 = "fa2", cuDNN = "cudnn",
standard unfused attention = "math") on the shapes of the FlashAttention-2 paper (16k tokens per
batch, hidden 2048), written in the row format of `flashattn bench`:
    {op, impl, dtype, d, causal, N, B, H, ms, tflops, peak_mib}
Run on the GPU machine (PyTorch there):  python3 benches/peers/sdpa_peers.py [--quick] --out FILE
then `flashattn bench --peers FILE` prints ours beside them, with ratios.

--memory: instead, peak memory of forward + backward beyond the inputs (q, k, v, do) against N,
B = 1, H = 16, d = 128 (the shapes of `flashattn bench --memory`), for "fa2" and "math"; math
stops at the first N that runs out of memory. Rows have op "fwd+bwd-mem", ms one fwd+bwd."""
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
ap.add_argument("--dropout", type=float, default=0.0,
                help="dropout_p of every call (rows' impl gets a -dropout-P suffix), to price dropout beside ours")
ap.add_argument("--seqs", default=None, help="comma-separated N list (default: 512..16384, or --quick's)")
ap.add_argument("--backends", default="fa2,cudnn,math")
ap.add_argument("--memory", action="store_true", help="peak fwd+bwd memory vs N (B=1, H=16, d=128)")
ap.add_argument("--memory-seqlens", default="1024,2048,4096,8192,16384,32768,65536")
args = ap.parse_args()

dev = "cuda"
dtype = {"bf16": torch.bfloat16, "f16": torch.float16}[args.dtype]
backends = {"fa2": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}
backends = {k: v for k, v in backends.items() if k in args.backends.split(",")}
seqs = [1024, 4096] if args.quick else [512, 1024, 2048, 4096, 8192, 16384]
if args.seqs:
    seqs = [int(x) for x in args.seqs.split(",")]
p_drop = args.dropout
suffix = f"-dropout-{p_drop:g}" if p_drop > 0 else ""
rows = []
torch.manual_seed(0)


def memory_sweep():
    """fwd+bwd peak memory beyond the inputs, as `flashattn bench --memory` measures ours."""
    B, H, d = 1, 16, 128
    stopped = set()
    for N in [int(x) for x in args.memory_seqlens.split(",")]:
        for name in ["fa2", "math"]:
            if name in stopped:
                continue
            q = k = v = do = None
            try:
                q, k, v = (torch.randn(B, H, N, d, device=dev, dtype=dtype, requires_grad=True) for _ in range(3))
                do = torch.randn_like(q)
                with sdpa_kernel(backends[name]):
                    F.scaled_dot_product_attention(q, k, v).backward(do)  # warm-up (library setup)
                    q.grad = k.grad = v.grad = None
                    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
                    mem0 = torch.cuda.memory_allocated()
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    start.record()
                    F.scaled_dot_product_attention(q, k, v).backward(do)
                    end.record(); torch.cuda.synchronize()
                    peak = (torch.cuda.max_memory_allocated() - mem0) / 2**20
                    ms = start.elapsed_time(end)  # one fwd+bwd, warm
                flops = 3.5 * 4 * B * H * N * N * d
                rows.append({"op": "fwd+bwd-mem", "impl": name, "dtype": args.dtype, "d": d, "causal": False,
                             "N": N, "B": B, "H": H, "ms": ms, "tflops": flops / ms / 1e9, "peak_mib": peak})
                print(f"memory {name} N={N}: {peak:.1f} MiB", file=sys.stderr, flush=True)
            except torch.cuda.OutOfMemoryError:
                print(f"memory {name} N={N}: out of memory, {name} stops here", file=sys.stderr, flush=True)
                stopped.add(name)
            except Exception as e:  # a backend that does not take the shape: say so, stop that series
                print(f"memory {name} N={N}: {str(e).splitlines()[0][:120]}", file=sys.stderr, flush=True)
                stopped.add(name)
            del q, k, v, do
            torch.cuda.empty_cache()


for d in ([] if args.memory else [int(x) for x in args.dims.split(",")]):
    H = 2048 // d
    for causal in ([False] if p_drop > 0 else [False, True]):
        for N in seqs:
            B = max(1, 16384 // N)
            q, k, v = (torch.randn(B, H, N, d, device=dev, dtype=dtype, requires_grad=True) for _ in range(3))
            do = torch.randn_like(q)
            flops = 4 * B * H * N * N * d * (0.5 if causal else 1.0)
            for name, be in backends.items():
                if name == "math" and N > 8192:
                    continue  # the N x N matrix alone would be tens of GB
                base_row = {"dtype": args.dtype, "d": d, "causal": causal, "N": N, "B": B, "H": H, "impl": name + suffix}
                try:
                    with sdpa_kernel(be):
                        fwd = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal, dropout_p=p_drop)
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
                                F.scaled_dot_product_attention(q, k, v, is_causal=causal, dropout_p=p_drop).backward(do)
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

if args.memory:
    memory_sweep()

res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}
os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
json.dump(res, open(args.out, "w"), indent=1)
print(f"{'op':11} {'impl':6} {'d':>4} {'causal':>6} {'N':>6} {'TFLOPS':>8} {'peak MiB':>10}")
for r in rows:
    print(f"{r['op']:11} {r['impl']:6} {r['d']:4d} {str(r['causal']):>6} {r['N']:6d} {r['tflops']:8.1f} {r['peak_mib']:10.1f}")
print(f"wrote {args.out}")
