"""The build's last stage: sources, shards, step stats and meta into <out>/manifest.duckdb (one DuckDB writer).

The shard tasks leave one record file each (<out>/logs/shard/records/<rank>.json) and every stage its
per-task stats (<out>/logs/<stage>/stats), so registration reads everything back from disk: it
describes resumed builds too, and runs as one task under any executor (`RegisterManifest`).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from datatrove.pipeline.base import PipelineStep

from corpus import Recipe
from corpus.tokenizer import load_tokenizer, tokenizer_hash
from manifests import open_manifest, register_shards, register_sources, register_step_stats, set_meta
from manifests.manifest import ShardRecord
from pipelines.build_config import BuildConfig, selected_sources
from pipelines.build_tokenizer import TOKENIZER_DIR
from pipelines.stats import read_step_counts, step_stats_rows
from pipelines.step_order import step_row_key


class RegisterManifest(PipelineStep):
    """The register stage's one task: `register_manifest` after the shard stage."""

    name = "register"
    type = "🗂 - MANIFEST"

    def __init__(self, recipe: Recipe, cfg: BuildConfig, missing: dict[str, int]):
        super().__init__()
        self.recipe, self.cfg, self.missing = recipe, cfg, dict(missing)

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        if data:
            yield from data
        register_manifest(self.recipe, self.cfg, self.missing)


def collect_step_stats(cfg: BuildConfig, missing: dict[str, int]) -> list[dict[str, Any]]:
    """step_stats rows summed over every stage's task stats, plus missing locations under 'read'."""
    logs = Path(cfg.out).resolve() / "logs"
    counts: dict = {}
    for stage in ("prepare", "shard"):
        counts.update(read_step_counts(str(logs / stage)))
    for src, n in missing.items():
        row = counts.setdefault((src, "read"), {"docs_in": 0, "docs_out": 0, "reasons": {}})
        row["reasons"] = {**row["reasons"], "missing_location": n}
    return sorted(step_stats_rows(counts), key=step_row_key)


def register_manifest(recipe: Recipe, cfg: BuildConfig, missing: dict[str, int]) -> dict[str, Any]:
    """Register sources, shards (from the shard tasks' record files), step stats and meta; returns meta."""
    out = Path(cfg.out).resolve()
    records = []
    for p in sorted((out / "logs" / "shard" / "records").glob("[!.]*.json")):  # not a killed task's .tmp-* file
        for r in json.loads(p.read_text()):
            r["created_at"] = datetime.fromisoformat(r["created_at"])
            records.append(ShardRecord(**r))
    tok_dir = out / TOKENIZER_DIR
    tok = load_tokenizer(tok_dir)
    meta = {
        "tokenizer_path": TOKENIZER_DIR,
        "tokenizer_name": recipe.tokenizer.display_name,
        "tokenizer_hash": tokenizer_hash(tok_dir),
        "eos_token": recipe.tokenizer.eos_token,
        "eos_id": tok.token_to_id(recipe.tokenizer.eos_token),
        "vocab_size": tok.get_vocab_size(),
        "recipe_name": recipe.name,
        "config_hash": recipe.config_hash(),
    }
    names = set(selected_sources(recipe, cfg.sources))
    sub = Recipe(
        **{
            **{f: getattr(recipe, f) for f in recipe.__dataclass_fields__},
            "sources": tuple(s for s in recipe.sources if s.name in names),
        }
    )
    with open_manifest(out) as con:
        register_sources(con, sub)
        con.execute("DELETE FROM shards WHERE source IN (SELECT unnest(?))", [sorted(names)])
        register_shards(con, records)
        # '(benchmarks)' holds decontamination's own counts: a rebuild without decontamination must not keep them
        con.execute(
            "DELETE FROM step_stats WHERE source IN (SELECT unnest(?)) OR source = '(benchmarks)'", [sorted(names)]
        )
        register_step_stats(con, collect_step_stats(cfg, missing))
        set_meta(con, meta)
    return meta
