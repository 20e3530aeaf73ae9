"""The token shard format (docs/design.md): one Parquet row per document, zstd, DeMix footer metadata.

The owner of the format: its schema (`SHARD_SCHEMA`), its footer (`ShardMeta`, both directions),
its writer (`shard_table` + `write_shard_atomic`) and its path layout (`shard_path`). Nobody else
spells a `demix.*` footer key:

    meta = ShardMeta.from_metadata(pq.read_schema(path).metadata, where=path)
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from corpus.atomic import atomic_write
from manifests.errors import ManifestError

SHARD_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        ("tokens", pa.list_(pa.uint32())),
        ("n_tokens", pa.int32()),
    ]
)
ROW_GROUP_BYTES = 96 << 20  # docs/design.md: row groups of roughly 64-128 MB
FOOTER_PREFIX = "demix."
"""Every footer key is ``demix.<ShardMeta field>``."""


@dataclass(frozen=True)
class ShardMeta:
    """The footer of one token shard: Parquet key-value metadata ``demix.<field>`` = string value.

    A field that is None is not written; reading a footer gives None for a key it lacks (``split``:
    ``train``), so shards written before a key existed still read.
    """

    source: str
    """The recipe source every document of the shard comes from (required: it marks a token shard)."""
    split: str = "train"
    """``train`` (under ``shards/``) or ``validation`` (under ``validation/``)."""
    domain: str | None = None
    """The source's domain (general, math, code, ...)."""
    tier: str | None = None
    """The source's quality tier."""
    candidate: str | None = None
    """The candidate the source belongs to; None for none (written as the empty string)."""
    tokenizer: str | None = None
    """The tokenizer's display name."""
    tokenizer_hash: str | None = None
    """Hash of the tokenizer folder (`corpus.tokenizer.tokenizer_hash`)."""
    config_hash: str | None = None
    """The recipe's config hash at build time (`Recipe.config_hash`)."""

    def to_metadata(self) -> dict[str, str]:
        """The footer, in `FOOTER_ORDER`: ``{"demix.tokenizer": ..., ..., "demix.source": ..., ...}``."""
        out = {}
        for name in FOOTER_ORDER:
            value = getattr(self, name)
            if name == "candidate":
                value = value or ""  # every shard says whether it has a candidate, '' for none
            if value is not None:
                out[FOOTER_PREFIX + name] = str(value)
        return out

    @classmethod
    def from_metadata(cls, metadata: Mapping[bytes | str, bytes | str] | None, where: str = "<shard>") -> ShardMeta:
        """Read a footer (``pq.read_schema(path).metadata``: bytes or str keys); other keys are ignored.

        Raises ManifestError naming ``where`` when there is no ``demix.source`` key (not a token shard).
        """
        values = cls.fields_of(metadata)
        if "source" not in values:
            raise ManifestError(f"{where}: no {FOOTER_PREFIX}source key in the Parquet metadata; not a token shard")
        values["candidate"] = values.get("candidate") or None
        return cls(**values)

    @classmethod
    def fields_of(cls, metadata: Mapping[bytes | str, bytes | str] | None) -> dict[str, str]:
        """The footer entries of ``metadata`` that name a field, as ``{field: value}`` (part of a footer too)."""
        md = {_text(k): _text(v) for k, v in (metadata or {}).items()}
        return {f.name: md[FOOTER_PREFIX + f.name] for f in dataclasses.fields(cls) if FOOTER_PREFIX + f.name in md}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


FOOTER_ORDER = ("tokenizer", "config_hash", "tokenizer_hash", "source", "split", "domain", "tier", "candidate")
"""The order footer keys are written in: the build-wide keys, then the shard's own, as every build so far
wrote them, so a shard's bytes (and its sha256 in the manifest) do not depend on this module's field order."""
assert sorted(FOOTER_ORDER) == sorted(f.name for f in dataclasses.fields(ShardMeta)), "FOOTER_ORDER names every field"
SHARD_METADATA_KEYS = tuple(FOOTER_PREFIX + name for name in FOOTER_ORDER)
"""Every footer key a shard writer may set (`ShardMeta.to_metadata`), read back by `rebuild`."""


def shard_table(ids: Sequence[str], texts: Sequence[str], tokens: Sequence[Sequence[int]], meta: ShardMeta) -> pa.Table:
    """Build an Arrow table in the shard schema with ``meta``'s footer on its schema."""
    tok = pa.array(tokens, pa.list_(pa.uint32()))
    n = pa.compute.list_value_length(tok).cast(pa.int32())
    table = pa.Table.from_arrays(
        [pa.array(ids, pa.string()), pa.array(texts, pa.string()), tok, n], schema=SHARD_SCHEMA
    )
    return table.replace_schema_metadata(meta.to_metadata())


def rows_per_group(table: pa.Table) -> int:
    """Rows per row group that keep each group near ROW_GROUP_BYTES."""
    if table.num_rows == 0:
        return 1
    per_row = max(1, table.nbytes // table.num_rows)
    return max(1, ROW_GROUP_BYTES // per_row)


class _Sha256Sink(io.RawIOBase):
    """A write-only file that hashes every byte on its way to `f` (Parquet writes front to back, never seeks)."""

    def __init__(self, f):
        super().__init__()
        self.f, self.sha256, self.n_bytes = f, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        n = memoryview(b).nbytes
        self.sha256.update(b)
        self.f.write(b)
        self.n_bytes += n
        return n

    def tell(self) -> int:
        return self.n_bytes


def write_shard_atomic(table: pa.Table, path: str, fs: fsspec.AbstractFileSystem | None = None) -> str:
    """Write `table` to `path` under a temporary name, then rename: a crash never leaves a half shard.

    Returns the hex sha256 of the bytes written, hashed on the way out, so a writer's record needs no second
    read of the file (`file_sha256` of the shard gives the same value).
    """
    with atomic_write(path, "wb", fs=fs or fsspec.filesystem("file")) as f:
        sink = _Sha256Sink(f)
        pq.write_table(table, sink, compression="zstd", row_group_size=rows_per_group(table))
    return sink.sha256.hexdigest()


def shard_path(root: str | os.PathLike, source: str, split: str, task: int, seq: int) -> str:
    """`<root>/shards/<source>/<task:05d>_<seq:05d>.parquet` (train) or `<root>/validation/<source>/...`.

    `root` is a local path or a URL (joined as a string: a Path would turn memory:// into memory:/).
    """
    folder = "shards" if split == "train" else "validation"
    return f"{str(root).rstrip('/')}/{folder}/{source}/{task:05d}_{seq:05d}.parquet"
