"""`proxy search` over merged proxies: prior from the manifest, proxies in memory, outputs and plots.

proxy.search holds the search loop for any score function; this module plugs in the DeMix proxies
(proxy.proxies.ProxyFactory scored by proxy.evaluate, and a benchmark suite) and owns the search outputs
(best_mixture.json, evaluated.parquet, the PNG plots, the manifest's mixtures rows).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow.parquet as pq
import torch

from corpus.atomic import atomic_write
from corpus.errors import UsageError
from manifests import list_sources, open_manifest, register_mixture
from mixer import Mixture
from proxy import plots
from proxy.benchmarks import (
    SuiteRunner,
    default_cache,
    load_tokenizer_for,
    prepare_suite,
)
from proxy.components import load_components
from proxy.errors import ProxyError
from proxy.evaluate import ValidationSet, evaluate_model, flat_metrics
from proxy.predictor import PredictorSettings
from proxy.proxies import ProxyFactory
from proxy.search import (
    Objective,
    SearchResult,
    SearchSettings,
    evaluated_table,
    run_search,
)
from proxy.suite import Suite, load_suite


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
        raise ProxyError(
            f"{db}: no train tokens for candidates {missing} (manifest candidates: {sorted(tokens)}); "
            "name components after sources.candidate or pass --prior uniform"
        )
    return {n: tokens[n] for n in names}


def output_paths(out: str | os.PathLike) -> dict[str, Path]:
    """Where a search in `out` writes its outputs, by name."""
    out = Path(out)
    return {
        "best_mixture": out / "best_mixture.json",
        "evaluated": out / "evaluated.parquet",
        "predicted_vs_measured": out / "predicted_vs_measured.png",
        "best_by_iteration": out / "best_by_iteration.png",
        "top_ratios": out / "top_ratios.png",
    }


def write_outputs(
    result: SearchResult, out: str | os.PathLike, name: str, db: str | os.PathLike | None
) -> dict[str, Path]:
    """best_mixture.json, evaluated.parquet, three PNG plots, and the manifest's mixtures rows; returns the paths."""
    paths = output_paths(out)
    Path(out).mkdir(parents=True, exist_ok=True)
    doc = {"name": name, "level": "candidate", "ratios": result.best_ratios, "provenance": result.provenance()}
    Mixture.from_dict(doc, file=str(paths["best_mixture"])).save(paths["best_mixture"])
    table = evaluated_table(result, name)
    with atomic_write(paths["evaluated"], "wb") as f:
        pq.write_table(table, f)
    rows = table.to_pylist()
    plots.plot_predicted_vs_measured(
        [r["predicted_objective"] if r["predicted_objective"] is not None else float("nan") for r in rows],
        [r["objective"] for r in rows],
        [r["iteration"] for r in rows],
        paths["predicted_vs_measured"],
        result.objective.spec,
    )
    plots.plot_best_by_iteration(result.history, paths["best_by_iteration"], result.objective.spec)
    plots.plot_ratio_distribution(
        result.top_mixtures, result.candidates, [result.best_ratios[n] for n in result.candidates], paths["top_ratios"]
    )
    if db is not None:
        with open_manifest(db, read_only=False) as con:
            for r in rows:
                ratios = {n: r[f"ratio/{n}"] for n in result.candidates}
                method = "demix-search" if r["name"].endswith("/best") else "demix-proxy"
                register_mixture(con, r["name"], "candidate", ratios, method, r["objective"])
    return paths


JOURNAL = "scores.partial.jsonl"
"""Every proxy's scores, appended as the search goes (one JSON line each: ``{"ratios": {...}, "metrics":
{...}}``), so an interrupted search resumes without scoring them again; removed once the outputs are written."""


def _ratio_key(ratios: dict[str, float], names: tuple[str, ...]) -> tuple[float, ...]:
    return tuple(round(float(ratios[n]), 12) for n in names)


