"""Low-bit codes unpacked straight into oneDNN's blocked int8 layout (the `int8-unpack` kernel).

oneDNN's int8 kernels read a weight pre-packed into a blocked layout; packing a plain int8 weight
costs ~3 ns per weight on every call (`int8-repack`), more than the matmul itself for a large
weight. But packing is a fixed permutation of the weights followed by a few bytes per output
channel (the kernel's compensation), so we apply the permutation once, at deployment, to the
codes themselves, and keep them packed at their own bits in blocked order. A call then only
unpacks them (sequentially) into a pre-packed scratch weight shared by every layer of the same
shape, and copies the per-channel tail after them.

The permutation is read off oneDNN's own packing of index digits, and everything is checked
against its real packing of the layer, byte for byte, and against its output: where oneDNN's
layout is not a plain permutation (some CPUs adjust int8 weights), the layer cannot use this
kernel and says so.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .packing import pack_planes, unpack_planes

_DIGIT = 7  # bits of the weight index per packing pass: positive int8 values
_DIGITS = 4  # so up to 2^28 weights per layer


class LayoutError(ValueError):
    """oneDNN's packing of this weight is not a permutation we can reproduce."""


def raw_bytes(packed: torch.Tensor) -> torch.Tensor:
    """The bytes of a pre-packed (mkldnn) weight as an int8 tensor that aliases them: the caller
    keeps `packed` alive as long as the view is used."""
    n = torch.ops.mkldnn._nbytes(packed)
    buffer = (ctypes.c_int8 * n).from_address(torch.ops.mkldnn.data_ptr(packed))
    return torch.from_numpy(np.ctypeslib.as_array(buffer))


@dataclass(frozen=True)
class BlockedWeight:
    """A layer's centred weight in oneDNN's blocked order, packed at `bits`, plus the packing's tail."""

    planes: tuple[torch.Tensor, ...]  # `bits` per weight as bit planes (padding holds the code of 0)
    bits: int
    length: int  # weights (and padding) in blocked order
    tail: torch.Tensor  # int8: the bytes oneDNN keeps after the weights (per-channel compensation)
    key: tuple  # layers with equal keys can share one scratch weight

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.planes) + self.tail.nbytes

    def fill(self, view: torch.Tensor) -> None:
        offset = 2 ** (self.bits - 1)
        codes = unpack_planes(self.planes, self.bits, self.length)
        torch.sub(codes.view(torch.int8), offset, out=view[: self.length])
        view[self.length:] = self.tail


def to_blocked(centred: torch.Tensor, bits: int, prepack: Callable[[torch.Tensor], torch.Tensor],
               key: tuple) -> BlockedWeight:
    """`centred` (int8, symmetric `bits`-bit values) in the blocked order `prepack` produces."""
    numel = centred.numel()
    if numel >= 2 ** (_DIGIT * _DIGITS):
        raise LayoutError(f"more than 2^{_DIGIT * _DIGITS} weights")
    real = prepack(centred)
    packed = raw_bytes(real).clone()
    index = torch.arange(1, numel + 1, dtype=torch.int64)  # 0 marks padding
    position = torch.zeros(packed.numel(), dtype=torch.int64)
    for d in range(_DIGITS):
        digit = prepack(((index >> (_DIGIT * d)) & 0x7F).to(torch.int8).reshape(centred.shape))
        position |= (raw_bytes(digit).to(torch.int64) & 0x7F) << (_DIGIT * d)
        del digit
    flat, channels = centred.reshape(-1), centred.shape[0]
    # an int32 per output channel (padded to a block) follows the weights
    for length in dict.fromkeys(packed.numel() - 4 * (-(-channels // b) * b) for b in (1, 8, 16, 32, 64)):
        where = position[:length]
        if length <= 0 or where.max() > numel:
            continue
        blocked = torch.where(where > 0, flat[(where - 1).clamp(min=0)], torch.zeros((), dtype=torch.int8))
        if torch.equal(blocked, packed[:length]):
            break
    else:
        raise LayoutError("oneDNN's int8 packing here is not a permutation of the weights")
    planes = pack_planes((blocked.to(torch.int16) + 2 ** (bits - 1)).to(torch.uint8), bits)
    return BlockedWeight(planes, bits, length, packed[length:].clone(), key + (packed.numel(),))


class ScratchPool:
    """One pre-packed weight per layout key, refilled by each layer before its call. A lock keeps
    two threads from filling the same scratch at once."""

    def __init__(self):
        self._scratch: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self.lock = threading.Lock()

    def get(self, key: tuple, make: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(pre-packed scratch, its bytes as a writable view)."""
        if key not in self._scratch:
            packed = make()
            self._scratch[key] = (packed, raw_bytes(packed))
        return self._scratch[key]

    def keep(self, keys: set[tuple]) -> None:
        """Drop the scratch weights no layer uses (another model's are made again on first use)."""
        with self.lock:
            for key in set(self._scratch) - keys:
                del self._scratch[key]

    def nbytes(self, keys: set[tuple]) -> int:
        return sum(self._scratch[k][1].numel() for k in keys if k in self._scratch)


SCRATCH = ScratchPool()
