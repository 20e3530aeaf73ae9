"""Rank consistency of proxies against reference models trained on the same mixtures (docs/method.md step 7).

Reports Spearman rho between proxy and reference scores on the objective and per metric (their mean is the
macro rho), Spearman within the best 25% of mixtures by reference objective, and the maintain ratio
(sum of proxy objective / sum of reference objective).

A metric's direction comes from its family, the part of its name before the first "/" (exact match,
never a substring: "acc/supplementary_math" is an accuracy): lower is better for bpb, bpb_source,
bpb_candidate, bpb_task, suite_loss, loss, nll, ppl and perplexity; higher is better for acc, acc_norm, exact_match, pass@1,
pass@k, f1, em, score and suite (a suite's combined domain score). Any other family needs --lower-is-better or --higher-is-better, and metrics
of both directions in one comparison are an error (their mean would be meaningless).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from corpus.atomic import write_json_atomic
from proxy.errors import ProxyError
from proxy.plots import plot_rank_scatter

NAME_COLUMNS = ("name", "mixture")
SKIP_COLUMNS = ("iteration", "objective", "predicted_objective")
LOWER_IS_BETTER = ("bpb", "bpb_source", "bpb_candidate", "bpb_task", "suite_loss", "loss", "nll", "ppl", "perplexity")
HIGHER_IS_BETTER = ("acc", "acc_norm", "exact_match", "pass@1", "pass@k", "f1", "em", "score", "suite")


@dataclass(frozen=True)
class RankConsistency:
    """Rank-consistency metrics of one proxy table against one reference table."""

    n_mixtures: int
    objective_metrics: tuple[str, ...]
    lower_is_better: bool
    spearman: float
    spearman_top25: float
    n_top25: int
    maintain: float
    per_metric: dict[str, float]
    macro_spearman: float


def read_scores(path: str | os.PathLike) -> dict[str, dict[str, float]]:
    """{mixture name: {metric: value}} from a Parquet/CSV/JSON file or a folder of them; raises ValueError."""
    import polars as pl  # noqa: PLC0415 - heavy, imported when used

    path = Path(path)
    if not path.exists():
        raise ProxyError(f"{path}: no such score table or folder")
    files = sorted(p for p in path.iterdir() if p.suffix in (".parquet", ".csv", ".json")) if path.is_dir() else [path]
    if not files:
        raise ProxyError(f"{path}: no .parquet, .csv or .json score tables")
    out: dict[str, dict[str, float]] = {}
    for f in files:
        try:
            if f.suffix == ".json":
                data = json.loads(f.read_text())
                if isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()):
                    data = [{"name": k, **v} for k, v in data.items()]
                frame = pl.DataFrame(data if isinstance(data, list) else data)
            elif f.suffix == ".csv":
                frame = pl.read_csv(f)
            else:
                frame = pl.read_parquet(f)
        except (OSError, UnicodeDecodeError, ValueError, TypeError, pl.exceptions.PolarsError) as e:
            # a score table we cannot parse is the user's file, not a bug: name it in one line
            raise ProxyError(
                f"{f}: not a readable score table ({type(e).__name__}: {str(e).splitlines()[0]})"
            ) from None
        name_col = next((c for c in NAME_COLUMNS if c in frame.columns), None)
        if name_col is None:
            raise ProxyError(f"{f}: no mixture name column (one of {', '.join(NAME_COLUMNS)})")
        numeric = [c for c, t in frame.schema.items() if c != name_col and t.is_numeric()]
        for row in frame.select([name_col, *numeric]).to_dicts():
            name = str(row.pop(name_col))
            if name in out:
                raise ProxyError(f"{f}: mixture {name!r} appears twice")
            out[name] = {k: float(v) for k, v in row.items() if v is not None}
    return out


def metric_direction(metric: str) -> str | None:
    """ "lower" or "higher" (is better) from the metric's family (the name before the first "/"); None if unknown."""
    family = metric.split("/", 1)[0].lower()
    if family in LOWER_IS_BETTER:
        return "lower"
    if family in HIGHER_IS_BETTER:
        return "higher"
    return None


