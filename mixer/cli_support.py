"""What the `mixer` commands share: argument value types, the console, and user-path errors as one line."""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
from collections.abc import Callable, Iterator

from rich.console import Console

from corpus import DemixError, parse_tokens


def arg_tokens(value: str) -> int:
    try:
        return parse_tokens(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def arg_positive_tokens(value: str) -> int:
    n = arg_tokens(value)
    if n <= 0:
        raise argparse.ArgumentTypeError(f"{value!r}: expected a token amount > 0, e.g. 50M or 22T")
    return n


def arg_token_list(value: str) -> tuple[int, ...]:
    return tuple(arg_positive_tokens(part) for part in value.split(","))


def arg_int_at_least(lo: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r}: expected an integer >= {lo}") from None
        if n < lo:
            raise argparse.ArgumentTypeError(f"{value!r}: expected an integer >= {lo}")
        return n

    parse.__name__ = f"integer >= {lo}"
    return parse


def _number(value: str, ok: Callable[[float], bool], what: str) -> float:
    try:
        x = float(value)
    except ValueError:
        x = math.nan
    if not (math.isfinite(x) and ok(x)):
        raise argparse.ArgumentTypeError(f"{value!r}: expected {what}")
    return x


def arg_fraction(value: str) -> float:
    return _number(value, lambda x: 0.0 <= x <= 1.0, "a number in [0, 1]")


def arg_positive_number(value: str) -> float:
    return _number(value, lambda x: x > 0.0, "a finite number > 0")


@contextlib.contextmanager
def user_paths() -> Iterator[None]:
    """A path the user named that is missing, a folder or unreadable is their input, not a bug: one line."""
    try:
        yield
    except OSError as e:
        where = e.filename if e.filename is not None else "input"
        raise DemixError(f"{where}: {e.strerror or e}") from None


def console_for_stdout() -> Console:
    return Console() if sys.stdout.isatty() else Console(width=200)
