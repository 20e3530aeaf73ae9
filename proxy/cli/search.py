"""`proxy search`: search data mixtures with merged proxies and a predictor (proxy.search_proxies, proxy.search)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from proxy.search import FINAL_CHOICES, SearchResult
from proxy.search_proxies import search_with_proxies


def cmd_search(args: argparse.Namespace) -> int:
    """Handler of `proxy search`; returns an exit code."""
    found = search_with_proxies(
        args.components,
        args.out,
        db=args.db,
        objective=args.objective,
        maximize=args.maximize,
        suite=args.suite,
        suite_cache=args.suite_cache,
        limit=args.limit,
        dtype=args.dtype,
        iterations=args.iterations,
        per_iteration=args.per_iteration,
        pool=args.pool,
        top_k=args.top_k,
        rank_by=args.rank_by,
        final=args.final,
        predictor=args.predictor,
        prior=args.prior,
        seed=args.seed,
        budget=args.budget,
        tokens_per_domain=args.tokens_per_domain,
        seq_len=args.seq_len,
        batch_size=args.batch_size,
        device=args.device,
        name=args.name,
        register=not args.no_register,
        overwrite=args.overwrite,
        progress=not args.json,
    )
    result, paths, name, reused = found.result, found.paths, found.name, found.reused
    if result is None:
        print(
            f"{paths['best_mixture']}: a finished search with the same settings; kept (pass --overwrite to rerun)",
            file=sys.stderr,
        )
        return 0
    if args.json:
        print(
            json.dumps(
                {
                    "name": name,
                    "best_ratios": result.best_ratios,
                    "best_objective": result.best_objective,
                    "predicted_objective": result.predicted_best_objective,
                    "n_evaluated": len(result.evaluated) + 1,
                    "reused_scores": reused,
                    "suite_seconds": found.suite_seconds,
                    "seconds": found.seconds,
                    "outputs": {k: str(v) for k, v in paths.items()},
                }
            )
        )
    else:
        _summary(result, paths, name)
        if reused:
            print(f"{reused} proxies' scores reused from {paths['evaluated']}")
    return 0


def _summary(result: SearchResult, paths: dict[str, Path], name: str) -> None:
    console = Console(file=sys.stdout)
    table = Table(
        title=f"search {name}: {len(result.evaluated) + 1} proxies in {result.seconds:.1f}s "
        f"({(len(result.evaluated) + 1) / max(result.seconds, 1e-9):.2f} proxies/s)"
    )
    table.add_column("candidate")
    table.add_column("best mixture", justify="right")
    table.add_column("best measured", justify="right")
    best_eval = (max if result.objective.maximize else min)(result.evaluated, key=lambda e: e["objective"])
    for n in result.candidates:
        table.add_row(n, f"{result.best_ratios[n]:.4f}", f"{best_eval['ratios'][n]:.4f}")
    table.add_row(
        f"objective ({result.objective.spec})", f"{result.best_objective:.4f}", f"{best_eval['objective']:.4f}"
    )
    console.print(table)
    for h in result.history:
        console.print(f"iteration {h['iteration']}: {h['evaluated']} proxies, best so far {h['best_measured']:.4f}")
    for key, p in paths.items():
        console.print(f"{key}: {p}")


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add `proxy search`."""
    p = subparsers.add_parser(
        "search",
        help="search data mixtures with merged proxies and a predictor (DeMix steps 5-6)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  proxy search --components runs/components --db out/demo --out runs/search\n"
        "  proxy search --components runs/components --db out/demo --objective general:0.5,code:0.25,math:0.25 "
        "--iterations 3 --per-iteration 64 --pool 200000 --predictor ridge --seed 0 --out runs/search\n",
    )
    add_search_arguments(p)
    p.set_defaults(func=cmd_search)


def add_search_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `proxy search`."""
    p.add_argument("--components", required=True, help="components dir (components.json)")
    p.add_argument("--db", default=None, help="manifest.duckdb or corpus folder (default: components.json's db)")
    p.add_argument(
        "--objective",
        default="bpb",
        help="'bpb' (mean held-out bits/byte over domains), 'suite' (the --suite's domain scores, its "
        "direction), or weights like 'general:0.5,code:0.25,math:0.25'",
    )
    p.add_argument(
        "--suite",
        default=None,
        help="benchmark suite run through lm-eval on every proxy: a shipped name (offline, demix_paper) "
        "or a suite YAML; its per-task and per-domain scores go to evaluated.parquet",
    )
    p.add_argument(
        "--suite-cache",
        default=None,
        help="folder for the suite's generated task files (default ~/.cache/demix/suites/<suite>-<hash>)",
    )
    p.add_argument("--limit", type=int, default=None, help="samples per suite task (quick runs)")
    p.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        default="float32",
        help="proxy weights (bfloat16 on GPUs)",
    )
    p.add_argument("--maximize", action="store_true", help="higher objective is better (accuracies)")
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--per-iteration", type=int, default=64, help="proxies in iteration 1; halved each iteration")
    p.add_argument("--pool", type=int, default=200_000, help="sampled mixtures the predictor ranks")
    p.add_argument("--top-k", type=int, default=128, help="top predicted mixtures averaged into the final one")
    p.add_argument(
        "--rank-by",
        choices=("percentile", "value"),
        default=None,
        help="how predictions rank (default percentile; with --objective suite, the suite's combine)",
    )
    p.add_argument(
        "--final",
        choices=FINAL_CHOICES,
        default="average",
        help="the mixture written to best_mixture.json: average = the mean of the top-k predicted "
        "(docs/method.md, default); best = the best evaluated proxy; auto = whichever of the two "
        "measured better",
    )
    p.add_argument("--predictor", choices=("lightgbm", "ridge"), default="lightgbm")
    p.add_argument("--prior", choices=("manifest", "uniform"), default="manifest")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget", type=int, default=None, help="use component checkpoints at this many tokens")
    p.add_argument("--tokens-per-domain", type=int, default=20_000)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--name", default=None, help="name of the search (mixture names in the manifest)")
    p.add_argument("--no-register", action="store_true", help="do not write the manifest's mixtures table")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace a finished search in --out")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
