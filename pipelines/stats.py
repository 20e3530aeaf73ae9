"""Per-source step counters on top of datatrove's Stats, and their aggregation into step_stats rows.

Each counting step records ``<source>|in``, ``<source>|out`` and ``<source>|drop|<reason>`` labels in
its datatrove ``Stats``; datatrove saves them per task under ``<logging_dir>/stats/<rank>.json``
when the task completes, so counts of tasks skipped on a rerun are read back from disk.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import fsspec
from datatrove.pipeline.base import PipelineStep


class CountingStep(PipelineStep):
    """A PipelineStep that counts documents in, out and dropped (with a reason) per source."""

    def count_in(self, source: str, n: int = 1) -> None:
        """Count `n` documents entering this step for `source`."""
        self.stat_update(f"{source}|in", value=n)

    def count_out(self, source: str, n: int = 1) -> None:
        """Count `n` documents leaving this step for `source`."""
        self.stat_update(f"{source}|out", value=n)

    def count_drop(self, source: str, reason: str, n: int = 1) -> None:
        """Count `n` dropped documents (or bad inputs) for `source` with a short `reason`."""
        self.stat_update(f"{source}|drop|{reason}", value=n)


def _total(value: Any) -> int:
    if isinstance(value, dict):
        return int(value.get("total", 0))
    return int(value or 0)


def read_step_counts(logging_dir: str, ranks: Iterable[int] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """Sum the per-source counters of every task's stats file in `logging_dir`.

    Returns {(source, step): {"docs_in", "docs_out", "reasons": {reason: count}}}; missing files are skipped.
    """
    fs, root = fsspec.core.url_to_fs(logging_dir)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    paths = sorted(fs.glob(f"{root}/stats/*.json"))
    if ranks is not None:
        wanted = {f"{r:05d}.json" for r in ranks}
        paths = [p for p in paths if p.rsplit("/", 1)[-1] in wanted]
    for path in paths:
        with fs.open(path, "r") as f:
            steps = json.load(f)
        for st in steps:
            step = getattr_step_name(st.get("name", ""))
            for label, value in (st.get("stats") or {}).items():
                parts = label.split("|")
                if len(parts) < 2 or parts[1] not in ("in", "out", "drop"):
                    continue
                row = out.setdefault((parts[0], step), {"docs_in": 0, "docs_out": 0, "reasons": defaultdict(int)})
                if parts[1] == "in":
                    row["docs_in"] += _total(value)
                elif parts[1] == "out":
                    row["docs_out"] += _total(value)
                else:
                    row["reasons"]["|".join(parts[2:]) or "unknown"] += _total(value)
    return out


def getattr_step_name(repr_name: str) -> str:
    """datatrove names a step's stats '<type>: <name>'; keep the name."""
    return repr_name.split(": ", 1)[-1].strip()


def step_stats_rows(counts: dict[tuple[str, str], dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for manifests.register_step_stats: one 'kept' row per (source, step) plus one per drop reason."""
    rows = []
    for (source, step), c in sorted(counts.items()):
        base = {"source": source, "step": step, "docs_in": c["docs_in"], "docs_out": c["docs_out"]}
        rows.append({**base, "reason": "kept", "count": c["docs_out"]})
        for reason, n in sorted(c["reasons"].items()):
            rows.append({**base, "reason": reason, "count": int(n)})
    return rows
