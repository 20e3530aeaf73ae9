"""The build's last stage: sources, shards, step stats and meta into <out>/manifest.duckdb (one DuckDB writer).

The shard tasks leave one record file each (<out>/logs/shard/records/<rank>.json) and every stage its
per-task stats (<out>/logs/<stage>/stats), so registration reads everything back from disk: it
describes resumed builds too, and runs as one task under any executor (`RegisterManifest`).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import fsspec
from datatrove.pipeline.base import PipelineStep

from corpus import Recipe
from corpus.tokenizer import bytes_hash, config_eos_token, fetch_tokenizer, parse_tokenizer
from corpus.urls import staged_file
from manifests import open_manifest, register_shards, register_sources, register_step_stats, set_meta
from manifests.manifest import MANIFEST_NAME, ShardRecord
from pipelines.build_config import BuildConfig, located, selected_sources
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
    counts: dict = {}
    for stage in ("prepare", "shard"):
        counts.update(read_step_counts(f"{cfg.out}/logs/{stage}"))
    for src, n in missing.items():
        row = counts.setdefault((src, "read"), {"docs_in": 0, "docs_out": 0, "reasons": {}})
        row["reasons"] = {**row["reasons"], "missing_location": n}
    return sorted(step_stats_rows(counts), key=step_row_key)


def register_manifest(recipe: Recipe, cfg: BuildConfig, missing: dict[str, int]) -> dict[str, Any]:
    """Register sources, shards (from the shard tasks' record files), step stats and meta; returns meta.

    The manifest is written locally and put to <out>/manifest.duckdb when done (out a URL: `staged_file`).
    """
    cfg = located(cfg)
    fs, root = fsspec.core.url_to_fs(cfg.out)
    records = []
    fs.invalidate_cache(f"{root}/logs/shard/records")
    for p in sorted(fs.glob(f"{root}/logs/shard/records/[!.]*.json")):  # not a killed task's .tmp-* file
        for r in json.loads(fs.cat_file(p)):
            r["created_at"] = datetime.fromisoformat(r["created_at"])
            records.append(ShardRecord(**r))
    tok_dir = f"{cfg.out}/{TOKENIZER_DIR}"
    data, config = fetch_tokenizer(tok_dir)
    tok = parse_tokenizer(data, tok_dir)
    # the EOS the written folder names (as training will read it), which the build wrote from the recipe
    eos = config_eos_token(config) or recipe.tokenizer.eos_token
    meta = {
        "tokenizer_path": TOKENIZER_DIR,
        "tokenizer_name": recipe.tokenizer.display_name,
        "tokenizer_hash": bytes_hash(data),
        "eos_token": eos,
        "eos_id": tok.token_to_id(eos),
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
    with staged_file(f"{cfg.out}/{MANIFEST_NAME}") as db, open_manifest(db) as con:
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
