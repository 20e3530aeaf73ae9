"""`proxy` CLI: base, components, train, merge, evaluate, search, validate.

Each module owns its subcommands through `add_cli(subparsers)`; this file only assembles them.
"""

from __future__ import annotations

import argparse
import sys

from corpus.errors import run_cli
from proxy.cli import evaluate, merge, search, train, validate

# Modules that contribute subcommands, in the order of the method.
SUBCOMMAND_MODULES = (train, merge, evaluate, search, validate)

EPILOG = """examples:
  proxy base --db out/demo/manifest.duckdb --config tiny --tokens 20M --out runs/base
  proxy components --base runs/base --db out/demo/manifest.duckdb --general-share 0.5 --tokens 10M --out runs/components
  proxy merge --components runs/components --mixture mix.json --out runs/merged/mix
  proxy evaluate --model runs/merged/mix --db out/demo/manifest.duckdb
  proxy search --components runs/components --db out/demo/manifest.duckdb --out runs/search
  proxy validate --references runs/refs --proxies runs/proxies
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="proxy",
        description=__doc__.splitlines()[0],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMAND_MODULES:
        module.add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: exit 0 ok; our errors one line on stderr, exit 1 (usage 2); a bug shows its traceback."""
    parser = build_parser()
    return run_cli("proxy", parser, argv, lambda args: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
