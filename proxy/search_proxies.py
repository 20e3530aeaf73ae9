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

from corpus.errors import UsageError
from manifests import list_sources, open_manifest, register_mixture
from mixer import Mixture
from proxy import plots
from proxy.errors import ProxyError
from proxy.search import FINAL_CHOICES, Objective, SearchResult, SearchSettings, evaluated_table, run_search


def candidate_tokens(db: str | os.PathLike) -> dict[str, int]:
    """Train tokens per candidate (sources.candidate) from the manifest; sources with no candidate are skipped."""
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

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"best_mixture": out / "best_mixture.json", "evaluated": out / "evaluated.parquet",
             "predicted_vs_measured": out / "predicted_vs_measured.png",
             "best_by_iteration": out / "best_by_iteration.png", "top_ratios": out / "top_ratios.png"}
    doc = {"name": name, "level": "candidate", "ratios": result.best_ratios, "provenance": result.provenance()}
    Mixture.from_dict(doc, file=str(paths["best_mixture"])).save(paths["best_mixture"])
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


def _cached_scores(path: Path, names: tuple[str, ...]) -> dict[tuple[float, ...], dict[str, float]]:
    """Scores of proxies a previous search wrote to evaluated.parquet, keyed by their ratios (12 digits)."""
    import pyarrow.parquet as pq  # noqa: PLC0415

    if not path.is_file():
        return {}
    out = {}
    for row in pq.read_table(path).to_pylist():
        if all(f"ratio/{n}" in row for n in names):
            out[tuple(round(float(row[f"ratio/{n}"]), 12) for n in names)] = row
    return out


def _expected_metrics(vset, suite) -> list[str]:
    """Every metric name one proxy's evaluation produces (held-out bpb and, with a suite, its columns)."""
    names = [f"{f}/{d.domain}" for d in vset.domains for f in ("bpb", "loss")]
    names += [f"bpb_source/{s}" for d in vset.domains for s in d.sources]
    names += [f"bpb_candidate/{c}" for c in sorted({c for s, c in vset.candidate_of
                                                    if any(s in d.sources for d in vset.domains)})]
    if suite is not None:
        names += [t.column(m) for t in suite.tasks for m in (t.metric, *t.also)]
        names += [suite.domain_column(d) for d in suite.domains]
    return names


def _suite_objective(args: argparse.Namespace, suite) -> tuple[Objective, str]:
    """The search objective and rank_by: "bpb" (held-out), "suite" (the suite's domain scores) or a spec."""
    rank_by = args.rank_by or "percentile"
    if args.objective != "suite":
        return Objective(args.objective, maximize=args.maximize), rank_by
    if suite is None:
        raise UsageError("--objective suite needs --suite NAME")
    if suite.direction is None:
        raise UsageError(f"--objective suite: suite {suite.name!r} mixes directions over domains; name its domain "
                         "columns one direction at a time with --objective")
    maximize = suite.direction == "higher"
    if args.maximize and not maximize:
        raise UsageError(f"--maximize: suite {suite.name!r} scores are lower-is-better ({suite.file})")
    spec = ",".join(suite.domain_column(d) for d in suite.domains)
    # docs/method.md step 6: mixtures ranked by the mean percentile over domains (combine: mean_percentile)
    return Objective(spec, maximize=maximize), args.rank_by or ("percentile" if suite.combine == "mean_percentile"
                                                                  else "value")


