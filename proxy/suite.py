"""Benchmark suites: domains -> lm-eval tasks (each with its metric and direction) and how domain scores combine.

A suite is a small YAML file (``proxy/suites/<name>.yaml`` ships ``demix_paper`` and ``offline``)::

    name: offline
    combine: mean_percentile        # or mean
    build: offline                  # task files generated at run time (proxy/offline_tasks.py); omit for lm-eval's own
    domains:
      general:
        - {task: offline_general_cloze, metric: bpb, direction: lower, also: [acc_norm, acc]}

docs/method.md step 4: a domain's score is the mean of its benchmarks; step 6: mixtures are ranked by the mean
percentile over domains. So the tasks of one domain must share a direction (their mean is the domain score);
``combine: mean`` also needs one direction over the whole suite, ``mean_percentile`` does not (percentiles
are oriented per domain).

Metric names are lm-eval's (``acc``, ``acc_norm``, ``exact_match``, ``pass@1``, ...) plus ``bpb``: bits per
UTF-8 byte of the gold continuation given its context, computed from the harness's own per-sample
log-likelihoods (continuous, so it gives signal where small models sit at chance accuracy).

Score columns (``proxy/validate.py`` reads a direction from the family before the first "/"):
``<metric>/<task>`` for every metric of a task, ``bpb`` written as ``bpb_task/<task>`` (lower is better; kept
apart from the held-out ``bpb/<domain>`` so the default ``bpb`` objective does not pick it up), and one
domain score ``suite/<domain>`` (higher is better) or ``suite_loss/<domain>`` (lower is better).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from corpus.config_check import ConfigChecker, ConfigError, rules
from proxy.errors import ProxyError

SUITES_DIR = Path(__file__).resolve().parent / "suites"
DIRECTIONS = ("higher", "lower")
OUR_METRICS = {"bpb": "lower"}
"""Metrics this toolkit computes from the harness's per-sample log-likelihoods, with their direction."""
KNOWN_DIRECTIONS = {
    "acc": "higher",
    "acc_norm": "higher",
    "acc_bytes": "higher",
    "acc_mutual_info": "higher",
    "exact_match": "higher",
    "pass@1": "higher",
    "pass@10": "higher",
    "f1": "higher",
    "mcc": "higher",
    "perplexity": "lower",
    "word_perplexity": "lower",
    "byte_perplexity": "lower",
    "bits_per_byte": "lower",
    "brier_score": "lower",
    "bpb": "lower",
}
"""Directions of metrics listed under ``also`` (reported, not scored); a primary metric states its own."""
TASK_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.\-]*"


class SuiteError(ProxyError, ConfigError):
    """A suite that cannot run: a bad key, an unknown task, a missing data file; the message names it."""


@dataclass(frozen=True)
class SuiteTask:
    """One lm-eval task of a domain and the metric its domain score takes."""

    task: str = field(metadata=rules(pattern=TASK_NAME, hint="expected an lm-eval task name"))
    """The lm-eval task name (a built-in task, or one of the suite's generated task files)."""
    metric: str = field(metadata=rules(pattern=r"[A-Za-z0-9_@]+", hint="expected a metric name such as acc_norm"))
    """The metric the domain score averages: an lm-eval metric of the task, or ``bpb`` (bits per byte)."""
    direction: Literal["higher", "lower"] | None = None
    """Which way the metric is better; required (a metric without a direction is refused)."""
    also: tuple[str, ...] = ()
    """Further metrics of the task written beside it (e.g. acc_norm beside bpb); not scored."""

    def column(self, metric: str | None = None) -> str:
        """The score column of ``metric`` (default: the scored one), e.g. "acc_norm/arc_easy", "bpb_task/x"."""
        metric = metric or self.metric
        return f"{'bpb_task' if metric == 'bpb' else metric}/{self.task}"


