"""`proxy evaluate`: per-domain held-out loss and bits per byte of a model or an in-memory proxy (proxy.evaluate)."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.table import Table

from proxy.evaluate import evaluate_report


def _cmd_evaluate(args: argparse.Namespace) -> int:
    report = evaluate_report(
        args.db,
        model=args.model,
        components=args.components,
        mixture=args.mixture,
        tokens_per_domain=args.tokens_per_domain,
        seq_len=args.seq_len,
        batch_size=args.batch_size,
        tasks=args.tasks.split(",") if args.tasks else None,
        suite=args.suite,
        suite_cache=args.suite_cache,
        limit=args.limit,
        device=args.device,
        dtype=args.dtype,
    )
    results, label = report["domains"], report["model"]
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    table = Table(title=f"held-out metrics: {label}")
    for col in ("domain", "loss (nats/token)", "bits/byte", "tokens", "bytes"):
        table.add_column(col, justify="left" if col == "domain" else "right")
    for domain, r in results.items():
        table.add_row(domain, f"{r['loss']:.4f}", f"{r['bpb']:.4f}", str(r["tokens"]), str(r["bytes"]))
        for source, sr in r["sources"].items():  # what each source (and so each candidate) contributes
            table.add_row(
                f"  {source}" + (f" ({sr['candidate']})" if sr.get("candidate") else ""),
                f"{sr['loss']:.4f}",
                f"{sr['bpb']:.4f}",
                str(sr["tokens"]),
                str(sr["bytes"]),
                style="dim",
            )
    table.add_row("mean", "", f"{report['mean_bpb']:.4f}", "", "")
    Console(file=sys.stdout).print(table)
    for task, v in report.get("tasks", {}).items():
        print(f"{task}: {v:.4f}")
    if "suite" in report:
        suite_table = Table(title=f"suite {report['suite']['name']} (lm-eval, limit {args.limit})")
        suite_table.add_column("score")
        suite_table.add_column("value", justify="right")
        for col, v in report["suite"]["scores"].items():
            suite_table.add_row(col, f"{v:.4f}", style=None if col.startswith("suite") else "dim")
        Console(file=sys.stdout).print(suite_table)
    return 0


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add `proxy evaluate`."""
    p = subparsers.add_parser(
        "evaluate",
        help="per-domain held-out loss and bits per byte on the validation shards",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  proxy evaluate --model runs/merged/mix --db out/demo/manifest.duckdb\n"
        "  proxy evaluate --components runs/components --mixture mix.json --db out/demo --json\n"
        "  proxy evaluate --model runs/merged/mix --db out/demo --suite offline --limit 50\n",
    )
    p.add_argument("--model", default=None, help="model folder to evaluate")
    p.add_argument("--components", default=None, help="components dir; evaluates the in-memory proxy of --mixture")
    p.add_argument("--mixture", default=None, help="Mixture JSON (with --components)")
    p.add_argument("--db", required=True, help="manifest.duckdb or the corpus folder")
    p.add_argument("--tokens-per-domain", type=int, default=20_000)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--tasks", default=None, help="comma-separated lm-eval-harness tasks (needs lm_eval installed)")
    p.add_argument(
        "--suite",
        default=None,
        help="benchmark suite through lm-eval on the (in-memory) model: offline, demix_paper or a suite YAML",
    )
    p.add_argument("--suite-cache", default=None, help="folder for the suite's generated task files")
    p.add_argument("--limit", type=int, default=None, help="samples per suite task (quick runs)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: the model's / cuda when available)")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_evaluate)
