"""Bit-widths: which ones exist, for which kind of tensor, and how they read as text.

A bit-width is an `int`, and `None` means floating point; as text (command line, JSON, YAML,
the studio) floating point is written "fp".
"""

from __future__ import annotations

from enum import StrEnum

from mixdq.core.errors import UnsupportedBitsError


class Kind(StrEnum):
    """Which tensor of a layer a bit-width is for."""

    WEIGHT = "weight"
    ACTIVATION = "activation"


KINDS: tuple[Kind, ...] = tuple(Kind)
Bits = int | None  # None: keep floating point
FP = "fp"

WEIGHT_BITS: tuple[int, ...] = (2, 3, 4, 5, 6, 8)
ACT_BITS: tuple[int, ...] = (4, 6, 8)
FP_BITS = 16  # what a floating-point layer counts as in budgets and averages


def supported_bits(kind: Kind) -> tuple[int, ...]:
    return WEIGHT_BITS if kind == "weight" else ACT_BITS


def check_bits(kind: Kind, bits: object, layer: str | None = None) -> Bits:
    """`bits` (an int, None, or "fp") as an int or None, or an error that lists the choices."""
    choices = supported_bits(kind)
    if bits is None or bits == FP:
        return None
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in choices:
        raise UnsupportedBitsError(kind, bits, choices, layer)
    return bits


def parse_bits(text: str | int | None, kind: Kind | None = None) -> Bits:
    """"fp" -> None, "4" -> 4; checked against `kind`'s choices when it is given."""
    if text is None or text == FP or isinstance(text, int):
        value = None if text == FP else text
    else:
        try:
            value = int(str(text).strip())
        except ValueError:
            raise UnsupportedBitsError(kind or "weight", text, supported_bits(kind or "weight")) from None
    return value if kind is None else check_bits(kind, value)


def format_bits(bits: Bits) -> str:
    return FP if bits is None else str(bits)


def bits_choices(kind: Kind) -> list[str]:
    """Every choice as text, widest first, floating point first of all (menus and CLI choices)."""
    return [FP, *map(str, sorted(supported_bits(kind), reverse=True))]