@dataclass(frozen=True)
class Suite:
    """A validated benchmark suite (see the module docstring for the YAML)."""

    name: str = field(metadata=rules(pattern=r"[A-Za-z0-9_\-]+", hint="expected a name of letters, digits, _ and -"))
    """The suite's name (``--suite NAME`` finds ``proxy/suites/NAME.yaml``)."""
    domains: dict[str, tuple[SuiteTask, ...]] = field(metadata=rules(min_items=1))
    """Domain -> its tasks (at least one each)."""
    combine: Literal["mean", "mean_percentile"] = "mean_percentile"
    """How domain scores combine: their mean, or the mean over domains of each proxy's percentile (docs/method.md)."""
    build: Literal["offline"] | None = None
    """``offline``: the task files are generated at run time (proxy.offline_tasks); null: lm-eval's built-in tasks."""
    description: str = ""
    """What the suite measures and what it needs (the Hub, a GPU)."""
    file: str = field(default="", metadata=rules(internal=True))
    """The YAML file it was read from (for messages)."""

    @property
    def tasks(self) -> list[SuiteTask]:
        """Every task of every domain, in domain order."""
        return [t for d in self.domains for t in self.domains[d]]

    def domain_direction(self, domain: str) -> str:
        """ "higher" or "lower" (is better) for a domain's score (its tasks share it)."""
        return self.domains[domain][0].direction or "higher"

    def domain_column(self, domain: str) -> str:
        """ "suite/<domain>" (higher is better) or "suite_loss/<domain>" (lower is better)."""
        return f"{'suite' if self.domain_direction(domain) == 'higher' else 'suite_loss'}/{domain}"

    @property
    def direction(self) -> str | None:
        """The one direction of all domain scores, or None when domains differ (mean_percentile only)."""
        found = {self.domain_direction(d) for d in self.domains}
        return found.pop() if len(found) == 1 else None

    def scores(self, task_metrics: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
        """Score columns of one proxy from {task: {metric: value}}: every task column and every domain score."""
        out: dict[str, float] = {}
        for domain, tasks in self.domains.items():
            values = []
            for t in tasks:
                got = task_metrics.get(t.task, {})
                for metric in (t.metric, *t.also):
                    if metric not in got:
                        raise SuiteError(
                            f"{self.file}: task {t.task!r} reported no {metric!r} "
                            f"(it reported {sorted(got)}); fix the suite's metric"
                        )
                    out[t.column(metric)] = float(got[metric])
                values.append(float(got[t.metric]))
            out[self.domain_column(domain)] = float(np.mean(values))  # docs/method.md step 4: mean of its benchmarks
        return out

    def combined(self, rows: Sequence[Mapping[str, float]]) -> list[float]:
        """The combined score of each row (a proxy's score columns), higher is better for mean_percentile.

        ``mean``: the mean of the row's domain scores (in the suite's one direction). ``mean_percentile``: per
        domain, each row's percentile among ``rows`` (0 = worst, 1 = best, ties share their mean rank), then the
        mean over domains; it needs the whole population, so it is computed over a table, never per proxy.
        """
        columns = [self.domain_column(d) for d in self.domains]
        values = np.array([[float(r[c]) for c in columns] for r in rows], dtype=np.float64).reshape(len(rows), -1)
        if self.combine == "mean":
            return values.mean(axis=1).tolist() if len(rows) else []
        n = len(rows)
        pct = np.zeros_like(values)
        for j, d in enumerate(self.domains):
            oriented = values[:, j] if self.domain_direction(d) == "higher" else -values[:, j]
            pct[:, j] = _average_ranks(oriented) / max(n - 1, 1)
        return pct.mean(axis=1).tolist() if n else []


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """0-based ranks, ties given their mean rank (so equal scores get equal percentiles)."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(len(x), dtype=np.float64)
    for value in np.unique(x):
        tie = x == value
        ranks[tie] = ranks[tie].mean()
    return ranks


def suite_path(name_or_path: str | os.PathLike) -> Path:
    """A shipped suite's file (``offline`` -> proxy/suites/offline.yaml) or a YAML path; raises SuiteError."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise SuiteError(f"{p}: suite file not found")
        return p
    shipped = SUITES_DIR / f"{name_or_path}.yaml"
    if not shipped.is_file():
        known = sorted(f.stem for f in SUITES_DIR.glob("*.yaml"))
        raise SuiteError(f"suite {str(name_or_path)!r}: not a file and not a shipped suite ({', '.join(known)})")
    return shipped


def load_suite(name_or_path: str | os.PathLike) -> Suite:
    """Read and validate a suite YAML; raises SuiteError naming the file and key path. Loads no model or task."""
    path = suite_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise SuiteError(f"{path}: not valid YAML ({e})") from None
    return parse_suite(raw, str(path))


def parse_suite(raw: Any, file: str = "<suite>") -> Suite:
    """Validate a suite mapping: keys and types, a direction per metric, one direction per domain (and per suite
    for ``combine: mean``), known directions for ``also`` metrics, tasks named once; raises SuiteError."""
    check = ConfigChecker(file, SuiteError)
    suite = check.config(Suite, raw, "", supplied={"file": file})
    seen: dict[str, str] = {}
    for domain, tasks in suite.domains.items():
        if not tasks:
            check.fail(f"domains.{domain}", "a domain needs at least one task")
        for i, t in enumerate(tasks):
            key = f"domains.{domain}[{i}]"
            if t.direction is None:
                check.fail(f"{key}.direction", f"metric {t.metric!r} needs a direction (higher or lower)")
            if t.metric in OUR_METRICS and t.direction != OUR_METRICS[t.metric]:
                check.fail(f"{key}.direction", f"{t.metric} is {OUR_METRICS[t.metric]}-is-better", t.direction)
            for j, m in enumerate(t.also):
                if m not in KNOWN_DIRECTIONS:
                    check.fail(
                        f"{key}.also[{j}]",
                        f"no known direction for metric {m!r} (known: "
                        f"{', '.join(sorted(KNOWN_DIRECTIONS))}); make it a task's scored metric",
                        m,
                    )
            if t.task in seen:
                check.fail(f"{key}.task", f"task already listed at {seen[t.task]}", t.task)
            seen[t.task] = key
        first = tasks[0]
        for i, t in enumerate(tasks[1:], start=1):
            if t.direction != first.direction:
                check.fail(
                    f"domains.{domain}[{i}].direction",
                    f"the domain score averages its tasks, and {first.task!r} is {first.direction}-is-better",
                    t.direction,
                )
    if suite.combine == "mean" and suite.direction is None:
        check.fail(
            "combine",
            "mean of domain scores with different directions is meaningless; use mean_percentile or one direction",
            "mean",
        )
    return suite
