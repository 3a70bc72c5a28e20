"""Unpacking 2-6-bit codes into an int8 scratch weight, as `int8-unpack` does on every call.

    .venv/bin/python bench/unpack.py [--threads 2] [--mib 4]

One chunk of `--mib` MiB of weights (the default is `blocked.MAX_CHUNK_BYTES`), each bit-width:
split planes written straight into the destination (`packing.unpack_split_into`, what deployed
layers use) against interleaved planes (8 codes per `w` bytes, `packing.pack` per plane)
unpacked into a new tensor, then centred into the destination (what they used before).
Figures: bench/results/unpack-DATE.json.
"""

from __future__ import annotations

import argparse

import torch
from machine import save, start

from mixdq.deploy.measure import latency
from mixdq.deploy.packing import PLANES, pack, pack_split, split_length, unpack, unpack_split_into


def interleaved(codes: torch.Tensor, bits: int) -> list[torch.Tensor]:
    planes, shift = [], 0
    for width in PLANES[bits]:
        planes.append(pack((codes >> shift) & (2**width - 1), width))
        shift += width
    return planes


def unpack_interleaved(planes: list[torch.Tensor], bits: int, out: torch.Tensor) -> None:
    codes, shift = None, 0
    for plane, width in zip(planes, PLANES[bits], strict=True):
        part = unpack(plane, width, out.numel())
        codes = part if codes is None else codes.bitwise_or_(part << shift)
        shift += width
    torch.sub(codes.view(torch.int8), 2 ** (bits - 1), out=out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mib", type=float, default=4)
    args = parser.parse_args()
    start(args.threads)
    n = split_length(int(args.mib * (1 << 20)))
    out = torch.empty(n, dtype=torch.int8)
    print(f"{'bits':>4} {'split, in place':>16} {'interleaved':>12} {'ratio':>6}   ({n / (1 << 20):.1f} MiB of weights)")
    rows = []
    for bits in (2, 3, 4, 5, 6):
        codes = torch.randint(0, 2**bits, (n,), dtype=torch.uint8, generator=torch.Generator().manual_seed(bits))
        centred = (codes.to(torch.int16) - 2 ** (bits - 1)).to(torch.int8)
        split, planes = pack_split(centred, bits), interleaved(codes, bits)
        results = []
        for fn in (lambda: unpack_split_into(split, bits, out), lambda: unpack_interleaved(planes, bits, out)):  # noqa: B023
            fn()
            assert torch.equal(out, centred)
            results.append(latency(fn, repeats=20, warmup=2) * 1e3)
        print(f"{bits:>4} {results[0]:13.2f} ms {results[1]:9.2f} ms {results[0] / results[1]:6.2f}")
        rows.append(dict(bits=bits, split_ms=results[0], interleaved_ms=results[1], ratio=results[0] / results[1]))
    save("unpack", dict(mib=n / (1 << 20), rows=rows))


if __name__ == "__main__":
    main()