def objective_direction(metrics: Sequence[str], lower_is_better: bool | None = None) -> bool:
    """True when lower is better for all ``metrics``; raises ValueError naming unknown or mixed directions."""
    if lower_is_better is not None:
        return lower_is_better
    directions = {m: metric_direction(m) for m in metrics}
    unknown = [m for m, d in directions.items() if d is None]
    if unknown:
        raise ProxyError(
            f"metric {unknown[0]!r}: direction unknown (family {unknown[0].split('/', 1)[0]!r}); "
            "pass --lower-is-better or --higher-is-better"
        )
    if len(set(directions.values())) > 1:
        lower = [m for m, d in directions.items() if d == "lower"]
        higher = [m for m, d in directions.items() if d == "higher"]
        raise ProxyError(
            f"metrics mix directions: {lower[0]!r} is lower-is-better, {higher[0]!r} higher-is-better; "
            "compare one direction at a time with --metrics"
        )
    return next(iter(directions.values())) == "lower"


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties); NaN for fewer than 3 points or a constant side."""
    from scipy.stats import spearmanr  # noqa: PLC0415 - heavy, imported when used

    if len(a) < 3:
        return float("nan")
    if np.ptp(np.asarray(a, float)) == 0 or np.ptp(np.asarray(b, float)) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def rank_consistency(
    references: dict[str, dict[str, float]],
    proxies: dict[str, dict[str, float]],
    metrics: Sequence[str] | None = None,
    lower_is_better: bool | None = None,
) -> RankConsistency:
    """Compare proxy to reference scores on the mixtures both have; raises ValueError when too little overlaps."""
    names = sorted(set(references) & set(proxies))
    if len(names) < 3:
        raise ProxyError(f"only {len(names)} mixtures appear in both tables (need >= 3): {names}")
    common = set.intersection(*(set(references[n]) & set(proxies[n]) for n in names))
    if metrics is None:
        metrics = sorted(m for m in common if m not in SKIP_COLUMNS and not m.startswith("ratio/"))
        bpb = [m for m in metrics if m.startswith("bpb/")]
        metrics = bpb or metrics
    missing = [m for m in metrics if m not in common]
    if missing or not metrics:
        raise ProxyError(f"metrics {missing or list(metrics)} are not in both tables (common: {sorted(common)})")
    lower = objective_direction(metrics, lower_is_better)
    ref = np.array([[references[n][m] for m in metrics] for n in names])
    prx = np.array([[proxies[n][m] for m in metrics] for n in names])
    ref_obj, prx_obj = ref.mean(axis=1), prx.mean(axis=1)
    per_metric = {m: spearman(ref[:, j], prx[:, j]) for j, m in enumerate(metrics)}
    n_top = max(3, int(math.ceil(len(names) / 4)))
    order = np.argsort(ref_obj if lower else -ref_obj, kind="stable")[:n_top]
    finite = [v for v in per_metric.values() if not math.isnan(v)]
    return RankConsistency(
        n_mixtures=len(names),
        objective_metrics=tuple(metrics),
        lower_is_better=lower,
        spearman=spearman(ref_obj, prx_obj),
        spearman_top25=spearman(ref_obj[order], prx_obj[order]),
        n_top25=len(order),
        maintain=float(prx_obj.sum() / ref_obj.sum()) if ref_obj.sum() != 0 else float("nan"),
        per_metric=per_metric,
        macro_spearman=float(np.mean(finite)) if finite else float("nan"),
    )


def validate_tables(
    references: str | os.PathLike,
    proxies: str | os.PathLike,
    metrics: Sequence[str] | None = None,
    lower_is_better: bool | None = None,
    out: str | os.PathLike | None = None,
) -> RankConsistency:
    """`proxy validate`: rank consistency of the proxy score table against the reference one.

    With `out`, also writes <out>/rank_consistency.json and <out>/rank_scatter.png. Raises ProxyError.
    """
    refs, prox = read_scores(references), read_scores(proxies)
    rc = rank_consistency(refs, prox, metrics, lower_is_better)
    if out:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        names = sorted(set(refs) & set(prox))
        plot_rank_scatter(
            [float(np.mean([refs[n][m] for m in rc.objective_metrics])) for n in names],
            [float(np.mean([prox[n][m] for m in rc.objective_metrics])) for n in names],
            out / "rank_scatter.png",
            f"proxy vs reference (rho={rc.spearman:.3f})",
        )
        write_json_atomic(out / "rank_consistency.json", asdict(rc))
    return rc
