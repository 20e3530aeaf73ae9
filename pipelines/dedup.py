"""Exact and MinHash near-duplicate removal within each source, in three datatrove-shaped parts.

1. `DedupSignature` (in the prepare tasks): a content hash of the normalized text and the MinHash
   LSH band hashes (recipe.dedup: buckets x hashes per bucket over word n-grams), computed with
   datatrove's own `MinhashDedupSignature` hashing; `PreparedWriter` stores documents + hashes.
2. `DuplicateFinder` (one task): groups equal content hashes (exact duplicates), then documents
   sharing any LSH band (candidates), keeps a candidate pair only when the true Jaccard similarity
   of their n-gram sets reaches the threshold, and unions them; in each group the smallest id is
   kept. Ids are stable, so the result does not depend on the number of tasks.
3. `PreparedReader` (in the shard tasks): reads the prepared documents back, minus the duplicates.

Why not datatrove's four-stage MinHash flow: it writes signature, bucket and cluster files per
task and needs the buckets stage to be its own executor run; at the sizes one process handles the
band hashes fit in memory, and verifying candidates against the real Jaccard makes the 0.9
threshold exact instead of the LSH curve's approximation.
"""
from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
from datatrove.utils.text import TextNormConfig

from corpus.recipe import DedupConfig
from pipelines.filters import WORD_TOKENIZER
from pipelines.stats import CountingStep

PREPARED_SCHEMA = pa.schema([("source", pa.string()), ("id", pa.string()), ("text", pa.string()),
                             ("hash", pa.string()), ("bands", pa.list_(pa.uint64()))])
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
        }, schema=PREPARED_SCHEMA)
        path = f"{root}/{rank:05d}_{part:05d}.parquet"
        tmp = f"{root}/.tmp-{rank:05d}_{part:05d}.parquet"
        with fs.open(tmp, "wb") as f:
            pq.write_table(table, f, compression="zstd")
        fs.mv(tmp, path)


def find_duplicates(prepared_folder: str, cfg: DedupConfig) -> pa.Table:
    """(source, id, reason) of every document to drop: 'exact_duplicate' or 'near_duplicate'."""
    fs, root = fsspec.core.url_to_fs(prepared_folder)
    files = sorted(fs.glob(f"{root}/[0-9]*.parquet"))
    tables = [pq.read_table(fs.open(p, "rb"), columns=["source", "id", "hash", "bands"]) for p in files]
    meta = pa.concat_tables(tables) if tables else PREPARED_SCHEMA.empty_table().drop(["text"])
    sources, ids, hashes = (meta.column(c).to_pylist() for c in ("source", "id", "hash"))
    bands = meta.column("bands").to_pylist()
    drops: dict[str, str] = {}
    first: dict[tuple[str, str], str] = {}
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    if cfg.exact:
        for i in order:
            key = (sources[i], hashes[i])
            if key in first:
                drops[ids[i]] = "exact_duplicate"
            else:
                first[key] = ids[i]
    if cfg.minhash:
        near = _near_duplicates(fs, files, [i for i in order if ids[i] not in drops], sources, ids, bands, cfg)
        drops.update({d: "near_duplicate" for d in near})
    src_of = dict(zip(ids, sources))
    keys = sorted(drops)
    return pa.table({"source": [src_of[k] for k in keys], "id": keys, "reason": [drops[k] for k in keys]})


def _near_duplicates(fs, files: list[str], order: list[int], sources: list[str], ids: list[str],
                     bands: list[list[int]], cfg: DedupConfig) -> set[str]:
    groups: dict[tuple[str, int, int], list[int]] = defaultdict(list)
    for i in order:
        for b, h in enumerate(bands[i] or ()):
            groups[(sources[i], b, h)].append(i)
    pairs = {(g[0], j) for g in groups.values() if len(g) > 1 for j in g[1:]}
    if not pairs:
        return set()
    wanted = {ids[i] for p in pairs for i in p}
    texts: dict[str, str] = {}
    for p in files:  # only candidate texts are read back
        t = pq.read_table(fs.open(p, "rb"), columns=["id", "text"],
                          filters=[("id", "in", list(wanted))]) if wanted else None
        if t is not None:
            texts.update(zip(t.column("id").to_pylist(), t.column("text").to_pylist()))
    hasher = MinHasher(cfg)
    shingles: dict[int, set[int]] = {}
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        while parent.get(x, x) != x:
            parent[x] = parent.get(parent[x], parent[x])
            x = parent[x]
        return x

    for a, b in sorted(pairs):
        if a not in shingles:
            shingles[a] = set(hasher.shingles(texts[ids[a]]).tolist())
        if b not in shingles:
            shingles[b] = set(hasher.shingles(texts[ids[b]]).tolist())
        sa, sb = shingles[a], shingles[b]
        if jaccard(sa, sb) >= cfg.threshold:
            ra, rb = find(a), find(b)
            if ra != rb:  # the root is the smaller id, which is kept
                lo, hi = (ra, rb) if ids[ra] < ids[rb] else (rb, ra)
                parent[hi] = lo
    return {ids[i] for i in parent if find(i) != i}


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


class PreparedReader(CountingStep):
    """Read this task's prepared documents, dropping the duplicates listed in the drop file."""

    name = "dedup"
    type = "📖 - READER"

    def __init__(self, prepared_folder: str, drop_file: str):
        super().__init__()
        self.prepared_folder, self.drop_file = prepared_folder, drop_file

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        fs, root = fsspec.core.url_to_fs(self.prepared_folder)
        drops = dict(zip(*(pq.read_table(fs.open(self.drop_file, "rb")).column(c).to_pylist() for c in ("id", "reason"))))
        for path in sorted(fs.glob(f"{root}/{rank:05d}_*.parquet")):
            t = pq.read_table(fs.open(path, "rb"), columns=["source", "id", "text"])
            for src, did, text in zip(*(t.column(c).to_pylist() for c in ("source", "id", "text"))):
                self.count_in(src)
                if did in drops:
                    self.count_drop(src, drops[did])
                    continue
                self.count_out(src)
                yield Document(text=text, id=did, metadata={"source": src})


def drop_counts(drop_file: str) -> dict[str, Any]:
    """{source: {reason: count}} of a drop file (for summaries)."""
    fs, path = fsspec.core.url_to_fs(drop_file)
    t = pq.read_table(fs.open(path, "rb"))
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for s, r in zip(t.column("source").to_pylist(), t.column("reason").to_pylist()):
        out[s][r] += 1
    return {k: dict(v) for k, v in out.items()}
