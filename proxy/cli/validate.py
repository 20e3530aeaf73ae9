"""`proxy validate`: rank consistency of proxy scores against reference models (proxy.validate)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from rich.console import Console
from rich.table import Table

from proxy.validate import validate_tables


def _cmd_validate(args: argparse.Namespace) -> int:
    metrics = args.metrics.split(",") if args.metrics else None
    lower = True if args.lower_is_better else False if args.higher_is_better else None
    rc = validate_tables(args.references, args.proxies, metrics, lower, args.out)
    report = asdict(rc)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    table = Table(
        title=f"rank consistency over {rc.n_mixtures} mixtures "
        f"({'lower' if rc.lower_is_better else 'higher'} is better)"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("Spearman (objective)", f"{rc.spearman:.4f}")
    table.add_row(f"Spearman top 25% ({rc.n_top25})", f"{rc.spearman_top25:.4f}")
    table.add_row("macro Spearman", f"{rc.macro_spearman:.4f}")
    table.add_row("maintain (sum proxy / sum ref)", f"{rc.maintain:.4f}")
    for m, v in rc.per_metric.items():
        table.add_row(f"Spearman {m}", f"{v:.4f}")
    Console(file=sys.stdout).print(table)
    return 0


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add `proxy validate`."""
    p = subparsers.add_parser(
        "validate",
        help="rank consistency of proxy scores against reference models (Spearman, top-25%%, maintain)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  proxy validate --references runs/refs/scores.parquet --proxies runs/search/evaluated.parquet\n"
        "  proxy validate --references refs.csv --proxies proxies.json --metrics bpb/code,bpb/math --out runs/val\n",
    )
    p.add_argument("--references", required=True, help="score table (Parquet/CSV/JSON) or folder of them")
    p.add_argument("--proxies", required=True, help="score table (Parquet/CSV/JSON) or folder of them")
    p.add_argument("--metrics", default=None, help="comma-separated metric columns (default: bpb/* or all common)")
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--lower-is-better",
        action="store_true",
        help="the metrics are losses (default: from the metric family, e.g. bpb/, loss/ are lower)",
    )
    g.add_argument(
        "--higher-is-better",
        action="store_true",
        help="the metrics are scores (default: from the metric family, e.g. acc/, exact_match/ are higher)",
    )
    p.add_argument("--out", default=None, help="folder for rank_consistency.json and rank_scatter.png")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_validate)
