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
    if bits not in (1, *PACKED_BITS):  # 1: a bit plane of `pack_planes`
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


# Byte-aligned pieces of each width: codes split into bit planes of 1, 2 or 4 bits unpack with
# byte-wise shifts only, ~10x faster than 3-, 5- and 6-bit codes that straddle bytes.
PLANES = {2: (2,), 3: (2, 1), 4: (4,), 5: (4, 1), 6: (4, 2)}


def pack_planes(codes: torch.Tensor, bits: int) -> tuple[torch.Tensor, ...]:
    """`codes` (unsigned, `bits` wide) as byte-aligned bit planes: low bits first."""
    planes, shift = [], 0
    for width in PLANES[bits]:
        planes.append(pack((codes.reshape(-1) >> shift) & (2**width - 1), width))
        shift += width
    return tuple(planes)


def unpack_planes(planes: tuple[torch.Tensor, ...], bits: int, numel: int) -> torch.Tensor:
    """The inverse of `pack_planes`: the first `numel` codes, as uint8."""
    codes, shift = None, 0
    for plane, width in zip(planes, PLANES[bits], strict=True):
        part = unpack(plane, width, numel)
        codes = part if codes is None else codes.bitwise_or_(part << shift)
        shift += width
    return codes

