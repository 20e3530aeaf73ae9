"""`proxy merge`: merge component models with a mixture's ratios into a proxy checkpoint (proxy.merge)."""

from __future__ import annotations

import argparse
import json
import sys
import time

from rich.console import Console
from rich.table import Table

from corpus.errors import run_cli
from proxy.components import load_components
from proxy.merge import DTYPES, METHODS, MergeSettings, load_mixture_ratios, merge_to_folder
from proxy.model import read_demix


def _cmd_merge(args: argparse.Namespace) -> int:
    comps = load_components(args.components, budget=args.budget)
    name, ratios = load_mixture_ratios(args.mixture)
    settings = MergeSettings(method=args.method, dtype=args.dtype, density=args.density, scale=args.scale)
    t0 = time.perf_counter()
    out = merge_to_folder(comps, ratios, args.out, settings, mixture_name=name, overwrite=args.overwrite)
    seconds = time.perf_counter() - t0
    weights = read_demix(out)["mixture"]
    if args.json:
        print(json.dumps({"out": str(out), "mixture": weights, "method": args.method, "seconds": seconds}))
    else:
        table = Table(title=f"merged {name} ({args.method}) -> {out}")
        table.add_column("component")
        table.add_column("weight", justify="right")
        for n, w in weights.items():
            table.add_row(n, f"{w:.4f}")
        Console(file=sys.stdout).print(table)
        print(f"{seconds:.2f}s")
    return 0


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add `proxy merge`."""
    p = subparsers.add_parser(
        "merge",
        help="merge component models with a mixture's ratios into a proxy checkpoint",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  proxy merge --components runs/components --mixture mix.json --out runs/merged/mix\n"
        "  proxy merge --components runs/components --mixture mix.json --out runs/merged/ties "
        "--method ties --density 0.3 --dtype bfloat16\n",
    )
    p.add_argument("--components", required=True, help="components dir (components.json) or a component folder")
    p.add_argument("--mixture", required=True, help="Mixture JSON with ratios over the component names")
    p.add_argument("--out", required=True, help="output model folder")
    p.add_argument("--method", choices=METHODS, default="linear")
    p.add_argument("--dtype", choices=tuple(DTYPES), default=None, help="output dtype (default: the components')")
    p.add_argument("--budget", type=int, default=None, help="use each component's checkpoint at this many tokens")
    p.add_argument("--density", type=float, default=0.5, help="TIES: fraction of each task vector kept")
    p.add_argument("--scale", type=float, default=1.0, help="task arithmetic / TIES: scale of the merged task vector")
    p.add_argument("--overwrite", action="store_true", help="replace a different merged model at --out")
    p.add_argument("--json", action="store_true", help="print a JSON result")
    p.set_defaults(func=_cmd_merge)


if __name__ == "__main__":
    # `python -m proxy.cli.merge ...` runs the merge alone, without importing the other subcommands' modules.
    _parser = argparse.ArgumentParser(prog="python -m proxy.cli.merge")
    _parser.add_argument("--debug", action="store_true")
    add_cli(_parser.add_subparsers(dest="command", required=True))
    sys.exit(run_cli("python -m proxy.cli.merge", _parser, ["merge", *sys.argv[1:]], lambda a: a.func(a)))
