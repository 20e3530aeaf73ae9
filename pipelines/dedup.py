"""Exact and MinHash near-duplicate removal within each source, in three datatrove-shaped parts.

1. `DedupSignature` (in the prepare tasks): a content hash of the normalized text and the MinHash
   LSH band hashes (recipe.dedup: buckets x hashes per bucket over word n-grams), computed with
   datatrove's own `MinhashDedupSignature` hashing; `PreparedWriter` stores documents + hashes.
2. `DuplicateFinder` (one task): first gives every record a unique id (an id repeated within a
   source, as in re-crawled files, gets '#k' on its k-th repeat in input order), then groups equal
   content hashes (exact duplicates), then documents sharing any LSH band (candidates), keeps a
   candidate pair only when the true Jaccard similarity of their n-gram sets reaches the threshold,
   and unions them; in each group the smallest id is kept. Ids are stable, so the result does not
   depend on the number of tasks. The drop list is keyed by (prepared part, row), not by input id.
3. `PreparedReader` (in the shard tasks): reads the prepared documents back under their unique ids,
   minus the duplicates.

Documents are compared only with documents of their own source: the same text in two sources is
kept in both (a mixture weighs sources separately).

Why not datatrove's four-stage MinHash flow: it writes signature, bucket and cluster files per
task and needs the buckets stage to be its own executor run; at the sizes one process handles the
band hashes fit in memory, and verifying candidates against the real Jaccard makes the 0.9
threshold exact instead of the LSH curve's approximation.
"""
from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from typing import Any, Iterator

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
from datatrove.utils.text import TextNormConfig

from corpus.errors import DemixError
from corpus.recipe import DedupConfig
from pipelines.filters import WORD_TOKENIZER
from pipelines.stats import CountingStep

# unit, row: the record's origin (input unit index in list order, record within it), to order repeated ids
PREPARED_SCHEMA = pa.schema([("source", pa.string()), ("id", pa.string()), ("text", pa.string()),
                             ("hash", pa.string()), ("bands", pa.list_(pa.uint64())),
                             ("unit", pa.int32()), ("row", pa.int64())])
# <work>/dedup.parquet: one row per prepared record that is dropped or renamed, keyed by where it is
# (part: prepared file name, pos: row in it), since input ids may repeat. id: the record's unique id
# (its input id, or that id + '#k' for the k-th repeat); reason: 'exact_duplicate' | 'near_duplicate',
# or null for a record kept under a new id.
DROP_SCHEMA = pa.schema([("part", pa.string()), ("pos", pa.int64()), ("source", pa.string()), ("id", pa.string()),
                         ("reason", pa.string())])
PART_DOCS = 50_000
_NORM = TextNormConfig(norm_numbers=False)  # numbers carry the content of math and code
_SIMPLE_WORD = re.compile(r"[^\W_]+")


