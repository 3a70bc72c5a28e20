"""Weight-only low bits (activations in floating point): what PyTorch ships for the CPU against our
dequantize-then-matmul path, on Linear shapes of the full-size SD-Turbo UNet.

    .venv/bin/python bench/weight_only.py [--threads 2]

Per shape, median ms per call and the ratio to the float matmul, in one run:
  float           F.linear with the fp32 weight (what an unquantized layer costs)
  dequant W4/W8   ours: the stored codes unpacked, centred and scaled to fp32 every call, then F.linear
  int8pack W8     torch.ops.aten._weight_int8pack_mm (int8 weight [N, K], one fp32 scale per row)
  int4pack W4     torch.ops.aten._weight_int4pack_mm_for_cpu (fp32 and bf16 activations), our
                  per-channel grid as one group size dividing K with the channel's scale repeated
And the largest difference of each kernel's output from the dequant path's, relative to its
largest magnitude (the int4 kernels take a float zero: exact up to rounding).
Figures: bench/results/weight_only-DATE.json.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from machine import save, start

from mixdq.deploy.kernels import median_ms
from mixdq.deploy.packing import pack, unpack

# (tokens, in, out): attention projections at 64x64 latents, the feed-forward in and out, a deep level
SHAPES = [(4096, 320, 320), (4096, 320, 2560), (4096, 1280, 320), (1024, 640, 5120), (256, 1280, 10240)]


def measure(m: int, k: int, n: int) -> dict[str, tuple[float, float]]:
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(m, k, generator=g), torch.randn(n, k, generator=g) * 0.05
    out: dict[str, tuple[float, float]] = {}
    out["float"] = (median_ms(lambda: F.linear(x, w)), 0.0)
    for bits in (8, 4):
        qmax = 2 ** (bits - 1) - 1
        scale = w.abs().amax(1) / qmax
        centred = torch.clamp(torch.round(w / scale[:, None]), -qmax - 1, qmax).to(torch.int8)
        if bits == 8:
            dequant = lambda c=centred, s=scale: F.linear(x, c.float().mul_(s[:, None]))  # noqa: E731
        else:
            packed = pack((centred.to(torch.int16) + 8).to(torch.uint8), 4)
            dequant = lambda p=packed, s=scale: F.linear(  # noqa: E731
                x, (unpack(p, 4, n * k).view(n, k).view(torch.int8) - 8).float().mul_(s[:, None]))
        ref = dequant()
        out[f"dequant W{bits}"] = (median_ms(dequant), 0.0)

        def err(y, ref=ref):
            return ((y.float() - ref).abs().max() / ref.abs().max()).item()

        if bits == 8:
            fn = lambda c=centred, s=scale: torch.ops.aten._weight_int8pack_mm(x, c, s)  # noqa: E731
            out["int8pack W8"] = (median_ms(fn), err(fn()))
        else:
            group = next(gs for gs in (256, 128, 64, 32) if k % gs == 0)
            w4 = torch.ops.aten._convert_weight_to_int4pack_for_cpu((centred.to(torch.int32) + 8), 1)
            scales_zeros = torch.stack([scale.expand(k // group, n), torch.zeros(k // group, n)], dim=-1)
            for dtype in (torch.float32, torch.bfloat16):
                xd, sz = x.to(dtype), scales_zeros.to(dtype)
                fn = lambda xd=xd, sz=sz: torch.ops.aten._weight_int4pack_mm_for_cpu(xd, w4, group, sz)  # noqa: E731
                out[f"int4pack W4 {str(dtype)[6:]}"] = (median_ms(fn), err(fn()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    start(args.threads)
    rows = []
    for shape in SHAPES:
        r = measure(*shape)
        fp = r["float"][0]
        print(f"\nLinear x[{shape[0]}, {shape[1]}] @ W[{shape[2]}, {shape[1]}]^T")
        for name, (ms, err) in r.items():
            print(f"  {name:<20} {ms:9.2f} ms {ms / fp:7.2f}x float   max rel. diff {err:.1e}")
            rows.append(dict(shape=f"x[{shape[0]}, {shape[1]}] @ W[{shape[2]}, {shape[1]}]^T", kernel=name, ms=ms,
                             x_float=ms / fp, max_rel_diff=err))
    save("weight_only", dict(rows=rows))


if __name__ == "__main__":
    main()
