"""Low-bit codes unpacked straight into oneDNN's blocked int8 layout (the `int8-unpack` kernel).

oneDNN's int8 kernels read a weight pre-packed into a blocked layout; packing a plain int8 weight
costs ~3 ns per weight on every call (`int8-repack`), more than the matmul itself for a large
weight. But packing is a fixed permutation of the weights followed by a few bytes per output
channel (the kernel's compensation), so we apply the permutation once, at deployment, to the
codes themselves, and keep them packed at their own bits in blocked order. A call then only
unpacks them (sequentially) into a pre-packed scratch weight shared by every layer of the same
shape, and copies the per-channel tail after them. Large weights go in chunks of output channels,
so that a scratch weight is small and shared widely (`MAX_CHUNK_BYTES`).

The permutation is read off oneDNN's own packing of index digits, and everything is checked
against its real packing of the layer, byte for byte, and against its output: where oneDNN's
layout is not a plain permutation (some CPUs adjust int8 weights), the layer cannot use this
kernel and says so.
"""

from __future__ import annotations

import ctypes
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from mixdq.deploy.packing import pack_split, split_length, unpack_split_into

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


# A layer's weight is cut into chunks of output channels of at most this many int8 bytes (a power
# of two of channels): the scratch weight is one chunk, so it stays small, and layers whose chunks
# have one shape share it. Output channels are independent, so the chunks' outputs are exact.
MAX_CHUNK_BYTES = 4 << 20


@dataclass(frozen=True)
class BlockedChunk:
    """Output channels `rows` of a layer's centred weight in oneDNN's blocked order, packed at
    `bits`, plus the tail oneDNN keeps after the weights (per-channel compensation)."""

    rows: slice
    planes: tuple[torch.Tensor, ...]  # `bits` per weight, split planes (`packing.pack_split`)
    bits: int
    length: int  # weights (and padding) in blocked order
    tail: torch.Tensor  # int8
    key: tuple  # chunks with equal keys share one scratch weight

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.planes) + self.tail.nbytes

    def fill(self, view: torch.Tensor) -> None:
        """Write the weights and the tail into `view` (a scratch weight's bytes). The weights are
        unpacked in place: a few sequential passes, with no temporary the size of the chunk."""
        n = split_length(self.length)
        if n <= view.numel():  # the padding lands where the tail goes next
            unpack_split_into(self.planes, self.bits, view[:n])
        else:
            padded = torch.empty(n, dtype=torch.int8)
            unpack_split_into(self.planes, self.bits, padded)
            view[: self.length] = padded[: self.length]
        view[self.length:] = self.tail


@dataclass(frozen=True)
class BlockedWeight:
    chunks: tuple[BlockedChunk, ...]

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for c in self.chunks)

    @property
    def keys(self) -> set[tuple]:
        return {c.key for c in self.chunks}


def chunk_rows(channels: int, per_channel: int) -> int:
    """Output channels per chunk: all of them if they fit `MAX_CHUNK_BYTES`, else the largest
    power of two (at least 16) that does."""
    max_bytes = MAX_CHUNK_BYTES
    if channels * per_channel <= max_bytes:
        return channels
    rows = 16
    while rows * 2 * per_channel <= max_bytes and rows * 2 < channels:
        rows *= 2
    return rows


Prepack = Callable[[torch.Tensor, slice], torch.Tensor]  # (centred rows, which rows) -> pre-packed


def to_blocked(centred: torch.Tensor, bits: int, prepack: Prepack, key: tuple) -> BlockedWeight:
    """`centred` (int8, symmetric `bits`-bit values) in the blocked order `prepack` produces,
    chunk by chunk."""
    channels = centred.shape[0]
    rows = chunk_rows(channels, centred[0].numel())
    chunks = []
    for start in range(0, channels, rows):
        part = slice(start, min(start + rows, channels))
        weights = centred[part]
        packed = raw_bytes(real := prepack(weights, part)).clone()
        del real
        shape = tuple(weights.shape)
        position, length = POSITIONS.get(key + (shape, packed.numel()),
                                         partial(_blocked_positions, weights, part, packed, prepack))
        flat = weights.reshape(-1)
        blocked = torch.where(position > 0, flat[(position - 1).clamp(min=0).long()], torch.zeros((), dtype=torch.int8))
        if not torch.equal(blocked, packed[:length]):
            raise LayoutError("oneDNN's int8 packing here is not a permutation of the weights")
        planes = pack_split(blocked, bits)
        chunks.append(BlockedChunk(part, planes, bits, length, packed[length:].clone(),
                                   key + (shape, packed.numel())))
    return BlockedWeight(tuple(chunks))


class RecentPositions:
    """The few most recently used permutations (int32, 4 bytes per weight): layers of one shape
    come in runs, and reading a permutation off oneDNN costs four packings. Deployment and loading
    `clear()` it when done."""

    def __init__(self, size: int = 4):
        self._items: OrderedDict[tuple, tuple[torch.Tensor, int]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def get(self, key: tuple, make: Callable[[], tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, int]:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value


POSITIONS = RecentPositions()


def _blocked_positions(weights: torch.Tensor, part: slice, packed: torch.Tensor,
                       prepack: Prepack) -> tuple[torch.Tensor, int]:
    """(for each byte of the weights' blocked region, 1 + the flat index of the weight it holds,
    0 for padding; the region's length), read off oneDNN's packing of the index's 7-bit digits."""
    numel = weights.numel()
    if numel >= 2 ** (_DIGIT * _DIGITS):
        raise LayoutError(f"more than 2^{_DIGIT * _DIGITS} weights in one chunk")
    index = torch.arange(1, numel + 1, dtype=torch.int64)
    position = torch.zeros(packed.numel(), dtype=torch.int64)
    for d in range(_DIGITS):
        digit = prepack(((index >> (_DIGIT * d)) & 0x7F).to(torch.int8).reshape(weights.shape), part)
        position |= (raw_bytes(digit).to(torch.int64) & 0x7F) << (_DIGIT * d)
        del digit
    # an int32 per output channel (padded to a block) follows the weights
    channels, flat = weights.shape[0], weights.reshape(-1)
    for length in dict.fromkeys(packed.numel() - 4 * (-(-channels // b) * b) for b in (1, 8, 16, 32, 64)):
        where = position[:length]
        if length <= 0 or where.max() > numel:
            continue
        blocked = torch.where(where > 0, flat[(where - 1).clamp(min=0)], torch.zeros((), dtype=torch.int8))
        if torch.equal(blocked, packed[:length]):
            return where.to(torch.int32), length
    raise LayoutError("oneDNN's int8 packing here is not a permutation of the weights")


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
