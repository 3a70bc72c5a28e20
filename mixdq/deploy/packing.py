"""Several low-bit integer codes per byte.

Codes are unsigned (0 .. 2^bits - 1). Every 8 codes become `bits` bytes: the 8 codes are laid side
by side in one 64-bit word (code k at bit k*bits) whose low `bits` bytes are kept. So 2-bit
weights take 1/4 byte each, 3-bit 3/8, 4-bit 1/2, with no padding but at most 7 codes at the end.
"""

from __future__ import annotations

import torch

PACKED_BITS = (2, 3, 4, 5, 6)


def packed_nbytes(numel: int, bits: int) -> int:
    return -(-numel // 8) * bits


def pack(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Flat uint8 tensor of `packed_nbytes(codes.numel(), bits)` bytes."""
    if bits not in (1, *PACKED_BITS):  # 1: a bit plane (bench/unpack.py's interleaved planes)
        raise ValueError(f"packing is for {PACKED_BITS} bits; 8-bit codes are stored as they are")
    flat = codes.reshape(-1).to(torch.int64)
    if flat.numel() and (flat.min() < 0 or flat.max() >= 2**bits):
        raise ValueError(f"codes must lie in [0, {2**bits - 1}] for {bits}-bit packing")
    pad = (-flat.numel()) % 8
    groups = torch.nn.functional.pad(flat, (0, pad)).view(-1, 8)
    shifts = torch.arange(8, dtype=torch.int64, device=flat.device) * bits
    words = (groups << shifts).sum(dim=1)  # at most 48 bits used: no overflow
    byte_shifts = torch.arange(bits, dtype=torch.int64, device=flat.device) * 8
    return ((words[:, None] >> byte_shifts) & 0xFF).to(torch.uint8).reshape(-1)


def unpack(packed: torch.Tensor, bits: int, numel: int) -> torch.Tensor:
    """The first `numel` codes, as uint8."""
    if packed.numel() != packed_nbytes(numel, bits):
        raise ValueError(f"{packed.numel()} bytes cannot hold {numel} {bits}-bit codes")
    if 8 % bits == 0:  # codes never straddle a byte: same layout, read byte-wise (~10x faster)
        mask = 2**bits - 1
        if torch.compiler.is_compiling():  # one broadcast shift fuses into one loop (a stack does not)
            shifts = torch.arange(0, 8, bits, dtype=torch.uint8, device=packed.device)
            return ((packed[:, None] >> shifts) & mask).reshape(-1)[:numel]
        # eagerly, a stack of shifted copies is faster on large weights (1.0 vs 1.5 ms at 3.7 M)
        return torch.stack([(packed >> s) & mask for s in range(0, 8, bits)], dim=1).reshape(-1)[:numel]
    byte_shifts = torch.arange(bits, dtype=torch.int64, device=packed.device) * 8
    words = (packed.view(-1, bits).to(torch.int64) << byte_shifts).sum(dim=1)
    shifts = torch.arange(8, dtype=torch.int64, device=packed.device) * bits
    codes = (words[:, None] >> shifts) & (2**bits - 1)
    return codes.reshape(-1)[:numel].to(torch.uint8)


# Byte-aligned pieces of each width: a code split into bit planes of 1, 2 or 4 bits unpacks with
# whole-byte shifts only, ~4x faster than 3-, 5- and 6-bit codes that straddle bytes.
PLANES = {2: (2,), 3: (2, 1), 4: (4,), 5: (4, 1), 6: (4, 2)}


def split_length(numel: int) -> int:
    """Values a split packing holds: `numel` padded to a multiple of 8 (8 segments of 1-bit planes)."""
    return -(-numel // 8) * 8


def pack_split(values: torch.Tensor, bits: int) -> tuple[torch.Tensor, ...]:
    """Signed `bits`-bit values (int8 in [-2^(bits-1), 2^(bits-1))) as bit planes (`PLANES`, low
    bits first) in split order: a plane of w-bit fields cuts the values into 8/w equal segments,
    and its byte i holds value i of every segment. Unpacking then writes each segment in one
    sequential pass (`unpack_split_into`). `packed_nbytes(numel, bits)` bytes in all."""
    flat = values.reshape(-1).view(torch.uint8)  # two's complement: the low `bits` bits are the value
    flat = torch.nn.functional.pad(flat, (0, split_length(flat.numel()) - flat.numel()))
    planes, shift = [], 0
    for width in PLANES[bits]:
        fields = ((flat >> shift) & (2**width - 1)).view(8 // width, -1)
        plane = torch.zeros(fields.shape[1], dtype=torch.uint8)
        for s, field in enumerate(fields):
            plane |= field << (s * width)
        planes.append(plane)
        shift += width
    return tuple(planes)


def unpack_split_into(planes: tuple[torch.Tensor, ...], bits: int, out: torch.Tensor) -> None:
    """The inverse of `pack_split`, written into `out` (int8, `split_length` values): two or three
    whole-tensor ops per segment, no temporaries but one for the top plane of 3, 5 and 6 bits.
    The top plane holds the sign: its field is shifted to the byte's top and arithmetically back."""
    widths = PLANES[bits]
    shift = 0
    for i, (width, plane) in enumerate(zip(widths, planes, strict=True)):
        k = 8 // width
        top = i == len(widths) - 1
        for s, dst in enumerate(out.view(k, -1)):
            if not top:  # the low bits, unsigned
                torch.bitwise_right_shift(plane, s * width, out=dst.view(torch.uint8))
                dst.bitwise_and_(2**width - 1)
                continue
            field = dst if i == 0 else torch.empty_like(dst)
            torch.bitwise_left_shift(plane, 8 - (s + 1) * width, out=field.view(torch.uint8))
            field.bitwise_right_shift_(8 - width)  # int8: arithmetic, so the sign extends
            if i:
                dst.bitwise_or_(field.view(torch.uint8).bitwise_left_shift_(shift).view(torch.int8))
        shift += width
