"""Sorted runs of dedup keys, partitioned by key range into bucket shards: the format between dedup stages.

Each prepared part (written by a prepare task) also writes, per bucket shard s of `DedupPlan.shards`,
three fixed-width binary runs under <work>/dedup/runs/<kind>/<s:05d>/<rank:05d>_<part:05d>.bin, each
sorted by its key:

  band   (key, node, chash)    one row per (document, LSH band); key = (scope group, band, band hash)
  exact  (hi, lo, node)        one row per document; (hi, lo) = (scope group, 128-bit content hash)
  ids    (key, node, unit, row) one row per document; key = (source, id without '#k' suffixes)

`node` names a prepared record: rank << 44 | part << 24 | row in the part (`node_part`). A key's shard
is its top 32 bits times `shards`, shifted down, so a shard is one contiguous key range and a bucket
task reads each run's slice of a sub-range with a binary search (`RunReader`), never a whole run:
memory per task is set by `max_memory_mb`, not by the corpus size. Runs are written whole to a
temporary name and renamed, so a crashed prepare task leaves no half run.

`SortedRuns` is the same idea for the cluster step: an external sort of Arrow rows within a byte budget.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from corpus.atomic import atomic_write
from corpus.recipe import TIERS

BAND = np.dtype([("key", "<u8"), ("node", "<u8"), ("chash", "<u8")])
EXACT = np.dtype([("hi", "<u8"), ("lo", "<u8"), ("node", "<u8")])
IDS = np.dtype([("key", "<u8"), ("node", "<u8"), ("unit", "<i8"), ("row", "<i8")])
KINDS = {"band": BAND, "exact": EXACT, "ids": IDS}
SCOPES = ("source", "domain", "corpus")
POS_BITS, PART_BITS = 24, 20
_SUFFIX = re.compile(r"(#\d+)+$")
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


@dataclass(frozen=True)
class DedupPlan:
    """Where the dedup stages meet and how they split the work (one object for writer, buckets and cluster)."""

    folder: str
    """The dedup work folder (<work>/dedup): runs/, shards/ and the cluster claim."""
    shards: int = 1
    """Bucket shards = bucket tasks (count); each owns one key range of every run."""
    scope: str = "source"
    """Which documents are compared: within a source, a domain, or the whole corpus."""
    domains: dict[str, str] = field(default_factory=dict)
    """{source: domain}, for scope 'domain'."""
    tiers: dict[str, str] = field(default_factory=dict)
    """{source: tier}: across sources the higher tier survives, then the smaller id."""
    max_memory_mb: int = 512
    """Rows a bucket task holds at once, as MiB of run data (the sub-range size)."""

    @classmethod
    def of(cls, recipe, folder: str, shards: int) -> DedupPlan:
        """The plan of a recipe (its dedup.scope and dedup.max_memory_mb)."""
        cfg = recipe.dedup
        return cls(
            folder.rstrip("/"),
            max(1, shards),
            cfg.scope,
            {s.name: s.domain for s in recipe.sources},
            {s.name: s.tier for s in recipe.sources},
            int(cfg.max_memory_mb),
        )

    def group(self, source: str) -> str:
        """The scope group a source's documents are compared within."""
        if self.scope == "corpus":
            return ""
        if self.scope == "domain":
            return "d:" + self.domains.get(source, source)
        return "s:" + source

    def survivor_key(self, source: str, uid: str) -> tuple:
        """Sort key of a duplicate group's members: the first one is kept (higher tier, then smaller id)."""
        tier = self.tiers.get(source)
        return (TIERS.index(tier) if tier in TIERS else len(TIERS), uid, source)

    def run_path(self, kind: str, shard: int, rank: int, part: int) -> str:
        return f"{self.folder}/runs/{kind}/{shard:05d}/{rank:05d}_{part:05d}.bin"


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer: a bijection of uint64 that spreads structured keys over the key range."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        return x ^ (x >> np.uint64(31))


def shard_of(keys: np.ndarray, shards: int) -> np.ndarray:
    return ((keys >> np.uint64(32)) * np.uint64(shards)) >> np.uint64(32)


