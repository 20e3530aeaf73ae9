from __future__ import annotations

import pytest

from corpus import DemixError, format_tokens, parse_tokens
from corpus.tokens import TokenAmountError


@pytest.mark.parametrize(
    "text,expected",
    [
        ("22T", 22_000_000_000_000),
        ("500B", 500_000_000_000),
        ("10M", 10_000_000),
        ("1.5e12", 1_500_000_000_000),
        ("12345", 12345),
        (12345, 12345),
        ("2.5k", 2500),
        ("0.1T", 100_000_000_000),
        ("1_000", 1000),
        ("14388B", 14_388_000_000_000),
        (" 7b ", 7_000_000_000),
        ("1,500B", 1_500_000_000_000),
        ("12,345,678", 12_345_678),
        ("1,500.5M", 1_500_500_000),
        (1.5e12, 1_500_000_000_000),
        ("0", 0),
        ("9223372036854775807", 2**63 - 1),
        ("1e-30T", None),
    ],
)
def test_parse_tokens_exact(text, expected):
    if expected is None:  # 1e-18 tokens: exact arithmetic refuses it instead of rounding to 0
        with pytest.raises(TokenAmountError, match="not a whole number"):
            parse_tokens(text)
        return
    value = parse_tokens(text)
    assert value == expected and isinstance(value, int)


@pytest.mark.parametrize(
    "bad,reason",
    [
        ("", "cannot parse"),
        ("abc", "cannot parse"),
        ("-5", ">= 0"),
        (-5, ">= 0"),
        ("-1", ">= 0"),
        ("1.5", "not a whole number"),
        ("22X", "unknown unit 'X'"),
        ("T", "cannot parse"),
        ("1e-3", "not a whole number"),
        (True, "expected a number"),
        (None, "expected a number"),
        ([1], "expected a number"),
        # issue 11: a decimal comma, and values that crashed with OverflowError / InvalidOperation
        ("1,5T", "a comma may only separate thousands"),
        ("1,50,0", "a comma may only separate thousands"),
        ("1,5000", "a comma may only separate thousands"),
        (",500", "a comma may only separate thousands"),
        ("inf", "cannot parse"),
        ("nan", "cannot parse"),
        ("-inf", "cannot parse"),
        ("Infinity", "cannot parse"),
        (float("inf"), "finite"),
        (float("nan"), "finite"),
        (float("-inf"), "finite"),
        ("1e400", "more than 9,223,372,036,854,775,807"),
        ("1e999999999999", "more than"),
        (10**30, "more than"),
        ("9223372036854775808", "more than"),
        ("1e-999999999", "not a whole number"),
        ("1e5e5", "cannot parse"),
    ],
)
def test_parse_tokens_rejects_naming_the_value(bad, reason):
    with pytest.raises(TokenAmountError) as err:
        parse_tokens(bad)
    assert isinstance(err.value, ValueError) and isinstance(err.value, DemixError)  # ValueError callers keep working
    assert str(err.value).startswith(f"token amount {bad!r}: "), err.value
    assert reason in err.value.reason, err.value
    assert err.value.value is bad


def test_format_tokens_round_trip_scale():
    assert format_tokens(22_383_000_000_000) == "22.38T"
    assert format_tokens(999) == "999"
