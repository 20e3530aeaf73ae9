"""Mixture search (docs/method.md steps 5-6): sample a pool, evaluate proxies, fit predictors, evaluate the top, repeat.

`run_search(score_fn, ...)` works for any `score_fn(ratios) -> {metric: value}`; `proxy search` plugs in
in-memory merged proxies scored on held-out bits per byte.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from proxy.errors import ProxyError
from proxy.mixture_sampling import SamplingSettings, sample_mixtures
from proxy.predictor import MetricPredictor, PredictorSettings

ScoreFn = Callable[[dict[str, float]], Mapping[str, float]]


@dataclass(frozen=True)
class Objective:
    """A weighted combination of metrics. Spec terms `name[:weight]`: a metric name, a domain (its `bpb/<domain>`),
    or a metric family (`bpb`, `loss`: every `<family>/*` metric, equal weights)."""

    spec: str = "bpb"
    maximize: bool = False

    def resolve(self, metric_names: Sequence[str]) -> dict[str, float]:
        """{metric: weight} (weights sum to 1) for the metrics at hand; raises ValueError naming an unknown term."""
        weights: dict[str, float] = {}
        for term in (t.strip() for t in self.spec.split(",") if t.strip()):
            name, _, w = term.partition(":")
            try:
                weight = float(w) if w else 1.0
            except ValueError:
                raise ProxyError(f"objective {self.spec!r}: weight {w!r} of {name!r} is not a number") from None
            if name in metric_names:
                matched = [name]
            elif f"bpb/{name}" in metric_names:
                matched = [f"bpb/{name}"]
            else:
                matched = [m for m in metric_names if m.startswith(f"{name}/")]
            if not matched:
                raise ProxyError(f"objective {self.spec!r}: {name!r} matches no metric of {sorted(metric_names)}")
            for m in matched:
                weights[m] = weights.get(m, 0.0) + weight / len(matched)
        total = sum(weights.values())
        if total <= 0:
            raise ProxyError(f"objective {self.spec!r}: weights must sum to a positive number")
        return {m: w / total for m, w in weights.items()}

    def value(self, metrics: Mapping[str, float], weights: Mapping[str, float]) -> float:
        """The weighted objective of measured (or predicted) metrics."""
        return float(sum(w * float(metrics[m]) for m, w in weights.items()))


FINAL_CHOICES = ("average", "best", "auto")


@dataclass(frozen=True)
class SearchSettings:
    """Search schedule: iteration 1 evaluates per_iteration random pool mixtures, iteration i per_iteration/2^(i-1)."""

    iterations: int = 3
    per_iteration: int = 64
    pool: int = 200_000
    seed: int = 0
    top_k: int = 128
    rank_by: str = "percentile"
    final: str = "average"  # average (docs/method.md: mean of the top_k predicted) | best (best evaluated) | auto (better measured)
    predictor: PredictorSettings = field(default_factory=PredictorSettings)
    sampling: SamplingSettings = field(default_factory=SamplingSettings)

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.per_iteration < 2:
            raise ProxyError(
                f"iterations ({self.iterations}) must be >= 1 and per_iteration ({self.per_iteration}) >= 2"
            )
        if self.rank_by not in ("percentile", "value"):
            raise ProxyError(f"rank_by: {self.rank_by!r} is not one of percentile, value")
        if self.final not in FINAL_CHOICES:
            raise ProxyError(f"final: {self.final!r} is not one of {', '.join(FINAL_CHOICES)}")

    def batch_sizes(self) -> list[int]:
        """Proxies evaluated in each iteration (halving, at least 1)."""
        return [max(1, self.per_iteration // 2**i) for i in range(self.iterations)]


@dataclass
class SearchResult:
    """Everything a search found: the final mixture, every evaluated proxy, and the per-iteration history."""

    candidates: tuple[str, ...]
    best_ratios: dict[str, float]
    best_metrics: dict[str, float]
    best_objective: float
    predicted_best_objective: float
    objective_weights: dict[str, float]
    evaluated: list[dict[str, Any]]
    history: list[dict[str, Any]]
    top_mixtures: np.ndarray
    settings: SearchSettings
    objective: Objective
    seconds: float = 0.0
    extra_provenance: dict[str, Any] = field(default_factory=dict)
    average: dict[str, Any] | None = None  # the averaged top-k mixture's evaluation when it was not chosen

    def provenance(self) -> dict[str, Any]:
        """JSON-ready settings and scores for the best mixture's provenance."""
        return {
            "method": "demix-search",
            "seed": self.settings.seed,
            "objective": asdict(self.objective),
            "objective_weights": self.objective_weights,
            "settings": asdict(self.settings),
            "measured_objective": self.best_objective,
            "predicted_objective": self.predicted_best_objective,
            "measured_metrics": self.best_metrics,
            "n_evaluated": len(self.evaluated),
            "history": self.history,
            "final_choice": "average" if self.average is None else "best evaluated",
            **(
                {}
                if self.average is None
                else {"average_objective": self.average["objective"], "average_ratios": self.average["ratios"]}
            ),
            **self.extra_provenance,
        }


