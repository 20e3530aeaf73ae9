from __future__ import annotations

import pytest

from corpus import format_tokens, parse_tokens


@pytest.mark.parametrize("text,expected", [
    ("22T", 22_000_000_000_000), ("500B", 500_000_000_000), ("10M", 10_000_000), ("1.5e12", 1_500_000_000_000),
    ("12345", 12345), (12345, 12345), ("2.5k", 2500), ("0.1T", 100_000_000_000), ("1_000", 1000),
    ("14388B", 14_388_000_000_000), (" 7b ", 7_000_000_000),
])
def test_parse_tokens_exact(text, expected):
    value = parse_tokens(text)
    assert value == expected and isinstance(value, int)


@pytest.mark.parametrize("bad", ["", "abc", "-5", "1.5", "22X", "T", "1e-3", True])
def test_parse_tokens_rejects(bad):
    with pytest.raises(ValueError):
        parse_tokens(bad)


def test_format_tokens_round_trip_scale():
    assert format_tokens(22_383_000_000_000) == "22.38T"
    assert format_tokens(999) == "999"
