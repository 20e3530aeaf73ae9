"""Token amounts: exact integer parsing of ``22T``, ``500B``, ``10M``, ``1.5e12`` and plain integers."""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

_UNITS = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9, "T": 10**12, "P": 10**15}


def parse_tokens(value: str | int) -> int:
    """Parse a token amount into an exact integer number of tokens.

    Accepts ints, ``"22T"``, ``"500B"``, ``"2.5M"``, ``"1.5e12"``, ``"1_000"``. Decimal arithmetic
    keeps ``"0.1T"`` exact (100_000_000_000). Raises ValueError for negative, fractional-token or
    unparseable amounts.
    """
    if isinstance(value, bool):
        raise ValueError(f"token amount must be a number or a string like '22T', got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"token amount must be >= 0, got {value}")
        return value
    if isinstance(value, float):
        value = repr(value)
    if not isinstance(value, str):
        raise ValueError(f"token amount must be a number or a string like '22T', got {value!r}")
    text = value.strip().replace("_", "").replace(",", "")
    unit = text[-1:].upper() if text[-1:].isalpha() and text[-1:].upper() in _UNITS else ""
    number = text[: len(text) - len(unit)] if unit else text
    try:
        amount = Decimal(number) * _UNITS[unit]
    except (InvalidOperation, ValueError):
        raise ValueError(
            f"cannot parse token amount {value!r}: expected e.g. 22T, 500B, 10M, 1.5e12 or 12345"
        ) from None
    if amount < 0:
        raise ValueError(f"token amount must be >= 0, got {value!r}")
    if amount != amount.to_integral_value():
        raise ValueError(f"token amount {value!r} is not a whole number of tokens ({amount})")
    return int(amount)


def format_tokens(n: int) -> str:
    """Format a token count for humans: 22_383_000_000_000 -> '22.38T'."""
    for unit, scale in (("T", 10**12), ("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if abs(n) >= scale:
            return f"{n / scale:.4g}{unit}"
    return str(n)
