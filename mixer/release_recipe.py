"""A recipe-only release: the plan, the manifest's rows for it (Parquet), the recipe and the card; no data copied.

A 22T mixture is far past what a Hub repository holds, and its sources' licences often forbid
redistribution, so what is released is how to rebuild it: the recipe (where each source lives and
how it is filtered and deduplicated), the plan (tokens, epochs and shard checksums per source, and
the sampler seed that fixes the order), and the manifest rows that say what the build produced:

    plan.json                      the plan, as `mixer resolve` wrote it (its plan_id is its content hash)
    recipe.yaml                    the recipe the plan names, byte for byte (when found)
    manifest/sources.parquet       the manifest's `sources` rows of the plan's sources
    manifest/shards.parquet        their `shards` rows (path, n_docs, n_tokens, n_bytes, sha256, ...)
    manifest/step_stats.parquet    their `step_stats` rows (documents in/out and drop reasons per step)
    README.md                      the card (mixer.release_card)
    .demix-release.json            the marker (mixer.release)

A plan resolved from a recipe alone (no built corpus) exports the recipe's sources in the manifest's
own schema and empty shards and step_stats tables, so the files have one shape either way.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import duckdb
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from corpus import Recipe, RecipeError, load_recipe
from corpus.atomic import atomic_write
from corpus.errors import DemixError
from corpus.recipe import RECIPES_DIR
from manifests import MANIFEST_NAME, open_manifest, register_sources
from manifests.schema import create_schema
from mixer.plan import Plan
from mixer.release_card import render_recipe_card
from mixer.release_layout import ReleaseFile

MANIFEST_TABLES = ("sources", "shards", "step_stats")
"""The manifest tables a recipe-only release exports, each restricted to the plan's sources."""


class RecipeReleaseError(DemixError, RuntimeError):
    """A recipe named for a release that cannot be used (missing, or not the recipe the plan was built from)."""


@dataclasses.dataclass(frozen=True)
class PlanRecipe:
    """The recipe a plan was built from, and the file it was read from (to copy it byte for byte)."""

    recipe: Recipe
    file: Path


def find_recipe(plan: Plan, recipe: str | os.PathLike | None = None) -> PlanRecipe | None:
    """The recipe of ``plan``: ``recipe`` when given, else the one its provenance or name points at.

    A recipe counts only when its config hash is the plan's (a recipe edited since the build would
    state settings the data was not made with): a given one that differs raises RecipeReleaseError,
    a found one that differs is not used (None).
    """
    if recipe is not None:
        found = _load(recipe)
        if found is None:
            raise RecipeReleaseError(f"{recipe}: recipe file not found")
        if plan.config_hash and found.recipe.config_hash() != plan.config_hash:
            raise RecipeReleaseError(
                f"{recipe}: config hash {found.recipe.config_hash()} is not the plan's "
                f"{plan.config_hash}; this is not the recipe plan {plan.plan_id} was built from"
            )
        return found
    provenance = (plan.mixture or {}).get("provenance") or {}
    for name in (provenance.get("recipe"), plan.recipe):
        if isinstance(name, str) and name:
            found = _load(name)
            if found is not None and (not plan.config_hash or found.recipe.config_hash() == plan.config_hash):
                return found
    return None


def _load(name: str | os.PathLike) -> PlanRecipe | None:
    for path in (Path(name), RECIPES_DIR / f"{name}.yaml"):  # a file, or a built-in recipe's name
        if path.is_file():
            try:
                return PlanRecipe(load_recipe(path), path)
            except RecipeError:
                return None
    return None


def manifest_tables(plan: Plan, found: PlanRecipe | None) -> dict[str, pa.Table]:
    """The MANIFEST_TABLES rows of the plan's sources: from the plan's corpus manifest, else from its recipe."""
    names = sorted(s.source for s in plan.sources)
    db = Path(plan.corpus_root) / MANIFEST_NAME if plan.corpus_root and "://" not in plan.corpus_root else None
    if db is not None and db.is_file():
        with open_manifest(db, read_only=True) as con:
            return {
                t: con.sql(
                    f"SELECT * FROM {t} WHERE source IN (SELECT unnest(?)) ORDER BY ALL", params=[names]
                ).to_arrow_table()
                for t in MANIFEST_TABLES
            }
    con = duckdb.connect()  # no corpus was built: the manifest's schema, with the recipe's sources registered
    try:
        create_schema(con)
        if found is not None:
            register_sources(
                con,
                dataclasses.replace(
                    found.recipe, sources=tuple(s for s in found.recipe.sources if s.name in set(names))
                ),
            )
        return {t: con.sql(f"SELECT * FROM {t} ORDER BY ALL").to_arrow_table() for t in MANIFEST_TABLES}
    finally:
        con.close()


def write_recipe_release(
    plan: Plan, fs: fsspec.AbstractFileSystem, root: str, found: PlanRecipe | None, *, dry_run: bool = False
) -> list[ReleaseFile]:
    """Write the recipe-only files of ``plan`` under ``root`` (marker and folder checks are the caller's).

    ``dry_run`` writes nothing and returns the planned files (sizes 0). Every file is rewritten on
    each run: they are small, and each is written to a temporary name and renamed.
    """
    planned = [
        "plan.json",
        *(["recipe.yaml"] if found else []),
        *(f"manifest/{t}.parquet" for t in MANIFEST_TABLES),
        "README.md",
    ]
    if dry_run:
        return [ReleaseFile(p, 0) for p in planned]
    tables = manifest_tables(plan, found)
    with atomic_write(f"{root}/plan.json", "wb", fs=fs) as f:
        f.write(_plan_json(plan))
    if found:
        with atomic_write(f"{root}/recipe.yaml", "wb", fs=fs) as f:
            f.write(found.file.read_bytes())
    for name, table in tables.items():
        with atomic_write(f"{root}/manifest/{name}.parquet", "wb", fs=fs) as f:
            pq.write_table(table, f, compression="zstd")
    card = render_recipe_card(plan, found.recipe if found else None, {t: tables[t].num_rows for t in tables})
    with atomic_write(f"{root}/README.md", "wb", fs=fs) as f:
        f.write(card.encode())
    return [ReleaseFile(p, int(fs.size(f"{root}/{p}"))) for p in planned]


def _plan_json(plan: Plan) -> bytes:
    return (json.dumps(plan.to_dict(), indent=2) + "\n").encode()
