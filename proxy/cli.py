"""`proxy` CLI: base, components, train, merge, evaluate, search, validate.

Each module owns its subcommands through `add_cli(subparsers)`; this file only assembles them.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# Modules that contribute subcommands, in the order of the method.
SUBCOMMAND_MODULES = ("proxy.train", "proxy.merge", "proxy.evaluate", "proxy.search", "proxy.validate")

EPILOG = """examples:
  proxy base --db out/demo/manifest.duckdb --config tiny --tokens 20M --out runs/base
  proxy components --base runs/base --db out/demo/manifest.duckdb --general-share 0.5 --tokens 10M --out runs/components
  proxy merge --components runs/components --mixture mix.json --out runs/merged/mix
  proxy evaluate --model runs/merged/mix --db out/demo/manifest.duckdb
  proxy search --components runs/components --db out/demo/manifest.duckdb --out runs/search
  proxy validate --references runs/refs --proxies runs/proxies
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="proxy", description=__doc__.splitlines()[0], epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        module.add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; exit 0 ok, 1 failed, 2 usage."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - the CLI's one place that turns errors into exit codes
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
