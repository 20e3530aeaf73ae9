"""`proxy search` over merged proxies: prior from the manifest, proxies in memory, outputs, plots and summary."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from dataclasses import asdict
from pathlib import Path

from proxy.search import FINAL_CHOICES, Objective, SearchResult, SearchSettings, evaluated_table, run_search
from proxy.errors import ProxyError


def candidate_tokens(db: str | os.PathLike) -> dict[str, int]:
    """Train tokens per candidate (sources.candidate) from the manifest; sources with no candidate are skipped."""
    from manifests import list_sources  # noqa: PLC0415

    out: dict[str, int] = {}
    for s in list_sources(db):
        if s.get("candidate"):
            out[s["candidate"]] = out.get(s["candidate"], 0) + int(s["n_tokens"] or 0)
    return out


def search_prior(db: str | os.PathLike | None, names: tuple[str, ...], kind: str) -> dict[str, int]:
    """Prior token counts for the components: the manifest's candidate tokens, or 1 each for kind 'uniform'.

    Raises ValueError naming components that the manifest has no tokens for.
    """
    if kind == "uniform":
        return {n: 1 for n in names}
    if db is None:
        raise ProxyError("--db is needed for the manifest prior (or pass --prior uniform)")
    tokens = candidate_tokens(db)
    missing = [n for n in names if tokens.get(n, 0) <= 0]
    if missing:
        raise ProxyError(f"{db}: no train tokens for candidates {missing} (manifest candidates: {sorted(tokens)}); "
                         "name components after sources.candidate or pass --prior uniform")
    return {n: tokens[n] for n in names}


def write_outputs(result: SearchResult, out: str | os.PathLike, name: str, db: str | os.PathLike | None) -> dict[str, Path]:
    """best_mixture.json, evaluated.parquet, three PNG plots, and the manifest's mixtures rows; returns the paths."""
    import pyarrow.parquet as pq  # noqa: PLC0415

    from proxy import plots  # noqa: PLC0415

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"best_mixture": out / "best_mixture.json", "evaluated": out / "evaluated.parquet",
             "predicted_vs_measured": out / "predicted_vs_measured.png",
             "best_by_iteration": out / "best_by_iteration.png", "top_ratios": out / "top_ratios.png"}
    doc = {"name": name, "level": "candidate", "ratios": result.best_ratios, "provenance": result.provenance()}
    try:
        from mixer import Mixture  # noqa: PLC0415
    except ImportError:
        Mixture = None  # noqa: N806
    if Mixture is not None:
        Mixture.from_dict(doc, file=str(paths["best_mixture"])).save(paths["best_mixture"])
    else:
        tmp = paths["best_mixture"].with_name(f".best_mixture.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, paths["best_mixture"])
    table = evaluated_table(result, name)
    tmp = paths["evaluated"].with_name(f".evaluated.{uuid.uuid4().hex[:8]}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, paths["evaluated"])
    rows = table.to_pylist()
    plots.plot_predicted_vs_measured([r["predicted_objective"] if r["predicted_objective"] is not None else float("nan")
                                      for r in rows], [r["objective"] for r in rows], [r["iteration"] for r in rows],
                                     paths["predicted_vs_measured"], result.objective.spec)
    plots.plot_best_by_iteration(result.history, paths["best_by_iteration"], result.objective.spec)
    plots.plot_ratio_distribution(result.top_mixtures, result.candidates,
                                  [result.best_ratios[n] for n in result.candidates], paths["top_ratios"])
    if db is not None:
        from manifests import open_manifest, register_mixture  # noqa: PLC0415
        with open_manifest(db, read_only=False) as con:
            for r in rows:
                ratios = {n: r[f"ratio/{n}"] for n in result.candidates}
                method = "demix-search" if r["name"].endswith("/best") else "demix-proxy"
                register_mixture(con, r["name"], "candidate", ratios, method, r["objective"])
    return paths


def _summary(result: SearchResult, paths: dict[str, Path], name: str) -> None:
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    console = Console(file=sys.stdout)
    table = Table(title=f"search {name}: {len(result.evaluated) + 1} proxies in {result.seconds:.1f}s "
                        f"({(len(result.evaluated) + 1) / max(result.seconds, 1e-9):.2f} proxies/s)")
    table.add_column("candidate")
    table.add_column("best mixture", justify="right")
    table.add_column("best measured", justify="right")
    best_eval = (max if result.objective.maximize else min)(result.evaluated, key=lambda e: e["objective"])
    for n in result.candidates:
        table.add_row(n, f"{result.best_ratios[n]:.4f}", f"{best_eval['ratios'][n]:.4f}")
    table.add_row(f"objective ({result.objective.spec})", f"{result.best_objective:.4f}", f"{best_eval['objective']:.4f}")
    console.print(table)
    for h in result.history:
        console.print(f"iteration {h['iteration']}: {h['evaluated']} proxies, best so far {h['best_measured']:.4f}")
    for key, p in paths.items():
        console.print(f"{key}: {p}")


def cmd_search(args: argparse.Namespace) -> int:
    """Handler of `proxy search`; returns an exit code."""
    from proxy.evaluate import ValidationSet, evaluate_model, flat_metrics  # noqa: PLC0415
    from proxy.predictor import PredictorSettings  # noqa: PLC0415
    from proxy.proxies import ProxyFactory  # noqa: PLC0415
    from proxy.weights import load_components  # noqa: PLC0415

    comps = load_components(args.components, budget=args.budget)
    db = args.db or comps.db
    if db is None:
        print("error: --db is required (components.json names no manifest)", file=sys.stderr)
        return 2
    settings = SearchSettings(iterations=args.iterations, per_iteration=args.per_iteration, pool=args.pool,
                              seed=args.seed, top_k=args.top_k, rank_by=args.rank_by, final=args.final,
                              predictor=PredictorSettings(kind=args.predictor, seed=args.seed))
    objective = Objective(args.objective, maximize=args.maximize)
    name = args.name or f"search-seed{args.seed}"
    done = Path(args.out) / "best_mixture.json"
    if done.exists() and not args.overwrite:
        prov = json.loads(done.read_text()).get("provenance", {})
        if prov.get("settings") == json.loads(json.dumps(asdict(settings))) and \
                prov.get("objective") == asdict(objective) and prov.get("components") == [str(p) for p in comps.paths]:
            print(f"{done}: a finished search with the same settings; kept (pass --overwrite to rerun)",
                  file=sys.stderr)
            return 0
        print(f"error: {done} holds a search with other settings (pass --overwrite to replace it)", file=sys.stderr)
        return 1
    prior = search_prior(db, comps.names, args.prior)
    vset = ValidationSet.from_manifest(db, args.tokens_per_domain, args.seq_len)
    factory = ProxyFactory(comps, device=args.device)

    def score_fn(ratios: dict[str, float]) -> dict[str, float]:
        return flat_metrics(evaluate_model(factory.proxy(ratios), vset, batch_size=args.batch_size))

    Objective.resolve(objective, [f"bpb/{d}" for d in vset.domain_names] + [f"loss/{d}" for d in vset.domain_names])
    t0 = time.perf_counter()
    result = run_search(score_fn, comps.names, prior, objective, settings, progress=not args.json)
    result.extra_provenance["components"] = [str(p) for p in comps.paths]
    # the components' general share: `mixer resolve` materialises g * general + (1 - g) * alpha from it
    result.extra_provenance.update(comps.general_provenance())
    paths = write_outputs(result, args.out, name, db if not args.no_register else None)
    if args.json:
        print(json.dumps({"name": name, "best_ratios": result.best_ratios, "best_objective": result.best_objective,
                          "predicted_objective": result.predicted_best_objective, "n_evaluated": len(result.evaluated) + 1,
                          "seconds": time.perf_counter() - t0, "outputs": {k: str(v) for k, v in paths.items()}}))
    else:
        _summary(result, paths, name)
    return 0


def add_search_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `proxy search`."""
    p.add_argument("--components", required=True, help="components dir (components.json)")
    p.add_argument("--db", default=None, help="manifest.duckdb or corpus folder (default: components.json's db)")
    p.add_argument("--objective", default="bpb",
                   help="'bpb' (mean bits/byte over domains), or weights like 'general:0.5,code:0.25,math:0.25'")
    p.add_argument("--maximize", action="store_true", help="higher objective is better (accuracies)")
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--per-iteration", type=int, default=64, help="proxies in iteration 1; halved each iteration")
    p.add_argument("--pool", type=int, default=200_000, help="sampled mixtures the predictor ranks")
    p.add_argument("--top-k", type=int, default=128, help="top predicted mixtures averaged into the final one")
    p.add_argument("--rank-by", choices=("percentile", "value"), default="percentile")
    p.add_argument("--final", choices=FINAL_CHOICES, default="average",
                   help="the mixture written to best_mixture.json: average = the mean of the top-k predicted "
                        "(PAPER.md, default); best = the best evaluated proxy; auto = whichever of the two "
                        "measured better")
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

