"""The order of a build's steps, as step_stats rows are listed (manifest registration and the summary)."""

from __future__ import annotations

from typing import Any

STEP_ORDER = ("read", "normalize", "filter", "dedup", "decontaminate", "language", "tokenize", "write")
_RANK = {step: i for i, step in enumerate(STEP_ORDER)}


def step_row_key(row: dict[str, Any]) -> tuple:
    """Sort key of a step_stats row: by source, then step in build order, 'kept' before the drop reasons."""
    return row["source"], _RANK.get(row["step"], len(STEP_ORDER)), row["reason"] != "kept", row["reason"]
