"""The manifest's `meta` table as one typed record: what a build knows of its corpus as a whole.

The table holds (key, value) strings (`manifests.schema.TABLES["meta"]`); `set_meta` stores a
non-string value as JSON, so a missing EOS id is stored as ``null``. This module is the one place
that reads those strings back:

    meta = read_corpus_meta(db, "vocab_size", "tokenizer_path")   # ManifestError names a missing key
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import duckdb

from manifests.errors import ManifestError
from manifests.manifest import get_meta, manifest_path, open_manifest

NULL_SPELLINGS = ("", "null", "None")
"""Values that mean "no value": set_meta's JSON null, an empty string, and Python's str(None)."""


@dataclass(frozen=True)
class CorpusMeta:
    """The `meta` table of one manifest; a key the table lacks is None here."""

    schema_version: str | None = None
    """Manifest schema version (`manifests.schema.SCHEMA_VERSION`), written when the manifest is created."""
    tokenizer_path: str | None = None
    """The tokenizer folder, relative to the corpus root (``tokenizer``)."""
    tokenizer_name: str | None = None
    """The tokenizer's display name."""
    tokenizer_hash: str | None = None
    """Hash of the tokenizer folder (`corpus.tokenizer.tokenizer_hash`)."""
    eos_token: str | None = None
    """The EOS token's text (``<|endoftext|>``)."""
    eos_id: int | None = None
    """The EOS token's id, joining documents in every packed stream; None when the tokenizer has none."""
    vocab_size: int | None = None
    """The tokenizer's vocabulary size (token ids are below it)."""
    recipe_name: str | None = None
    """Name of the recipe the corpus was built from."""
    config_hash: str | None = None
    """The recipe's config hash at build time (`Recipe.config_hash`)."""
    extra: dict[str, str] = field(default_factory=dict)
    """Any other key, as its stored string (kept so that reading and writing back loses nothing)."""

    @classmethod
    def from_values(
        cls, values: Mapping[str, Any], where: str = "<meta>", required: tuple[str, ...] = ()
    ) -> CorpusMeta:
        """Parse the table's (key, value) strings; raises ManifestError naming ``where`` and the key.

        A key of ``required`` that is missing (or null) raises; so does an integer field that is not one.
        """
        names = {f.name for f in dataclasses.fields(cls) if f.name != "extra"}
        parsed: dict[str, Any] = {}
        for key, value in values.items():
            if key not in names:
                continue
            value = None if value is None or str(value) in NULL_SPELLINGS else str(value)
            if value is not None and key in ("eos_id", "vocab_size"):
                try:
                    value = int(value)
                except ValueError:
                    raise ManifestError(f"{where}: meta.{key}: {value!r} is not an integer") from None
            parsed[key] = value
        for key in required:
            if key not in names:
                raise ValueError(f"required: {key!r} is not a CorpusMeta field")
            if parsed.get(key) is None:
                raise ManifestError(
                    f"{where}: meta.{key}: missing; the corpus build did not record it "
                    f"(rebuild the corpus with build-corpus)"
                )
        extra = {str(k): str(v) for k, v in values.items() if k not in names}
        return cls(**parsed, extra=extra)

    def to_values(self) -> dict[str, Any]:
        """The (key, value) pairs for `set_meta`, None fields left out; ``from_values`` reads them back equal."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**{k: v for k, v in out.items() if v is not None}, **self.extra}


def read_corpus_meta(db: str | os.PathLike | duckdb.DuckDBPyConnection, *required: str) -> CorpusMeta:
    """The `meta` table of the manifest at ``db`` (file or corpus folder, or an open connection).

    Raises ManifestError naming the manifest and the first key of ``required`` it lacks.
    """
    if isinstance(db, duckdb.DuckDBPyConnection):
        where = db.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchone()
        return CorpusMeta.from_values(get_meta(db), str(where[0] if where else "manifest"), required)
    with open_manifest(db, read_only=True) as con:
        values = get_meta(con)
    return CorpusMeta.from_values(values, str(manifest_path(db)), required)