def rank_scores(
    preds: Mapping[str, np.ndarray], weights: Mapping[str, float], maximize: bool, rank_by: str
) -> np.ndarray:
    """Higher-is-better ranking score per pool row: weighted mean percentile of the predictions (or their value)."""
    sign = 1.0 if maximize else -1.0
    if rank_by == "value" or len(weights) == 1:
        return sign * sum(w * preds[m] for m, w in weights.items())
    n = next(iter(preds.values())).shape[0]
    score = np.zeros(n)
    for m, w in weights.items():
        order = np.argsort(sign * preds[m], kind="stable")
        pct = np.empty(n)
        pct[order] = np.arange(n) / max(n - 1, 1)
        score += w * pct
    return score


def _fit(x: np.ndarray, ys: Mapping[str, np.ndarray], settings: PredictorSettings) -> dict[str, MetricPredictor]:
    return {m: MetricPredictor(settings).fit(x, y) for m, y in ys.items()}


def run_search(
    score_fn: ScoreFn,
    candidates: Sequence[str],
    prior_tokens: Sequence[int] | Mapping[str, int],
    objective: Objective | str = "bpb",
    settings: SearchSettings = SearchSettings(),
    progress: bool = True,
) -> SearchResult:
    """Search mixtures over `candidates`; score_fn(ratios) -> {metric: value}. Deterministic for settings.seed.

    Raises ValueError on a bad objective or prior.
    """
    t0 = time.perf_counter()
    objective = Objective(objective) if isinstance(objective, str) else objective
    names = tuple(candidates)
    prior = [int(prior_tokens[n]) for n in names] if isinstance(prior_tokens, Mapping) else list(prior_tokens)
    if len(prior) != len(names):
        raise ProxyError(f"prior: {len(prior)} counts for {len(names)} candidates")
    pool = sample_mixtures(prior, settings.pool, settings.seed, settings.sampling)
    rng = np.random.default_rng(settings.seed + 1)
    evaluated: list[dict[str, Any]] = []
    evaluated_idx: set[int] = set()
    history: list[dict[str, Any]] = []
    weights: dict[str, float] = {}
    preds: dict[str, np.ndarray] = {}
    sizes = settings.batch_sizes()
    bar = tqdm(total=sum(sizes) + 1, unit="proxy", disable=not progress, desc="search")

    def evaluate(ratios: np.ndarray, iteration: int, predicted: float) -> dict[str, Any]:
        nonlocal weights
        mix = {n: float(r) for n, r in zip(names, ratios)}
        metrics = {k: float(v) for k, v in score_fn(mix).items()}
        if not weights:
            weights = objective.resolve(list(metrics))
        bar.update(1)
        bar.set_postfix(proxies_per_s=f"{bar.n / max(time.perf_counter() - t0, 1e-9):.2f}")
        return {
            "iteration": iteration,
            "ratios": mix,
            "metrics": metrics,
            "objective": objective.value(metrics, weights),
            "predicted": predicted,
        }

    for it, size in enumerate(sizes, start=1):
        if it == 1:
            picks = rng.choice(pool.shape[0], size=min(size, pool.shape[0]), replace=False)
            predicted = np.full(len(picks), np.nan)
        else:
            score = rank_scores(preds, weights, objective.maximize, settings.rank_by)
            order = [i for i in np.argsort(-score, kind="stable") if i not in evaluated_idx]
            picks = np.array(order[:size], dtype=np.int64)
            predicted = sum(w * preds[m][picks] for m, w in weights.items())
        for idx, pred in zip(picks, predicted):
            evaluated_idx.add(int(idx))
            evaluated.append(evaluate(pool[idx], it, float(pred)))
        x = np.array([[e["ratios"][n] for n in names] for e in evaluated])
        ys = {m: np.array([e["metrics"][m] for e in evaluated]) for m in weights}
        models = _fit(x, ys, settings.predictor)
        preds = {m: model.predict(pool) for m, model in models.items()}
        objs = [e["objective"] for e in evaluated]
        best = max(objs) if objective.maximize else min(objs)
        history.append(
            {
                "iteration": it,
                "evaluated": len(picks),
                "best_measured": best,
                "best_in_iteration": (max if objective.maximize else min)(objs[-len(picks) :]),
            }
        )

    score = rank_scores(preds, weights, objective.maximize, settings.rank_by)
    top = np.argsort(-score, kind="stable")[: min(settings.top_k, pool.shape[0])]
    best_vec = pool[top].mean(axis=0)
    best_vec = best_vec / best_vec.sum()
    predicted_best = predict_objective(models, weights, best_vec)
    final = evaluate(best_vec, settings.iterations + 1, predicted_best)
    bar.close()
    average = None
    better = max if objective.maximize else min  # on a tie the first (the averaged mixture) is kept
    best_eval = better(evaluated, key=lambda e: e["objective"])
    auto_switch = settings.final == "auto" and better(final, best_eval, key=lambda e: e["objective"]) is not final
    if settings.final == "best" or auto_switch:
        average, final = final, best_eval
    predicted = final["predicted"]
    if math.isnan(predicted):  # a first-iteration pick was evaluated before any predictor existed
        predicted = predict_objective(models, weights, np.array([final["ratios"][n] for n in names]))
    return SearchResult(
        candidates=names,
        best_ratios=final["ratios"],
        best_metrics=final["metrics"],
        best_objective=final["objective"],
        predicted_best_objective=predicted,
        objective_weights=weights,
        evaluated=evaluated,
        history=history,
        top_mixtures=pool[top],
        settings=settings,
        objective=objective,
        seconds=time.perf_counter() - t0,
        average=average,
    )


