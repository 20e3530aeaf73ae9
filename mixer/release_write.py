"""Write one file of a release from the plan alone, with memory bounded by one row group per source.

Each function writes file ``i`` of a config (``mixer.release_layout``) to a temporary name and
renames it when complete, so a killed release leaves whole files only and a rerun writes just the
missing ones. Nothing depends on earlier files: a file's first document or sequence is found from
the schedule's per-source counts at its first slot and the source stream's arithmetic seek.
"""

from __future__ import annotations

from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from corpus.atomic import atomic_write
from manifests import SHARD_SCHEMA
from mixer.release_layout import ConfigLayout
from mixer.sampler import Sampler
from mixer.stream import SourceStream

DOC_COLUMNS = SHARD_SCHEMA.names
SOURCE_SCHEMA = SHARD_SCHEMA  # a source config's files are its documents as the shards hold them
MIXTURE_SCHEMA = SHARD_SCHEMA.insert(1, pa.field("source", pa.string())).insert(2, pa.field("epoch", pa.int32()))
SAMPLE_SCHEMA = pa.schema(
    [("position", pa.int64()), ("source", pa.string()), ("k", pa.int64()), ("tokens", pa.list_(pa.uint32()))]
)
ROW_GROUP_TOKENS = 8_000_000  # tokens buffered before a row group is written: the memory bound of a file


class Documents:
    """A cursor over one source's documents in stream order, from the first that starts at or after ``start``."""

    def __init__(self, stream: SourceStream, start: int):
        self.stream = stream
        self._load(int(start))

    def _load(self, offset: int) -> None:
        key, bstart, blen = self.stream.locate(offset)
        epoch, i, g = key
        table = self.stream.open_shard(i).read_row_group(g, columns=DOC_COLUMNS)
        self.table = table.take(pa.array(self.stream.doc_permutation(key, table.num_rows)))
        n_tokens = np.asarray(self.table.column("n_tokens"), dtype=np.int64)
        self.starts = bstart + np.concatenate([[0], np.cumsum(n_tokens[:-1] + 1)]).astype(np.int64)
        self.epoch, self.end = epoch, bstart + blen
        self.j = int(np.searchsorted(self.starts, offset, side="left"))

    def take(self, stop: int) -> list[tuple[int, pa.Table]]:
        """``(epoch, documents)`` slices of every document from the cursor that starts before ``stop``."""
        out = []
        while True:
            n = int(np.searchsorted(self.starts, stop, side="left"))
            if n > self.j:
                out.append((self.epoch, self.table.slice(self.j, n - self.j)))
                self.j = n
            if self.j < self.table.num_rows or self.end >= stop:
                return out
            self._load(self.end)  # this row group is used up and the next one starts before stop


class _File:
    """The Parquet writer of one release file: every table is cast to the file's schema."""

    def __init__(self, writer: pq.ParquetWriter, schema: pa.Schema):
        self.writer, self.schema = writer, schema

    def write(self, table: pa.Table) -> None:
        self.writer.write_table(table.cast(self.schema))


def _written(fs: fsspec.AbstractFileSystem, path: str, schema: pa.Schema, fill) -> None:
    # atomic_write renames the file only once the writer has closed it (footer written); a failure
    # or a kill removes the temporary, so no half file is left under a final name
    with atomic_write(path, "wb", fs=fs) as f, pq.ParquetWriter(f, schema, compression="zstd") as writer:
        fill(_File(writer, schema))


def write_source_file(
    fs: fsspec.AbstractFileSystem, path: str, config: ConfigLayout, i: int, stream: SourceStream
) -> None:
    """File ``i`` of a source config: the documents that start in its span of the source's stream."""
    a, b = config.span_of(i)

    def fill(out: _File) -> None:
        if b > a:
            for _, table in Documents(stream, a).take(b):  # one shard row group at a time
                out.write(table)
        else:
            out.write(SOURCE_SCHEMA.empty_table())

    _written(fs, path, SOURCE_SCHEMA, fill)


def write_mixture_file(
    fs: fsspec.AbstractFileSystem,
    path: str,
    config: ConfigLayout,
    i: int,
    sampler: Sampler,
    streams: list[SourceStream | None],
) -> None:
    """File ``i`` of the mixture config: the documents of its slots, in slot order, with source and epoch."""
    a, b = config.span_of(i)
    L, names = sampler.seq_len, sampler.source_names

    def fill(out: _File) -> None:
        counts = sampler.schedule.counts_at(a)
        cursors: dict[int, Documents] = {}
        parts: list[pa.Table] = []
        buffered = 0
        slots = sampler.schedule.iter_slots(a, counts)
        for _ in range(b - a):
            s, k = next(slots)
            if s not in cursors:  # a document starting in sequence k belongs to slot (s, k)
                cursors[s] = Documents(streams[s], k * L)
            for epoch, table in cursors[s].take((k + 1) * L):
                n = table.num_rows
                parts.append(
                    table.add_column(1, "source", pa.array([names[s]] * n, pa.string())).add_column(
                        2, "epoch", pa.array([epoch] * n, pa.int32())
                    )
                )
                buffered += L
            if buffered >= ROW_GROUP_TOKENS:
                out.write(pa.concat_tables(parts))
                parts, buffered = [], 0
        out.write(pa.concat_tables(parts) if parts else MIXTURE_SCHEMA.empty_table())

    _written(fs, path, MIXTURE_SCHEMA, fill)


def write_sample_file(fs: fsspec.AbstractFileSystem, path: str, config: ConfigLayout, i: int, plan: Any) -> None:
    """File ``i`` of a ``sample-<N>`` config: the sampler's sequences of its slots, one row each."""
    a, b = config.span_of(i)

    def fill(out: _File) -> None:
        sampler = Sampler(plan, prefetch=0)
        if a:
            counts = sampler.schedule.counts_at(a)
            sampler.load_state_dict({"position": a, "slot": a, "counts": dict(zip(sampler.source_names, counts))})
        rows: dict[str, list] = {"position": [], "source": [], "k": [], "tokens": []}
        per_group = max(1, ROW_GROUP_TOKENS // sampler.seq_len)
        items = sampler.items()
        for _ in range(b - a):
            slot, source, k, seq = next(items)
            for key, value in (
                ("position", slot),
                ("source", source),
                ("k", k),
                ("tokens", seq.numpy().astype(np.uint32)),
            ):
                rows[key].append(value)
            if len(rows["position"]) >= per_group:
                out.write(pa.table(rows, schema=SAMPLE_SCHEMA))
                rows = {key: [] for key in rows}
        out.write(pa.table(rows, schema=SAMPLE_SCHEMA))

    _written(fs, path, SAMPLE_SCHEMA, fill)
