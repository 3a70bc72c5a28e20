"""Codes at their bits: packing, split bit planes, and what packing refuses."""

import pytest
import torch

from mixdq.deploy import (
    pack,
    packed_nbytes,
    unpack,
)


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("numel", [0, 1, 7, 8, 9, 1000, 4099])
def test_pack_unpack_round_trip_is_exact(bits, numel):
    codes = torch.randint(0, 2**bits, (numel,), dtype=torch.uint8, generator=torch.Generator().manual_seed(numel))
    packed = pack(codes, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == packed_nbytes(numel, bits) == -(-numel // 8) * bits
    assert torch.equal(unpack(packed, bits, numel), codes)


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("numel", [0, 1, 9, 4099])
def test_split_planes_round_trip_at_the_same_bytes(bits, numel):
    from mixdq.deploy.packing import pack_split, split_length, unpack_split_into

    half = 2 ** (bits - 1)
    values = torch.randint(-half, half, (numel,), dtype=torch.int8, generator=torch.Generator().manual_seed(numel))
    values[:2] = torch.tensor([-half, half - 1])[: min(numel, 2)]  # both ends of the range
    planes = pack_split(values, bits)
    assert sum(p.numel() for p in planes) == packed_nbytes(numel, bits)
    out = torch.full((split_length(numel),), 99, dtype=torch.int8)
    unpack_split_into(planes, bits, out)
    assert torch.equal(out[:numel], values) and not out[numel:].any()  # the padding holds zeros


def test_pack_refuses_codes_out_of_range():
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        pack(torch.tensor([0, 4], dtype=torch.uint8), 2)