def _cached_scores(out: Path, names: tuple[str, ...]) -> dict[tuple[float, ...], dict[str, float]]:
    """Scores of proxies an earlier search of `out` made, keyed by their ratios (12 digits): the rows of its
    evaluated.parquet, and the journal of a search that was interrupted (a torn last line is ignored)."""
    found = {}
    if (out / "evaluated.parquet").is_file():
        for row in pq.read_table(out / "evaluated.parquet").to_pylist():
            if all(f"ratio/{n}" in row for n in names):
                found[_ratio_key({n: row[f"ratio/{n}"] for n in names}, names)] = row
    if (out / JOURNAL).is_file():
        for line in (out / JOURNAL).read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # the line being written when the search was killed
                continue
            if set(names) <= entry["ratios"].keys():
                found.setdefault(_ratio_key(entry["ratios"], names), entry["metrics"])
    return found


class _Journal:
    """Appends each new score to <out>/scores.partial.jsonl, flushed to disk before the search goes on."""

    def __init__(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / JOURNAL
        self.file = self.path.open("a", encoding="utf-8")

    def add(self, ratios: dict[str, float], metrics: dict[str, float]) -> None:
        self.file.write(json.dumps({"ratios": {k: float(v) for k, v in ratios.items()}, "metrics": metrics}) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self, remove: bool) -> None:
        self.file.close()
        if remove:
            self.path.unlink(missing_ok=True)


def _expected_metrics(vset: ValidationSet, suite: Suite | None) -> list[str]:
    """Every metric name one proxy's evaluation produces (held-out bpb and, with a suite, its columns)."""
    names = [f"{f}/{d.domain}" for d in vset.domains for f in ("bpb", "loss")]
    names += [f"bpb_source/{s}" for d in vset.domains for s in d.sources]
    names += [
        f"bpb_candidate/{c}"
        for c in sorted({c for s, c in vset.candidate_of if any(s in d.sources for d in vset.domains)})
    ]
    if suite is not None:
        names += [t.column(m) for t in suite.tasks for m in (t.metric, *t.also)]
        names += [suite.domain_column(d) for d in suite.domains]
    return names


def _suite_objective(objective: str, maximize: bool, rank_by: str | None, suite: Suite | None) -> tuple[Objective, str]:
    """The search objective and rank_by: "bpb" (held-out), "suite" (the suite's domain scores) or a spec."""
    chosen_rank_by = rank_by or "percentile"
    if objective != "suite":
        return Objective(objective, maximize=maximize), chosen_rank_by
    if suite is None:
        raise UsageError("--objective suite needs --suite NAME")
    if suite.direction is None:
        raise UsageError(
            f"--objective suite: suite {suite.name!r} mixes directions over domains; name its domain "
            "columns one direction at a time with --objective"
        )
    higher = suite.direction == "higher"
    if maximize and not higher:
        raise UsageError(f"--maximize: suite {suite.name!r} scores are lower-is-better ({suite.file})")
    spec = ",".join(suite.domain_column(d) for d in suite.domains)
    # docs/method.md step 6: mixtures ranked by the mean percentile over domains (combine: mean_percentile)
    return Objective(spec, maximize=higher), rank_by or (
        "percentile" if suite.combine == "mean_percentile" else "value"
    )


@dataclass
class ProxySearch:
    """What `search_with_proxies` did: the search (None when a finished one with the same settings was kept),
    its output paths, and how many proxies' scores an earlier run's evaluated.parquet supplied."""

    name: str
    paths: dict[str, Path]
    result: SearchResult | None = None
    reused: int = 0
    suite_seconds: float = 0.0
    seconds: float = 0.0


def search_with_proxies(
    components: str | os.PathLike,
    out: str | os.PathLike,
    *,
    db: str | os.PathLike | None = None,
    objective: str = "bpb",
    maximize: bool = False,
    suite: str | None = None,
    suite_cache: str | None = None,
    limit: int | None = None,
    dtype: str = "float32",
    iterations: int = 3,
    per_iteration: int = 64,
    pool: int = 200_000,
    top_k: int = 128,
    rank_by: str | None = None,
    final: str = "average",
    predictor: str = "lightgbm",
    prior: str = "manifest",
    seed: int = 0,
    budget: int | None = None,
    tokens_per_domain: int = 20_000,
    seq_len: int = 256,
    batch_size: int = 16,
    device: str | None = None,
    name: str | None = None,
    register: bool = True,
    overwrite: bool = False,
    progress: bool = True,
) -> ProxySearch:
    """`proxy search`: run_search over in-memory merged proxies of `components`, scored on held-out bpb (and a
    benchmark suite); writes best_mixture.json, evaluated.parquet, the plots and (with `register`) the manifest's
    mixtures rows under `out`.

    A finished search in `out` with the same settings is kept (result None); one with other settings is an error
    unless `overwrite`. Proxies already scored in `out` (its evaluated.parquet, or the journal of an interrupted search) are not evaluated again. Raises
    UsageError for a bad combination of inputs, ProxyError / CheckpointError / SuiteError naming a bad input.
    """
    if limit is not None and limit < 1:
        raise UsageError(f"--limit {limit}: expected at least 1 sample per task")
    comps = load_components(components, budget=budget)
    db = db or comps.db
    if db is None:
        raise UsageError("--db is required (components.json names no manifest)")
    loaded = load_suite(suite) if suite else None  # a bad suite is refused before any model loads
    chosen, chosen_rank_by = _suite_objective(objective, maximize, rank_by, loaded)
    settings = SearchSettings(
        iterations=iterations,
        per_iteration=per_iteration,
        pool=pool,
        seed=seed,
        top_k=top_k,
        rank_by=chosen_rank_by,
        final=final,
        predictor=PredictorSettings(kind=predictor, seed=seed),
    )
    name = name or f"search-seed{seed}"
    done = Path(out) / "best_mixture.json"
    if done.exists() and not overwrite:
        prov = json.loads(done.read_text()).get("provenance", {})
        if (
            prov.get("settings") == json.loads(json.dumps(asdict(settings)))
            and prov.get("objective") == asdict(chosen)
            and prov.get("components") == [str(p) for p in comps.paths]
            and prov.get("suite") == (loaded.name if loaded else None)
        ):
            return ProxySearch(name, output_paths(out))
        raise ProxyError(f"{done} holds a search with other settings (pass --overwrite to replace it)")
    prior_tokens = search_prior(db, comps.names, prior)
    prepared = None
    if loaded is not None:
        prepared = prepare_suite(loaded, suite_cache or default_cache(loaded, db, seed), db, seed=seed)
    vset = ValidationSet.from_manifest(db, tokens_per_domain, seq_len)
    factory = ProxyFactory(comps, device=device, dtype=getattr(torch, dtype))
    runner = None
    if prepared is not None:  # one harness wrapper around the factory's model: each proxy rewrites its weights
        runner = SuiteRunner(
            prepared,
            factory.model,
            load_tokenizer_for(comps.paths[0], db),
            batch_size=batch_size,
            device=str(factory.device),
            limit=limit,
        )
    expected = _expected_metrics(vset, loaded)
    cached = _cached_scores(Path(out), comps.names)
    reused = 0
    journal = _Journal(Path(out))

    def score_fn(ratios: dict[str, float]) -> dict[str, float]:
        nonlocal reused
        row = cached.get(_ratio_key(ratios, comps.names))
        if row is not None and all(row.get(m) is not None for m in expected):  # scored by an earlier run
            reused += 1
            return {m: float(row[m]) for m in expected}
        metrics = flat_metrics(evaluate_model(factory.proxy(ratios), vset, batch_size=batch_size))
        if runner is not None:
            metrics.update(runner.score())
        journal.add(ratios, metrics)
        return metrics

    Objective.resolve(chosen, expected)
    t0 = time.perf_counter()
    try:
        result = run_search(score_fn, comps.names, prior_tokens, chosen, settings, progress=progress)
    except BaseException:
        journal.close(remove=False)  # an interrupted search resumes from it
        raise
    result.extra_provenance["components"] = [str(p) for p in comps.paths]
    if loaded is not None:
        result.extra_provenance.update(
            {"suite": loaded.name, "suite_file": loaded.file, "suite_limit": limit, "suite_combine": loaded.combine}
        )
    # the components' general share: `mixer resolve` materialises g * general + (1 - g) * alpha from it
    result.extra_provenance.update(comps.general_provenance())
    paths = write_outputs(result, out, name, db if register else None)
    journal.close(remove=True)  # evaluated.parquet now holds every score
    return ProxySearch(name, paths, result, reused, runner.seconds if runner else 0.0, time.perf_counter() - t0)
