"""Fake-quantized weights kept between calls, within a memory bound.

Each switchable layer keeps the quantized weight it runs now. Weights of other bit-widths it ran
before are *extras*: they make flipping back free, and they cost a full copy of the UNet per
width at full size (SDXL-Turbo: 10.3 GB per width in fp32). Extras live in one process-wide
least-recently-used pool whose byte budget is 0 by default, so the cache holds at most one
quantized copy of each weight beyond the float weights, however many allocations are visited:

    mixdq.set_weight_cache_budget(2 * 2**30)   # allow 2 GiB of extras for faster flips

What a flip then costs: every layer whose width changed fake-quantizes its weight again on its
next forward (one elementwise pass over that weight; `bench/studio_fullsize.py` times it).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable

import torch

from mixdq.core.errors import ConfigError

Key = tuple  # what identifies the float weight a cached one came from: device, dtype, storage, version


class LayerWeights:
    """One layer's quantized weights by bit-width: the current one, and extras the pool allows."""

    def __init__(self) -> None:
        self.entries: dict[int, tuple[Key, torch.Tensor]] = {}
        self.current: int | None = None

    def get(self, bits: int, key: Key, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        hit = self.entries.get(bits)
        if hit is None or hit[0] != key:
            hit = self.entries[bits] = (key, make())
        if self.current != bits:
            previous, self.current = self.current, bits
            POOL.promoted(self, bits)
            if previous is not None and previous in self.entries:
                POOL.demoted(self, previous, _nbytes(self.entries[previous][1]))
        return hit[1]

    def drop(self, bits: int) -> None:
        if bits != self.current:
            self.entries.pop(bits, None)

    def clear(self) -> None:
        for bits in list(self.entries):
            POOL.promoted(self, bits)
        self.entries.clear()
        self.current = None

    def __deepcopy__(self, memo) -> LayerWeights:
        """A copied model (`fork_pipeline`) starts with no cached weights: copying them would
        double the very memory this bounds."""
        return LayerWeights()

    def nbytes(self) -> int:
        return sum(_nbytes(t) for _, t in self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


class ExtraPool:
    """Extras of every layer, least recently used first, within `budget` bytes."""

    def __init__(self, budget: int = 0) -> None:
        self.budget = budget
        self._entries: OrderedDict[tuple[int, int], tuple[weakref.ref, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.RLock()  # a weakref callback may run inside

    @property
    def bytes(self) -> int:
        return self._bytes

    def demoted(self, layer: LayerWeights, bits: int, nbytes: int) -> None:
        """`layer`'s weight at `bits` stopped being current: keep it if the budget allows."""
        with self._lock:
            key = (id(layer), bits)
            self._entries[key] = (weakref.ref(layer, lambda _, key=key: self._forget(key)), nbytes)
            self._bytes += nbytes
            evicted = self._evict()
        for owner, old in evicted:
            owner.drop(old)

    def promoted(self, layer: LayerWeights, bits: int) -> None:
        """`layer`'s weight at `bits` is current again (or gone): no longer an extra."""
        self._forget((id(layer), bits))

    def _forget(self, key: tuple[int, int]) -> None:  # its layer was garbage-collected
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is not None:
                self._bytes -= entry[1]

    def resize(self, budget: int) -> None:
        with self._lock:
            self.budget = budget
            evicted = self._evict()
        for owner, old in evicted:
            owner.drop(old)

    def _evict(self) -> list[tuple[LayerWeights, int]]:
        evicted = []
        while self._bytes > self.budget and self._entries:
            (_, bits), (ref, nbytes) = self._entries.popitem(last=False)
            self._bytes -= nbytes
            owner = ref()
            if owner is not None:
                evicted.append((owner, bits))
        return evicted


POOL = ExtraPool()


def set_weight_cache_budget(nbytes: int) -> None:
    """Bytes of quantized weights kept beyond the one width each layer runs (default 0)."""
    if nbytes < 0:
        raise ConfigError(f"the weight cache budget is a number of bytes >= 0, got {nbytes}")
    POOL.resize(int(nbytes))


def weight_cache_budget() -> int:
    return POOL.budget