def content_hash(text: str) -> str:
    """Hash of the normalized text (sha1, 32 hex chars): equal hashes are exact duplicates."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:32]


class MinHasher:
    """MinHash signatures and LSH band hashes (seeded, deterministic).

    Word n-grams of the lower-cased text without punctuation are hashed by combining per-word xxh64
    hashes in numpy (no per-n-gram string joins); the permutation parameters are datatrove's
    `MinhashDedupSignature` ones (seeded), evaluated in row chunks to bound memory.
    """

    CHUNK = 4096

    def __init__(self, cfg: DedupConfig, seed: int = 1):
        self.cfg = cfg
        sig = MinhashDedupSignature(
            output_folder="memory://unused",
            config=MinhashConfig(n_grams=cfg.ngram, num_buckets=cfg.num_buckets,
                                 hashes_per_bucket=cfg.hashes_per_bucket, seed=seed, norm_config=_NORM),
            language=WORD_TOKENIZER,
        )
        self._a, self._b = sig.parameters
        # odd multipliers that mix the n word hashes of an n-gram into one 64-bit value
        self._mix = np.random.RandomState(seed).randint(1, 2**62, size=cfg.ngram, dtype=np.uint64) * 2 + 1

    def shingles(self, text: str) -> np.ndarray:
        """Unique 64-bit hashes of the word n-grams (the whole text when shorter than n words)."""
        words = _SIMPLE_WORD.findall(text.lower())
        h = np.fromiter(map(xxhash.xxh64_intdigest, words), dtype=np.uint64, count=len(words))
        n = self.cfg.ngram
        if len(h) < n:
            return np.array([xxhash.xxh64_intdigest(" ".join(words))], dtype=np.uint64)
        with np.errstate(over="ignore"):
            g = h[: len(h) - n + 1] * self._mix[0]
            for k in range(1, n):
                g = g + h[k: len(h) - n + 1 + k] * self._mix[k]
        return np.unique(g)

    def signature(self, shingles: np.ndarray) -> np.ndarray:
        """Min over shingles of the top 32 bits of (s * a + b) mod 2**64, per permutation.

        Multiply-shift instead of datatrove's mod (2**61 - 1): the same universal family, without
        a 64-bit division per element (about 3x faster in numpy).
        """
        out = np.full(self._a.shape[1], np.iinfo(np.uint64).max, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for i in range(0, len(shingles), self.CHUNK):
                block = shingles[i: i + self.CHUNK].reshape(-1, 1)
                np.minimum(out, ((block * self._a + self._b) >> np.uint64(32)).min(axis=0), out=out)
        return out

    def bands(self, text: str) -> list[int]:
        """One 64-bit hash per LSH band (num_buckets values)."""
        sig = self.signature(self.shingles(text)).reshape(self.cfg.num_buckets, self.cfg.hashes_per_bucket)
        return [xxhash.xxh64_intdigest(row.tobytes(), seed=i) for i, row in enumerate(sig)]


def jaccard(a: set[int], b: set[int]) -> float:
    """|a & b| / |a | b| (1.0 for two empty sets)."""
    return len(a & b) / len(a | b) if a or b else 1.0


class DedupSignature(CountingStep):
    """Attach the content hash and MinHash band hashes to each document (drops nothing)."""

    name = "signature"
    type = "🫂 - DEDUP"

    def __init__(self, cfg: DedupConfig):
        super().__init__()
        self.cfg = cfg
        self._hasher: MinHasher | None = None

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        self._hasher = self._hasher or MinHasher(self.cfg)
        for doc in data:
            doc.metadata["hash"] = content_hash(doc.text)
            doc.metadata["bands"] = self._hasher.bands(doc.text) if self.cfg.minhash else []
            yield doc


class PreparedWriter(CountingStep):
    """Write this task's filtered documents and their hashes to <work>/prepared/<rank>_<part>.parquet."""

    name = "prepare_write"
    type = "💽 - WRITER"

    def __init__(self, folder: str, part_docs: int = PART_DOCS):
        super().__init__()
        self.folder, self.part_docs = folder.rstrip("/"), part_docs

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        fs, root = fsspec.core.url_to_fs(self.folder)
        fs.makedirs(root, exist_ok=True)
        for stale in fs.glob(f"{root}/{rank:05d}_*.parquet") + fs.glob(f"{root}/.tmp-*-{rank:05d}_*"):
            fs.rm(stale)  # a crashed attempt of this task: it is redone from the start
        buf: list[Document] = []
        part = 0
        for doc in data:
            buf.append(doc)
            if len(buf) >= self.part_docs:
                self._flush(fs, root, rank, part, buf)
                part, buf = part + 1, []
        self._flush(fs, root, rank, part, buf)
        return
        yield  # a generator that consumes the pipeline

    def _flush(self, fs, root: str, rank: int, part: int, docs: list[Document]) -> None:
        table = pa.table({
            "source": [d.metadata["source"] for d in docs], "id": [d.id for d in docs], "text": [d.text for d in docs],
            "hash": [d.metadata["hash"] for d in docs], "bands": [d.metadata["bands"] for d in docs],
            "unit": [d.metadata["unit"] for d in docs], "row": [d.metadata["row"] for d in docs],
        }, schema=PREPARED_SCHEMA)
        path = f"{root}/{rank:05d}_{part:05d}.parquet"
        tmp = f"{root}/.tmp-{rank:05d}_{part:05d}.parquet"
        with fs.open(tmp, "wb") as f:
            pq.write_table(table, f, compression="zstd")
        fs.mv(tmp, path)


class DedupError(DemixError):
    """Prepared files or a drop file this version cannot read (an older build's work folder)."""


def _read_parts(fs, files: list[str], columns: list[str]) -> pa.Table:
    """Concatenated `columns` of the prepared parts, with each record's part name and row in it."""
    tables = []
    for p in files:
        with fs.open(p, "rb") as f:
            pf = pq.ParquetFile(f)
            missing = [c for c in columns if c not in pf.schema_arrow.names]
            if missing:
                raise DedupError(f"{p}: prepared part lacks column(s) {', '.join(missing)} (written by an older "
                                 "version); rebuild with --overwrite")
            t = pf.read(columns=columns)
        tables.append(t.append_column("part", pa.array([p.rsplit("/", 1)[-1]] * t.num_rows, pa.string()))
                       .append_column("pos", pa.array(np.arange(t.num_rows, dtype=np.int64))))
    if not tables:
        return pa.table({c: pa.array([], PREPARED_SCHEMA.field(c).type) for c in columns} |
                        {"part": pa.array([], pa.string()), "pos": pa.array([], pa.int64())})
    return pa.concat_tables(tables)