def shard_range(shard: int, shards: int) -> tuple[int, int]:
    """[low, high) of the keys of a shard (Python ints; high may be 2**64)."""

    def low(s: int) -> int:
        return (-(-(s << 32) // shards)) << 32

    return low(shard), (low(shard + 1) if shard + 1 < shards else 1 << 64)


def node_of(rank: int, part: int, pos: np.ndarray) -> np.ndarray:
    return np.uint64((rank << (PART_BITS + POS_BITS)) | (part << POS_BITS)) + pos.astype(np.uint64)


def node_part(node: int) -> tuple[str, int]:
    """(prepared part file name, row in it) of a node."""
    rank, part = node >> (PART_BITS + POS_BITS), (node >> POS_BITS) & ((1 << PART_BITS) - 1)
    return f"{rank:05d}_{part:05d}.parquet", node & ((1 << POS_BITS) - 1)


def id_root(doc_id: str) -> str:
    """The id without trailing '#k' suffixes: every name `unique_ids` may give it shares this root."""
    return _SUFFIX.sub("", doc_id)


def write_runs(plan: DedupPlan, rank: int, part: int, table: pa.Table) -> None:
    """Write the band, exact and ids runs of one prepared part (columns source, id, hash, bands, unit, row)."""
    n = table.num_rows
    if n >= 1 << POS_BITS or part >= 1 << PART_BITS:
        raise ValueError(f"prepared part {rank:05d}_{part:05d}: {n} rows or part number past the node layout")
    nodes = node_of(rank, part, np.arange(n))
    sources = table.column("source").to_pylist()
    codes = {s: xxhash.xxh64_intdigest(plan.group(s)) for s in set(sources)}
    group = np.fromiter((codes[s] for s in sources), np.uint64, n)
    hashes = table.column("hash").to_pylist()
    hi = np.fromiter((int(h[:16], 16) for h in hashes), np.uint64, n)
    lo = np.fromiter((int(h[16:32].ljust(16, "0"), 16) for h in hashes), np.uint64, n)
    exact = np.empty(n, EXACT)
    exact["hi"], exact["lo"], exact["node"] = mix64(hi ^ mix64(group)), lo, nodes
    ids = np.empty(n, IDS)
    ids["key"] = np.fromiter(
        (xxhash.xxh64_intdigest(f"{s}\0{id_root(d)}") for s, d in zip(sources, table.column("id").to_pylist())),
        np.uint64,
        n,
    )
    ids["node"] = nodes
    ids["unit"], ids["row"] = table.column("unit").to_numpy(), table.column("row").to_numpy()
    bands_col = table.column("bands").combine_chunks()
    counts = bands_col.value_lengths().fill_null(0).to_numpy().astype(np.int64)
    doc = np.repeat(np.arange(n), counts)
    band_idx = np.arange(len(doc)) - np.repeat(np.cumsum(counts) - counts, counts)
    band = np.empty(len(doc), BAND)
    values = bands_col.flatten().to_numpy().astype(np.uint64)
    with np.errstate(over="ignore"):
        band["key"] = mix64(values ^ mix64(group[doc] + band_idx.astype(np.uint64)))
    band["node"], band["chash"] = nodes[doc], hi[doc]
    fs, _ = fsspec.core.url_to_fs(plan.folder)
    for kind, rows, key in (("band", band, "key"), ("exact", exact, "hi"), ("ids", ids, "key")):
        shard = shard_of(rows[key], plan.shards)
        for s in np.unique(shard):
            chunk = rows[shard == s]
            second = "lo" if kind == "exact" else "node"
            chunk = chunk[np.lexsort((chunk["node"], chunk[second], chunk[key]))]
            write_bytes(fs, plan.run_path(kind, int(s), rank, part), chunk.tobytes())


def write_bytes(fs, path: str, data: bytes) -> None:
    with atomic_write(path, "wb", fs=fs) as f:
        f.write(data)


def remove_runs(plan: DedupPlan, rank: int) -> None:
    """Remove a prepare task's runs (a rerun of the task rewrites them from the start)."""
    fs, root = fsspec.core.url_to_fs(plan.folder)
    for stale in fs.glob(f"{root}/runs/*/*/{rank:05d}_*.bin") + fs.glob(f"{root}/runs/*/*/.tmp-*-{rank:05d}_*"):
        fs.rm(stale)


class RunReader:
    """The rows of one shard's runs of one kind, sub-range by sub-range, within a memory budget."""

    def __init__(self, plan: DedupPlan, kind: str, shard: int):
        self.dtype, self.key = KINDS[kind], ("hi" if kind == "exact" else "key")
        self.fs, root = fsspec.core.url_to_fs(plan.folder)
        self.paths = sorted(self.fs.glob(f"{root}/runs/{kind}/{shard:05d}/[0-9]*.bin"))
        self.sizes = [self.fs.size(p) // self.dtype.itemsize for p in self.paths]
        self.low, self.high = shard_range(shard, plan.shards)
        # a sub-range is sorted once more after concatenation: about 3 copies of its rows are alive
        budget_rows = max(1, plan.max_memory_mb * 2**20 // (3 * self.dtype.itemsize))
        self.pieces = max(1, math.ceil(sum(self.sizes) / budget_rows))

    def __iter__(self) -> Iterator[np.ndarray]:
        """Concatenated rows of each sub-range (keys spread evenly, so pieces are about equal)."""
        cursors = [0] * len(self.paths)
        files = [self.fs.open(p, "rb") for p in self.paths]
        try:
            step = -(-(self.high - self.low) // self.pieces)
            for i in range(self.pieces):
                bound = min(self.high, self.low + (i + 1) * step)
                chunks = []
                for k, f in enumerate(files):
                    end = self._bisect(f, cursors[k], self.sizes[k], bound)
                    if end > cursors[k]:
                        f.seek(cursors[k] * self.dtype.itemsize)
                        chunks.append(np.frombuffer(f.read((end - cursors[k]) * self.dtype.itemsize), self.dtype))
                    cursors[k] = end
                yield np.concatenate(chunks) if chunks else np.empty(0, self.dtype)
        finally:
            for f in files:
                f.close()

    def _bisect(self, f, lo: int, hi: int, bound: int) -> int:
        """First row in [lo, hi) whose key is >= bound (runs are sorted by key)."""
        if bound >= 1 << 64:
            return hi
        offset = self.dtype.fields[self.key][1]
        while lo < hi:
            mid = (lo + hi) // 2
            f.seek(mid * self.dtype.itemsize + offset)
            if int.from_bytes(f.read(8), "little") < bound:
                lo = mid + 1
            else:
                hi = mid
        return lo


def read_at(prepared_folder: str, nodes, columns: list[str]) -> dict[int, tuple]:
    """{node: (values of columns)} read back from the prepared parts, one part at a time."""
    fs, root = fsspec.core.url_to_fs(prepared_folder)
    by_part: dict[str, list[int]] = {}
    for node in sorted(int(x) for x in nodes):
        by_part.setdefault(node_part(node)[0], []).append(node)
    out: dict[int, tuple] = {}
    for part, members in by_part.items():
        with fs.open(f"{root}/{part}", "rb") as f:
            t = pq.read_table(f, columns=columns).take(pa.array([node_part(m)[1] for m in members]))
        rows = zip(*(t.column(c).to_pylist() for c in columns))
        out.update(zip(members, rows))
    return out


class SortedRuns:
    """An external sort of Arrow rows by one uint64 column, within a byte budget (the cluster step's spill).

    `add` buffers tables; each buffer of about budget/4 bytes is sorted and written as one run
    (<folder>/<n:05d>.parquet) in row groups of budget/(4 * FAN_IN) bytes. `groups` merges the runs,
    FAN_IN at a time (more runs take extra merge passes into fewer, longer runs), and yields tables
    sorted by the key that hold whole key groups (every row of a key in one table) of at most about
    `piece_rows` rows. A read row group and its sorted copies are the memory: about 3/4 of the
    budget. One key group larger than that is still yielded whole (it is one duplicate cluster).
    `peak_bytes`: the most Arrow bytes this sort held at once (buffer, or row groups being merged);
    `written`: the runs it wrote.
    """

    FAN_IN = 16

    def __init__(self, folder: str, schema: pa.Schema, key: str, budget_bytes: int, piece_rows: int = 1 << 16):
        self.fs, self.root = fsspec.core.url_to_fs(folder)
        if self.fs.exists(self.root):
            self.fs.rm(self.root, recursive=True)  # a crashed attempt's runs
        self.fs.makedirs(self.root, exist_ok=True)
        self.schema, self.key, self.budget, self.piece_rows = schema, key, max(1, budget_bytes), max(1, piece_rows)
        self.runs: list[str] = []
        self.buffer: list[pa.Table] = []
        self.buffered = self.peak_bytes = self.rows = 0
        self.written = 0  # runs written, merge passes included

    def add(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        self.buffer.append(table)
        self.buffered += table.nbytes
        self.rows += table.num_rows
        self.peak_bytes = max(self.peak_bytes, self.buffered)
        if self.buffered >= self.budget // 4:
            self._spill()

    def groups(self) -> Iterator[pa.Table]:
        """The rows in key order, as tables of whole key groups; the runs are removed once read."""
        if not self.runs:  # everything fit in the buffer: no run was written
            table = self._sorted(self.buffer)
            self.buffer, self.buffered = [], 0
            yield from self._pieces(table)
        else:
            self._spill()
            while len(self.runs) > self.FAN_IN:  # each pass merges FAN_IN runs into one
                self.runs = [
                    self._write(self._merge(self.runs[i : i + self.FAN_IN]))
                    for i in range(0, len(self.runs), self.FAN_IN)
                ]
            for table in self._merge(self.runs):
                yield from self._pieces(table)
        if self.fs.exists(self.root):  # an object store has no empty folders: with no run written, nothing is there
            self.fs.rm(self.root, recursive=True)

    def _sorted(self, tables: list[pa.Table]) -> pa.Table:
        table = pa.concat_tables(tables) if tables else self.schema.empty_table()
        return table.sort_by(self.key)

    def _pieces(self, table: pa.Table) -> Iterator[pa.Table]:
        """Slices of a sorted table at key boundaries, each about piece_rows rows (a larger group whole)."""
        keys = table.column(self.key).to_numpy()
        start = 0
        while start < len(keys):
            end = min(len(keys), start + self.piece_rows)
            if end < len(keys):  # move the cut to the start of the group it falls in, or past a huge group
                cut = int(np.searchsorted(keys, keys[end], "left"))
                end = cut if cut > start else int(np.searchsorted(keys, keys[end], "right"))
            yield table.slice(start, end - start)
            start = end

    def _spill(self) -> None:
        if self.buffer:
            table = self._sorted(self.buffer)
            self.buffer, self.buffered = [], 0
            self.runs.append(self._write(iter([table])))

    def _write(self, tables: Iterator[pa.Table]) -> str:
        path = f"{self.root}/{self.written:05d}.parquet"
        self.written += 1
        with self.fs.open(path, "wb") as f, pq.ParquetWriter(f, self.schema, compression="none") as w:
            for table in tables:
                if table.num_rows == 0:
                    continue
                row_bytes = max(1, table.nbytes // max(1, table.num_rows))
                w.write_table(table, row_group_size=max(1, self.budget // (4 * self.FAN_IN * row_bytes)))
        return path

    def _merge(self, paths: list[str]) -> Iterator[pa.Table]:
        """Merge sorted runs: yield every held row below the smallest 'last key' of the runs still being read."""
        files = [pq.ParquetFile(p, filesystem=self.fs) for p in paths]  # a local fs is read natively
        read = [0] * len(files)
        held = [self.schema.empty_table() for _ in files]

        def load(i: int) -> None:
            held[i] = pa.concat_tables([held[i], files[i].read_row_group(read[i], use_threads=False)])
            read[i] += 1

        while True:
            for i, f in enumerate(files):
                while held[i].num_rows == 0 and read[i] < f.num_row_groups:
                    load(i)
            self.peak_bytes = max(self.peak_bytes, sum(t.nbytes for t in held))
            live = [i for i, f in enumerate(files) if read[i] < f.num_row_groups]
            if not live:  # every run is in memory: the rest is whole
                yield self._sorted(held)
                break
            # no row at or past `bound` is complete yet: a run still being read may hold more of its key
            bound = min(held[i].column(self.key)[-1].as_py() for i in live)
            out = []
            for i, t in enumerate(held):
                cut = int(np.searchsorted(t.column(self.key).to_numpy(), bound, "left"))
                out.append(t.slice(0, cut))
                held[i] = t.slice(cut)
            if any(t.num_rows for t in out):
                yield self._sorted(out)
            else:  # one key spans past the held row groups: read on in the runs that end in it
                for i in live:
                    if held[i].column(self.key)[-1].as_py() == bound:
                        load(i)
        for p in paths:
            self.fs.rm(p)