def cmd_search(args: argparse.Namespace) -> int:
    """Handler of `proxy search`; returns an exit code."""
    import torch  # noqa: PLC0415

    from proxy.benchmarks import SuiteRunner, default_cache, load_tokenizer_for, prepare_suite  # noqa: PLC0415
    from proxy.evaluate import ValidationSet, evaluate_model, flat_metrics  # noqa: PLC0415
    from proxy.predictor import PredictorSettings  # noqa: PLC0415
    from proxy.proxies import ProxyFactory  # noqa: PLC0415
    from proxy.suite import load_suite  # noqa: PLC0415
    from proxy.weights import load_components  # noqa: PLC0415

    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit {args.limit}: expected at least 1 sample per task")
    comps = load_components(args.components, budget=args.budget)
    db = args.db or comps.db
    if db is None:
        raise UsageError("--db is required (components.json names no manifest)")
    suite = load_suite(args.suite) if args.suite else None  # a bad suite is refused before any model loads
    objective, rank_by = _suite_objective(args, suite)
    settings = SearchSettings(iterations=args.iterations, per_iteration=args.per_iteration, pool=args.pool,
                              seed=args.seed, top_k=args.top_k, rank_by=rank_by, final=args.final,
                              predictor=PredictorSettings(kind=args.predictor, seed=args.seed))
    name = args.name or f"search-seed{args.seed}"
    done = Path(args.out) / "best_mixture.json"
    if done.exists() and not args.overwrite:
        prov = json.loads(done.read_text()).get("provenance", {})
        if prov.get("settings") == json.loads(json.dumps(asdict(settings))) and \
                prov.get("objective") == asdict(objective) and prov.get("components") == [str(p) for p in comps.paths] \
                and prov.get("suite") == (suite.name if suite else None):
            print(f"{done}: a finished search with the same settings; kept (pass --overwrite to rerun)",
                  file=sys.stderr)
            return 0
        raise ProxyError(f"{done} holds a search with other settings (pass --overwrite to replace it)")
    prior = search_prior(db, comps.names, args.prior)
    prepared = None
    if suite is not None:
        prepared = prepare_suite(suite, args.suite_cache or default_cache(suite, db, args.seed), db, seed=args.seed)
    vset = ValidationSet.from_manifest(db, args.tokens_per_domain, args.seq_len)
    factory = ProxyFactory(comps, device=args.device, dtype=getattr(torch, args.dtype))
    runner = None
    if prepared is not None:  # one harness wrapper around the factory's model: each proxy rewrites its weights
        runner = SuiteRunner(prepared, factory.model, load_tokenizer_for(comps.paths[0], db),
                             batch_size=args.batch_size, device=str(factory.device), limit=args.limit)
    expected = _expected_metrics(vset, suite)
    cached = _cached_scores(Path(args.out) / "evaluated.parquet", comps.names)
    reused = 0

    def score_fn(ratios: dict[str, float]) -> dict[str, float]:
        nonlocal reused
        row = cached.get(tuple(round(float(ratios[n]), 12) for n in comps.names))
        if row is not None and all(row.get(m) is not None for m in expected):  # scored by an earlier run
            reused += 1
            return {m: float(row[m]) for m in expected}
        metrics = flat_metrics(evaluate_model(factory.proxy(ratios), vset, batch_size=args.batch_size))
        if runner is not None:
            metrics.update(runner.score())
        return metrics

    Objective.resolve(objective, expected)
    t0 = time.perf_counter()
    result = run_search(score_fn, comps.names, prior, objective, settings, progress=not args.json)
    result.extra_provenance["components"] = [str(p) for p in comps.paths]
    if suite is not None:
        result.extra_provenance.update({"suite": suite.name, "suite_file": suite.file, "suite_limit": args.limit,
                                        "suite_combine": suite.combine})
    # the components' general share: `mixer resolve` materialises g * general + (1 - g) * alpha from it
    result.extra_provenance.update(comps.general_provenance())
    paths = write_outputs(result, args.out, name, db if not args.no_register else None)
    if args.json:
        print(json.dumps({"name": name, "best_ratios": result.best_ratios, "best_objective": result.best_objective,
                          "predicted_objective": result.predicted_best_objective, "n_evaluated": len(result.evaluated) + 1,
                          "reused_scores": reused, "suite_seconds": runner.seconds if runner else 0.0,
                          "seconds": time.perf_counter() - t0, "outputs": {k: str(v) for k, v in paths.items()}}))
    else:
        _summary(result, paths, name)
        if reused:
            print(f"{reused} proxies' scores reused from {paths['evaluated']}")
    return 0


def add_search_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `proxy search`."""
    p.add_argument("--components", required=True, help="components dir (components.json)")
    p.add_argument("--db", default=None, help="manifest.duckdb or corpus folder (default: components.json's db)")
    p.add_argument("--objective", default="bpb",
                   help="'bpb' (mean held-out bits/byte over domains), 'suite' (the --suite's domain scores, its "
                        "direction), or weights like 'general:0.5,code:0.25,math:0.25'")
    p.add_argument("--suite", default=None,
                   help="benchmark suite run through lm-eval on every proxy: a shipped name (offline, demix_paper) "
                        "or a suite YAML; its per-task and per-domain scores go to evaluated.parquet")
    p.add_argument("--suite-cache", default=None, help="folder for the suite's generated task files "
                   "(default ~/.cache/demix/suites/<suite>-<hash>)")
    p.add_argument("--limit", type=int, default=None, help="samples per suite task (quick runs)")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                   help="proxy weights (bfloat16 on GPUs)")
    p.add_argument("--maximize", action="store_true", help="higher objective is better (accuracies)")
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--per-iteration", type=int, default=64, help="proxies in iteration 1; halved each iteration")
    p.add_argument("--pool", type=int, default=200_000, help="sampled mixtures the predictor ranks")
    p.add_argument("--top-k", type=int, default=128, help="top predicted mixtures averaged into the final one")
    p.add_argument("--rank-by", choices=("percentile", "value"), default=None,
                   help="how predictions rank (default percentile; with --objective suite, the suite's combine)")
    p.add_argument("--final", choices=FINAL_CHOICES, default="average",
                   help="the mixture written to best_mixture.json: average = the mean of the top-k predicted "
                        "(docs/method.md, default); best = the best evaluated proxy; auto = whichever of the two "
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

