"""`flashattn run` checked from Python, as a PyTorch user would: random bf16 q, k, v, do are
written to a safetensors file, the `flashattn run` binary computes o, lse, dq, dk, dv into another
file, and they are checked against attention computed in float64 with FlashAttention's rule:

    max|ours - ref64| <= 2 * max|sdpa_bf16 - ref64| (+1e-5)   for o
    max|ours - ref64| <= 3 * max|sdpa_bf16 - ref64| (+1e-4)   for dq, dk, dv
    max|lse - ref64| <= 2e-3                                    (rows that see a key)

where sdpa_bf16 is torch.nn.functional.scaled_dot_product_attention on the same bf16 inputs.
Prints a table; exits 1 if a check fails, 2 if the binary fails. Needs only torch (and a CUDA
GPU, or --device cpu with --reference to check the file plumbing against the CPU reference); the
safetensors files are written and read with the format itself (8-byte little-endian header length,
JSON header, raw little-endian data), no network.

    python3 benches/peers/safetensors_roundtrip.py .gpu/bin/exe-flashattn
"""
import argparse
import json
import math
import os
import struct
import subprocess
import sys
import tempfile

import torch

DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}
NAMES = {v: k for k, v in DTYPES.items()}


def tensor_bytes(t):
    t = t.detach().contiguous().cpu()
    raw = t.view(torch.uint8).reshape(-1)
    try:
        return raw.numpy().tobytes()
    except Exception:  # torch without numpy
        return bytes(raw.tolist())


