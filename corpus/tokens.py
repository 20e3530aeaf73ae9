"""Token amounts: exact integer parsing of ``22T``, ``500B``, ``10M``, ``1.5e12``, ``1,500B`` and plain integers."""

from __future__ import annotations

import math
import re
from decimal import Decimal, Inexact, localcontext

from corpus.errors import DemixError

_UNITS = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9, "T": 10**12, "P": 10**15}
MAX_TOKENS = 2**63 - 1
"""The largest token count we store (Parquet int64 and DuckDB BIGINT columns)."""

# digits with an optional fraction and exponent, then a unit; a comma only between groups of three
# digits ("1,500B"), so that "1,5T" (a decimal comma) is refused instead of read as 15T
_AMOUNT = re.compile(
    r"""
    (?P<number>[+-]?(?:\d{1,3}(?:,\d{3})+|\d+(?:_\d+)*)?(?:\.\d+)?(?:[eE][+-]?\d+)?)
    \s*(?P<unit>[A-Za-z]?)""",
    re.X,
)
_EXAMPLES = "expected e.g. 22T, 500B, 10M, 1.5e12, 1,500B or 12345"


class TokenAmountError(DemixError, ValueError):
    """A token amount that is not a whole, finite, non-negative number of tokens; names the value.

    ``value`` is what was given, ``reason`` what is wrong with it (for messages that show the value
    themselves, such as a config key path).
    """

    def __init__(self, value: object, reason: str):
        super().__init__(f"token amount {value!r}: {reason}")
        self.value, self.reason = value, reason


def parse_tokens(value: str | int | float) -> int:
    """Parse a token amount into an exact integer number of tokens.

    Accepts ints, ``"22T"``, ``"500B"``, ``"2.5M"``, ``"1.5e12"``, ``"1_000"``, ``"1,500B"``. Decimal
    arithmetic keeps ``"0.1T"`` exact (100_000_000_000). Raises TokenAmountError (a ValueError) for
    negative, fractional-token, non-finite, too large (> 2**63 - 1) or unparseable amounts, and for a
    comma that is not a thousands separator (``"1,5T"``).
    """
    if isinstance(value, bool):
        raise TokenAmountError(value, f"expected a number or a string like '22T', got {value}")
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise TokenAmountError(value, "expected a finite number of tokens")
        amount = Decimal(repr(value))
    elif isinstance(value, str):
        amount = _parse_text(value)
    else:
        raise TokenAmountError(value, f"expected a number or a string like '22T', got {type(value).__name__}")
    if amount < 0:
        raise TokenAmountError(value, "expected a number of tokens >= 0")
    if amount > MAX_TOKENS:
        raise TokenAmountError(value, f"more than {MAX_TOKENS:,} tokens (2**63 - 1), the largest count we store")
    if amount != amount.to_integral_value():
        raise TokenAmountError(value, f"not a whole number of tokens ({amount:f})")
    return int(amount)


def _parse_text(value: str) -> Decimal:
    m = _AMOUNT.fullmatch(value.strip())
    if m is None or not re.search(r"\d", m["number"]):
        if re.fullmatch(r"[\d,.]+[A-Za-z]?", value.strip()) and "," in value:
            raise TokenAmountError(value, "a comma may only separate thousands (1,500B); write 1.5T, not 1,5T")
        raise TokenAmountError(value, f"cannot parse as a token amount; {_EXAMPLES}")
    unit = m["unit"].upper()
    if unit not in _UNITS:
        raise TokenAmountError(value, f"unknown unit {m['unit']!r}; use K, M, B (or G), T or P")
    number = Decimal(m["number"].replace(",", "").replace("_", ""))
    if number.adjusted() > 30:  # far past MAX_TOKENS: refuse before any arithmetic on a 1e400
        raise TokenAmountError(value, f"more than {MAX_TOKENS:,} tokens (2**63 - 1), the largest count we store")
    if number and number.adjusted() < -30:  # 1e-999999999 would underflow to 0
        raise TokenAmountError(value, "not a whole number of tokens")
    with localcontext() as ctx:
        ctx.prec = 80  # exact for every amount below MAX_TOKENS with a fraction down to 1e-30
        ctx.traps[Inexact] = True  # never round silently
        return number * _UNITS[unit]


def format_tokens(n: int) -> str:
    """Format a token count for humans: 22_383_000_000_000 -> '22.38T'."""
    for unit, scale in (("T", 10**12), ("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if abs(n) >= scale:
            return f"{n / scale:.4g}{unit}"
    return str(n)