def predict_objective(models: Mapping[str, MetricPredictor], weights: Mapping[str, float], ratios: np.ndarray) -> float:
    """The fitted predictors' weighted objective for one mixture (a ratio vector in candidate order)."""
    return float(sum(w * models[m].predict(ratios[None, :])[0] for m, w in weights.items()))


def evaluated_table(result: SearchResult, prefix: str) -> Any:
    """Every evaluated mixture (the final one last, named <prefix>/best) as a pyarrow Table: name, iteration,
    ratio/<candidate>, metrics, objective, predicted_objective (the prediction made before it was evaluated)."""
    final = {
        "iteration": result.settings.iterations + 1,
        "ratios": result.best_ratios,
        "metrics": result.best_metrics,
        "objective": result.best_objective,
        "predicted": result.predicted_best_objective,
    }
    extra = [] if result.average is None else [result.average]  # the averaged mixture, evaluated but not chosen
    rows = [*result.evaluated, *extra, final]
    names = [f"{prefix}/eval-{i:04d}" for i in range(len(result.evaluated))] + [f"{prefix}/average"] * len(extra)
    cols: dict[str, Any] = {
        "name": names + [f"{prefix}/best"],
        "iteration": pa.array([r["iteration"] for r in rows], pa.int32()),
    }
    for n in result.candidates:
        cols[f"ratio/{n}"] = [r["ratios"][n] for r in rows]
    for m in sorted(rows[0]["metrics"]):
        cols[m] = [r["metrics"][m] for r in rows]
    cols["objective"] = [r["objective"] for r in rows]
    cols["predicted_objective"] = [None if math.isnan(r["predicted"]) else r["predicted"] for r in rows]
    return pa.table(cols)
