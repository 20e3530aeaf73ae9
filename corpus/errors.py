"""One root for every error this toolkit raises on purpose, and the one CLI runner that maps them to exit codes.

Every package may import `corpus`, so the root lives here: an error class elsewhere derives from
`DemixError` (a bad input the message explains, exit 1) or `UsageError` (a bad command line or a
value the user typed, exit 2). Anything else that escapes a command is a bug and shows a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence


class DemixError(Exception):
    """A failure the message explains in one line, naming the file, row or field (CLI exit 1)."""


class UsageError(DemixError):
    """A bad argument or argument value on the command line (CLI exit 2)."""


def run_cli(
    prog: str,
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    call: Callable[[argparse.Namespace], int | None],
) -> int:
    """Parse ``argv`` and run ``call(args)``: our errors print one line (exit 1, usage 2), bugs a traceback.

    ``--debug`` (when the parser defines it) always re-raises, so the traceback shows.
    """
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    try:
        return int(call(args) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 1
    except UsageError as e:
        if debug:
            raise
        if getattr(e, "show_usage", True):  # a refused recipe is a usage error, but its usage line adds nothing
            parser.print_usage(sys.stderr)
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except DemixError as e:
        if debug:
            raise
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
