"""The token shard format (docs/design.md): one Parquet row per document, zstd, DeMix footer metadata."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from corpus.atomic import atomic_write

SHARD_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("text", pa.string()),
    ("tokens", pa.list_(pa.uint32())),
    ("n_tokens", pa.int32()),
])
ROW_GROUP_BYTES = 96 << 20  # docs/design.md: row groups of roughly 64-128 MB


def shard_table(ids: Sequence[str], texts: Sequence[str], tokens: Sequence[Sequence[int]],
                metadata: dict[str, str]) -> pa.Table:
    """Build an Arrow table in the shard schema with `metadata` (demix.* keys) on its schema."""
    tok = pa.array(tokens, pa.list_(pa.uint32()))
    n = pa.compute.list_value_length(tok).cast(pa.int32())
    table = pa.Table.from_arrays([pa.array(ids, pa.string()), pa.array(texts, pa.string()), tok, n],
                                 schema=SHARD_SCHEMA)
    return table.replace_schema_metadata({k: str(v) for k, v in metadata.items()})


def rows_per_group(table: pa.Table) -> int:
    """Rows per row group that keep each group near ROW_GROUP_BYTES."""
    if table.num_rows == 0:
        return 1
    per_row = max(1, table.nbytes // table.num_rows)
    return max(1, ROW_GROUP_BYTES // per_row)


def write_shard_atomic(table: pa.Table, path: str, fs: fsspec.AbstractFileSystem | None = None) -> None:
    """Write `table` to `path` under a temporary name, then rename: a crash never leaves a half shard."""
    with atomic_write(path, "wb", fs=fs or fsspec.filesystem("file")) as f:
        pq.write_table(table, f, compression="zstd", row_group_size=rows_per_group(table))


def shard_path(root: str | os.PathLike, source: str, split: str, task: int, seq: int) -> str:
    """`<root>/shards/<source>/<task:05d>_<seq:05d>.parquet` (train) or `<root>/validation/<source>/...`."""
    folder = "shards" if split == "train" else "validation"
    return str(Path(root) / folder / source / f"{task:05d}_{seq:05d}.parquet")