def unique_ids(sources: list[str], ids: list[str], origins: list[tuple[int, int]]) -> list[str]:
    """Each record's id, with '#k' appended to the k-th repeat of an id within its source.

    Repeats are ordered by origin (input unit, record in it), which does not depend on the number of
    tasks, so a rerun gives the same names; a '#k' that is itself an id of the source is skipped over.
    """
    seen: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, key in enumerate(zip(sources, ids)):
        seen[key].append(i)
    out = list(ids)
    taken = set(seen)
    for (src, did), members in sorted(seen.items()):
        if len(members) == 1:
            continue
        k = 0
        for i in sorted(members, key=lambda m: origins[m])[1:]:
            k += 1
            while (src, f"{did}#{k}") in taken:
                k += 1
            out[i] = f"{did}#{k}"
            taken.add((src, out[i]))
    return out


def find_duplicates(prepared_folder: str, cfg: DedupConfig) -> pa.Table:
    """The drop list (DROP_SCHEMA): every prepared record that is dropped as a duplicate or renamed.

    A record whose id repeats within its source gets a unique id first (`unique_ids`), so a duplicate
    group keeps exactly one copy and two different texts under one id both survive, under two ids.
    In each group of exact or near duplicates the smallest (unique) id is kept.
    """
    fs, root = fsspec.core.url_to_fs(prepared_folder)
    files = sorted(fs.glob(f"{root}/[0-9]*.parquet"))
    meta = _read_parts(fs, files, ["source", "id", "hash", "bands", "unit", "row"])
    sources, ids, hashes, units, rows, parts, pos = (meta.column(c).to_pylist() for c in (
        "source", "id", "hash", "unit", "row", "part", "pos"))
    uids = unique_ids(sources, ids, list(zip(units, rows)))
    bands = meta.column("bands").to_pylist()
    drops: dict[int, str] = {}
    first: dict[tuple[str, str], int] = {}
    order = sorted(range(len(uids)), key=lambda i: uids[i])
    if cfg.exact:
        for i in order:
            key = (sources[i], hashes[i])
            if key in first:
                drops[i] = "exact_duplicate"
            else:
                first[key] = i
    if cfg.minhash:
        near = _near_duplicates(fs, root, [i for i in order if i not in drops], sources, uids, bands, parts, pos, cfg)
        drops.update({i: "near_duplicate" for i in near})
    listed = sorted(set(drops) | {i for i in range(len(uids)) if uids[i] != ids[i]}, key=lambda i: (parts[i], pos[i]))
    return pa.table({"part": [parts[i] for i in listed], "pos": [pos[i] for i in listed],
                     "source": [sources[i] for i in listed], "id": [uids[i] for i in listed],
                     "reason": [drops.get(i) for i in listed]}, schema=DROP_SCHEMA)


def _near_duplicates(fs, root: str, order: list[int], sources: list[str], ids: list[str], bands: list[list[int]],
                     parts: list[str], pos: list[int], cfg: DedupConfig) -> set[int]:
    """Indices of near duplicates: every pair sharing an LSH band is checked (exact Jaccard) and unioned.

    Checking each bucket's members against its first member only would miss a pair a, b whose shared
    buckets are all headed by a dissimilar x. All pairs of a bucket are checked instead, skipping pairs
    already in one group: a bucket of k near-copies costs about k checks, and dissimilar texts share a
    band of `hashes_per_bucket` hashes rarely (probability J**hashes_per_bucket), so buckets stay small.
    """
    groups: dict[tuple[str, int, int], list[int]] = defaultdict(list)
    for i in order:  # sorted by id, so each bucket's members are too
        for b, h in enumerate(bands[i] or ()):
            groups[(sources[i], b, h)].append(i)
    buckets = [g for g in groups.values() if len(g) > 1]
    if not buckets:
        return set()
    wanted = sorted({i for g in buckets for i in g}, key=lambda i: (parts[i], pos[i]))
    texts: dict[int, str] = {}
    for part in sorted({parts[i] for i in wanted}):  # only candidate texts are read back
        column = pq.read_table(fs.open(f"{root}/{part}", "rb"), columns=["text"]).column("text")
        texts.update((i, column[pos[i]].as_py()) for i in wanted if parts[i] == part)
    hasher = MinHasher(cfg)
    shingles: dict[int, set[int]] = {}
    parent: dict[int, int] = {}
    rejected: set[tuple[int, int]] = set()

    def find(x: int) -> int:
        while parent.get(x, x) != x:
            parent[x] = parent.get(parent[x], parent[x])
            x = parent[x]
        return x

    def shingled(i: int) -> set[int]:
        if i not in shingles:
            shingles[i] = set(hasher.shingles(texts[i]).tolist())
        return shingles[i]

    for g in sorted(buckets):
        for k, b in enumerate(g):
            for a in g[:k]:
                ra, rb = find(a), find(b)
                if ra == rb or (a, b) in rejected:  # already one group, or this pair failed in another band
                    continue
                if jaccard(shingled(a), shingled(b)) >= cfg.threshold:
                    lo, hi = (ra, rb) if ids[ra] < ids[rb] else (rb, ra)
                    parent[hi] = lo  # the root is the smaller id, which is kept
                else:
                    rejected.add((a, b))
    return {i for i in parent if find(i) != i}