def save(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        b = tensor_bytes(t)
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def load(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        buf = bytearray(data[8 + n + start : 8 + n + end])
        out[name] = torch.frombuffer(buf, dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
    return out, meta


def attention(q, k, v, causal, scale, sdpa):
    """q [B, Nq, H, d], k/v [B, Nk, Hkv, d] -> (o [B, Nq, H, d], lse [B, H, Nq]); the math in the
    inputs' dtype, or SDPA for `sdpa`. Causal is bottom-right aligned (flash-attn >= 2.1)."""
    B, Nq, H, d = q.shape
    Nk, Hkv = k.shape[1], k.shape[2]
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
    if Hkv != H:
        kt, vt = (x.repeat_interleave(H // Hkv, dim=1) for x in (kt, vt))
    mask = None
    if causal:
        i = torch.arange(Nq, device=q.device)[:, None]
        j = torch.arange(Nk, device=q.device)[None, :]
        mask = j <= i + (Nk - Nq)
    if sdpa:
        if causal and Nq == Nk:
            o = torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, is_causal=True, scale=scale)
        else:
            o = torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask, scale=scale)
        return o.transpose(1, 2), None
    s = (qt @ kt.transpose(-1, -2)) * scale
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    lse = torch.logsumexp(s, dim=-1)
    p = torch.softmax(s, dim=-1).nan_to_num(0.0)  # rows that see no key: zeros
    return (p @ vt).transpose(1, 2), lse


def with_grads(q, k, v, do, causal, scale, sdpa):
    q, k, v = (x.detach().clone().requires_grad_(True) for x in (q, k, v))
    o, lse = attention(q, k, v, causal, scale, sdpa)
    o.backward(do)
    return {"o": o.detach(), "lse": None if lse is None else lse.detach(), "dq": q.grad, "dk": k.grad, "dv": v.grad}


def max_err(a, b):
    a, b = a.double().cpu(), b.double().cpu()
    if torch.isnan(a).any():
        return math.inf
    return (a - b).abs().max().item()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary", help="the flashattn binary (.gpu/bin/exe-flashattn or target/release/flashattn)")
    ap.add_argument("--device", default="cuda", help="where the references run (default cuda)")
    ap.add_argument("--reference", action="store_true", help="pass --reference to `run` (CPU f64, slow)")
    ap.add_argument("--quick", action="store_true", help="N = 97 only")
    ap.add_argument("--dir", default=None, help="folder for the files (default: a temporary one)")
    args = ap.parse_args()

    torch.manual_seed(0)
    B, H = 2, 4
    # (Nq, Nk, d, causal, H_kv)
    cases = [(n, n, d, c, H) for n in ([97] if args.quick else [97, 1025]) for d in (64, 128) for c in (False, True)]
    cases += [(97, 300, 64, True, H), (97, 97, 64, False, 2)]  # bottom-right causal; GQA
    folder = args.dir or tempfile.mkdtemp(prefix="flashattn-roundtrip-")
    os.makedirs(folder, exist_ok=True)
    print(f"{'Nq':>5} {'Nk':>5} {'d':>4} {'causal':>6} {'Hkv':>3} {'tensor':>6} {'ours':>10} {'sdpa bf16':>10} {'bound':>10}  ok")
    failed = 0
    for Nq, Nk, d, causal, Hkv in cases:
        q = torch.randn(B, Nq, H, d, dtype=torch.bfloat16)
        k = torch.randn(B, Nk, Hkv, d, dtype=torch.bfloat16)
        v = torch.randn(B, Nk, Hkv, d, dtype=torch.bfloat16)
        do = torch.randn(B, Nq, H, d, dtype=torch.bfloat16)
        inp, outp = os.path.join(folder, "in.safetensors"), os.path.join(folder, "out.safetensors")
        save(inp, {"q": q, "k": k, "v": v, "do": do})
        cmd = [args.binary, "run", inp, outp] + (["--causal"] if causal else []) + (["--reference"] if args.reference else [])
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"`{' '.join(cmd)}` failed ({r.returncode}):\n{r.stdout}{r.stderr}", file=sys.stderr)
            sys.exit(2)
        ours, meta = load(outp)
        scale = 1.0 / math.sqrt(d)
        dev = args.device
        on = lambda x: x.to(dev)
        ref = with_grads(*(on(x).double() for x in (q, k, v, do)), causal, scale, sdpa=False)
        base = with_grads(*(on(x) for x in (q, k, v, do)), causal, scale, sdpa=True)
        for name, factor, atol in [("o", 2, 1e-5), ("dq", 3, 1e-4), ("dk", 3, 1e-4), ("dv", 3, 1e-4)]:
            if ours[name].shape != ref[name].shape or ours[name].dtype != torch.bfloat16:
                print(f"{name}: got {ours[name].dtype} {list(ours[name].shape)}, expected bf16 {list(ref[name].shape)}")
                failed += 1
                continue
            e, eb = max_err(ours[name], ref[name]), max_err(base[name], ref[name])
            bound = factor * eb + atol
            ok = e <= bound
            failed += not ok
            print(f"{Nq:>5} {Nk:>5} {d:>4} {str(causal):>6} {Hkv:>3} {name:>6} {e:>10.3e} {eb:>10.3e} {bound:>10.3e}  {'ok' if ok else 'FAIL'}")
        lse, lse_ref = ours["lse"].double().cpu(), ref["lse"].cpu()
        finite = torch.isfinite(lse_ref)
        bad_kind = (torch.isfinite(lse) != finite).sum().item() + torch.isnan(lse).sum().item()
        e = (lse[finite] - lse_ref[finite]).abs().max().item() if finite.any() else 0.0
        ok = bad_kind == 0 and e <= 2e-3 and list(lse.shape) == [B, H, Nq]
        failed += not ok
        print(f"{Nq:>5} {Nk:>5} {d:>4} {str(causal):>6} {Hkv:>3} {'lse':>6} {e:>10.3e} {'':>10} {2e-3:>10.3e}  {'ok' if ok else 'FAIL'}")
        if meta.get("causal") != str(causal).lower():
            print(f"metadata causal = {meta.get('causal')!r}, expected {str(causal).lower()!r}")
            failed += 1
    if args.dir is None:
        for f in ("in.safetensors", "out.safetensors"):
            os.remove(os.path.join(folder, f))
        os.rmdir(folder)
    print(f"{'FAIL' if failed else 'PASS'}: {failed} failed check(s) over {len(cases)} cases")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
