"""The reference manifest: the published DeMix Corpora sizes (docs/method.md), from the recipe that holds them."""

from __future__ import annotations

from typing import Any

from corpus import load_recipe
from corpus.recipe import RECIPES_DIR

REFERENCE_RECIPE = RECIPES_DIR / "demix_corpora.yaml"
PUBLISHED_TOTALS_B = {"available": 13_417, "1": 14_388, "2": 5_999, "3": 1_996}


def reference_rows() -> list[dict[str, Any]]:
    """One row per published source: domain, tier, candidate, available and per-stage tokens (ints)."""
    recipe = load_recipe(REFERENCE_RECIPE)
    rows = []
    for s in recipe.sources:
        row = {
            "source": s.name,
            "title": s.title or s.name,
            "domain": s.domain,
            "tier": s.tier,
            "candidate": s.candidate,
            "available_tokens": s.available_tokens,
        }
        for stage in recipe.stages:
            row[f"stage_{stage.name}_tokens"] = s.stages.get(stage.name, 0)
        rows.append(row)
    return rows


def reference_totals() -> dict[str, int]:
    """Column sums of the reference rows, in tokens; they equal PUBLISHED_TOTALS_B x 1e9."""
    rows = reference_rows()
    totals = {"available": sum(r["available_tokens"] for r in rows)}
    for key in rows[0]:
        if key.startswith("stage_"):
            totals[key.split("_")[1]] = sum(r[key] for r in rows)
    return totals