class DuplicateFinder(CountingStep):
    """One task: write <work>/dedup.parquet (the drop list) from every task's prepared files."""

    name = "dedup"
    type = "🫂 - DEDUP"

    def __init__(self, prepared_folder: str, output: str, cfg: DedupConfig):
        super().__init__()
        self.prepared_folder, self.output, self.cfg = prepared_folder, output, cfg

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        table = find_duplicates(self.prepared_folder, self.cfg)
        fs, path = fsspec.core.url_to_fs(self.output)
        with fs.open(path + ".tmp", "wb") as f:
            pq.write_table(table, f)
        fs.mv(path + ".tmp", path)


def read_drop_list(drop_file: str) -> dict[tuple[str, int], tuple[str, str | None]]:
    """{(part, pos): (unique id, drop reason or None for a record kept under a new id)} of a drop file."""
    fs, path = fsspec.core.url_to_fs(drop_file)
    t = pq.read_table(fs.open(path, "rb"))
    if t.schema.names != DROP_SCHEMA.names:
        raise DedupError(f"{drop_file}: columns {t.schema.names}, expected {DROP_SCHEMA.names} (written by an "
                         "older version); rebuild with --overwrite")
    return {(p, i): (d, r) for p, i, d, r in zip(*(t.column(c).to_pylist() for c in ("part", "pos", "id", "reason")))}


def kept_records(prepared_folder: str, drop_file: str | None, columns: tuple[str, ...] = ("source",)) -> Iterator[tuple]:
    """(part path, pos, unique id, *columns) of every prepared record the drop list keeps, in file order."""
    fs, root = fsspec.core.url_to_fs(prepared_folder)
    decisions = read_drop_list(drop_file) if drop_file else {}
    for path in sorted(fs.glob(f"{root}/[0-9]*.parquet")):
        part = path.rsplit("/", 1)[-1]
        t = pq.read_table(fs.open(path, "rb"), columns=["id", *columns])
        for i, (did, *values) in enumerate(zip(*(t.column(c).to_pylist() for c in ("id", *columns)))):
            uid, reason = decisions.get((part, i), (did, None))
            if reason is None:
                yield (path, i, uid, *values)


class PreparedReader(CountingStep):
    """Read this task's prepared documents under their unique ids, dropping those the drop list names."""

    name = "dedup"
    type = "📖 - READER"

    def __init__(self, prepared_folder: str, drop_file: str):
        super().__init__()
        self.prepared_folder, self.drop_file = prepared_folder, drop_file

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        fs, root = fsspec.core.url_to_fs(self.prepared_folder)
        decisions = read_drop_list(self.drop_file)
        for path in sorted(fs.glob(f"{root}/{rank:05d}_*.parquet")):
            part = path.rsplit("/", 1)[-1]
            t = pq.read_table(fs.open(path, "rb"), columns=["source", "id", "text"])
            for i, (src, did, text) in enumerate(zip(*(t.column(c).to_pylist() for c in ("source", "id", "text")))):
                self.count_in(src)
                uid, reason = decisions.get((part, i), (did, None))
                if reason is not None:
                    self.count_drop(src, reason)
                    continue
                if uid != did:
                    self.stat_update(f"{src}|renamed_repeated_id")  # a log counter, not a step_stats reason
                self.count_out(src)
                yield Document(text=text, id=uid, metadata={"source": src})


def drop_counts(drop_file: str) -> dict[str, Any]:
    """{source: {reason: count}} of a drop file (for summaries); renamed records are not drops."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    fs, path = fsspec.core.url_to_fs(drop_file)
    t = pq.read_table(fs.open(path, "rb"), columns=["source", "reason"])
    for s, r in zip(t.column("source").to_pylist(), t.column("reason").to_pylist()):
        if r is not None:
            out[s][r] += 1
    return {k: dict(v) for k, v in out.items()}
