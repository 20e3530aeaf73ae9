"""Batched tokenization and the Parquet token-shard writer (the tokenizer itself: pipelines.build_tokenizer).

Tokenization uses tokenizers' `encode_batch_fast` (no offsets; falls back to `encode_batch`) on
small chunks spread over a few threads (`Tokenize`). The writer splits documents into train/validation by a stable hash of the id and
writes `manifests.shardfile` shards atomically; a rerun of a task first removes what a crashed
attempt of that task left, then writes the same bytes again.
"""

from __future__ import annotations

import array
import hashlib
import json
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
from datatrove.data import Document, DocumentsPipeline

from corpus.atomic import TMP_PREFIX, atomic_write
from corpus.tokenizer import (
    load_tokenizer,
    tokenizer_hash,
)
from manifests import ShardMeta, ShardRecord, shard_path, shard_table, write_shard_atomic
from manifests.manifest import file_modified
from pipelines.build_tokenizer import TOKENIZER_DIR
from pipelines.stats import CountingStep

BATCH_DOCS, BATCH_CHARS = 256, 1 << 17  # one encode call: small, so threads stay balanced (per-call cost is µs)
_UINT32 = next(c for c in "IL" if array.array(c).itemsize == 4)  # array typecode of a 4-byte unsigned int


def is_validation(doc_id: str, fraction: float) -> bool:
    """Stable split: the first 8 bytes of blake2b(id) as a fraction of 2**64 fall below `fraction`."""
    h = int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest(), "big")
    return h < fraction * 2**64


def encode_texts(tok, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, no special tokens; `encode_batch_fast` when this tokenizers has it."""
    encode = getattr(tok, "encode_batch_fast", None) or tok.encode_batch
    return [e.ids for e in encode(texts, add_special_tokens=False)]


def encode_flat(tok, texts: list[str]) -> tuple[np.ndarray, list[int]]:
    """Token ids of all `texts` as one uint32 array, and the end offset of each text in it.

    The same ids as `encode_texts`, held at 4 bytes a token instead of a Python int each.
    """
    encode = getattr(tok, "encode_batch_fast", None) or tok.encode_batch
    flat, ends = array.array(_UINT32), []
    for e in encode(texts, add_special_tokens=False):
        flat.extend(e.ids)  # one C loop per document; the list dies at once
        ends.append(len(flat))
    return np.frombuffer(flat, dtype=np.uint32), ends


def encoder_threads() -> int:
    """Encoding threads a Tokenize step uses by default: the CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextmanager
def tokenizers_serial() -> Iterator[None]:
    """Turn off tokenizers' own (rayon) thread pool while the block runs, then restore the setting.

    tokenizers reads TOKENIZERS_PARALLELISM at every batch call, so this takes effect at once.
    """
    saved = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = saved


def token_lists(tokens: list[np.ndarray]) -> pa.ListArray:
    """list<uint32> Arrow array from per-document uint32 arrays (one concatenation, no Python ints)."""
    offsets = np.zeros(len(tokens) + 1, dtype=np.int64)
    np.cumsum([len(t) for t in tokens], out=offsets[1:])
    if offsets[-1] >= 2**31:
        raise ValueError(f"{offsets[-1]} tokens do not fit one shard's int32 offsets; lower max_shard_tokens")
    values = np.concatenate(tokens).astype(np.uint32, copy=False) if tokens else np.zeros(0, np.uint32)
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values), type=pa.list_(pa.uint32()))


def batches(data: DocumentsPipeline, max_docs: int, max_chars: int) -> Iterator[list[Document]]:
    """Group documents into batches bounded in documents and characters."""
    batch, chars = [], 0
    for doc in data:
        batch.append(doc)
        chars += len(doc.text)
        if len(batch) >= max_docs or chars >= max_chars:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


class Tokenize(CountingStep):
    """Put each document's token ids (a uint32 array) in metadata['tokens']; documents with no tokens are dropped.

    Documents go to the encoder in small chunks (`batch_docs` / `batch_chars`) over `threads` Python
    threads, each a serial `encode_batch_fast` call with the GIL released; tokenizers' own rayon pool
    is off meanwhile. Up to `ahead` chunks per thread are in flight while this thread hands finished
    ones downstream in input order, so there is no barrier at the end of a batch where cores wait for
    its longest document, and no second pool whose threads spin against the writer's thread.
    """

    name = "tokenize"
    type = "🔢 - TOKENIZER"

    def __init__(
        self,
        tokenizer_path: str,
        batch_docs: int = BATCH_DOCS,
        batch_chars: int = BATCH_CHARS,
        threads: int | None = None,
        ahead: int = 2,
    ):
        super().__init__()
        self.tokenizer_path, self.batch_docs, self.batch_chars = tokenizer_path, batch_docs, batch_chars
        self.threads, self.ahead = threads, ahead
        self._tok = None

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        self._tok = self._tok or load_tokenizer(self.tokenizer_path)
        threads = self.threads or encoder_threads()
        # pool shuts down (in-flight chunks finish) before the parallelism setting is restored
        with tokenizers_serial(), ThreadPoolExecutor(threads, thread_name_prefix="tokenize") as pool:
            window: deque[tuple[list[Document], Future]] = deque()
            for chunk in batches(data, self.batch_docs, self.batch_chars):
                window.append((chunk, pool.submit(encode_flat, self._tok, [d.text for d in chunk])))
                if len(window) > self.ahead * threads:  # bounds the text and tokens held in flight
                    yield from self._emit(*self._wait(window.popleft()))
            while window:
                yield from self._emit(*self._wait(window.popleft()))

    def _wait(self, item: tuple[list[Document], Future]) -> tuple[list[Document], np.ndarray, list[int]]:
        with self.track_time("batch"):  # time this thread waits on the encoder
            return item[0], *item[1].result()

    def _emit(self, chunk: list[Document], flat: np.ndarray, ends: list[int]) -> DocumentsPipeline:
        counts: dict[str, list[int]] = {}  # source -> [in, out, tokens]; stats once per chunk, not per doc
        kept, start = [], 0
        for doc, end in zip(chunk, ends):
            c = counts.setdefault(doc.metadata["source"], [0, 0, 0])
            c[0] += 1
            if end > start:
                doc.metadata["tokens"] = flat[start:end]  # a view: the chunk's array is shared, not copied
                c[1] += 1
                c[2] += end - start
                kept.append(doc)
            start = end
        for src, (n_in, n_out, n_tok) in counts.items():
            self.count_in(src, n_in)
            self.count_out(src, n_out)
            self.stat_update(f"{src}|tokens", value=n_tok, unit="batch")
            if n_in > n_out:
                self.count_drop(src, "no_tokens", n_in - n_out)
        yield from kept


@dataclass(frozen=True)
class ShardInfo:
    """Footer facts of one source's shards."""

    domain: str
    tier: str
    candidate: str


class ShardWriter(CountingStep):
    """Write train/validation token shards per source for this task, and a record file of them.

    ``meta`` holds the build-wide footer entries (tokenizer, config_hash) as `ShardMeta.to_metadata`
    spells them; the writer adds the source's facts (``sources``), the split and the tokenizer hash.
    """

    name = "write"
    type = "💽 - WRITER"

    def __init__(
        self,
        out: str,
        sources: dict[str, ShardInfo],
        meta: dict[str, str],
        validation_fraction: float,
        records_folder: str,
        max_shard_tokens: int = 32_000_000,
    ):
        super().__init__()
        self.out, self.sources, self.shared = out.rstrip("/"), dict(sources), ShardMeta.fields_of(meta)
        self.validation_fraction, self.records_folder = validation_fraction, records_folder.rstrip("/")
        self.max_shard_tokens = max_shard_tokens

    def _clean(self, fs, rank: int) -> None:
        for folder in ("shards", "validation"):
            for stale in fs.glob(f"{self.out}/{folder}/*/{rank:05d}_*.parquet") + fs.glob(
                f"{self.out}/{folder}/*/{TMP_PREFIX}*-{rank:05d}_*.parquet"
            ):
                fs.rm(stale)
        # a killed attempt's record temporary ends in .json too: it must not outlive the rerun
        rec_fs, records = fsspec.core.url_to_fs(self.records_folder)
        for stale in rec_fs.glob(f"{records}/{TMP_PREFIX}*-{rank:05d}.json"):
            rec_fs.rm(stale)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        fs, _ = fsspec.core.url_to_fs(self.out)
        self.shared["tokenizer_hash"] = tokenizer_hash(f"{self.out}/{TOKENIZER_DIR}")
        self._clean(fs, rank)
        buffers: dict[tuple[str, str], list[Document]] = {}
        sizes: dict[tuple[str, str], int] = {}
        seqs: dict[tuple[str, str], int] = {}
        records: list[dict[str, Any]] = []
        for doc in data:
            src = doc.metadata["source"]
            # no split asked for: every document is train, and the per-document hash is skipped
            valid = self.validation_fraction > 0 and is_validation(doc.id, self.validation_fraction)
            split = "validation" if valid else "train"
            key = (src, split)
            doc.metadata["tokens"] = np.asarray(doc.metadata["tokens"], dtype=np.uint32)  # 4 bytes a token
            buffers.setdefault(key, []).append(doc)
            sizes[key] = sizes.get(key, 0) + len(doc.metadata["tokens"])
            if sizes[key] >= self.max_shard_tokens:
                records.append(self._flush(fs, rank, key, buffers.pop(key), seqs))
                sizes[key] = 0
        for key in sorted(buffers):
            records.append(self._flush(fs, rank, key, buffers[key], seqs))
        with atomic_write(f"{self.records_folder}/{rank:05d}.json") as f:
            json.dump(records, f, indent=1)
        return
        yield  # a generator that consumes the pipeline

    def _flush(self, fs, rank: int, key: tuple[str, str], docs: list[Document], seqs: dict) -> dict[str, Any]:
        src, split = key
        seq = seqs.get(key, 0)
        seqs[key] = seq + 1
        info = self.sources[src]
        meta = ShardMeta(
            **{
                **self.shared,
                "source": src,
                "split": split,
                "domain": info.domain,
                "tier": info.tier,
                "candidate": info.candidate,
            }
        )
        tokens = token_lists([d.metadata["tokens"] for d in docs])
        table = shard_table([d.id for d in docs], [d.text for d in docs], tokens, meta)
        path = shard_path(self.out, src, split, rank, seq)
        # the record comes from what was just written (sha256 hashed on the way out), not from reading the
        # shard back: the same row `read_shard_record` gives (tests/pipelines/test_tokenize.py)
        sha256 = write_shard_atomic(table, path, fs=fs)
        rec = ShardRecord(
            path=path[len(self.out) + 1 :],  # shard_path joined it onto self.out (a path or URL)
            source=src,
            split=split,
            n_docs=table.num_rows,
            n_tokens=int(tokens.offsets[-1].as_py()),
            n_bytes=fs.size(path),
            sha256=sha256,
            tokenizer=meta.tokenizer,
            config_hash=meta.config_hash,
            created_at=file_modified(fs, path),
        )
        self.count_in(src, len(docs))
        self.count_out(src, len(docs))
        self.stat_update(f"{src}|split|{split}", value=len(docs))
        return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in rec.__dict__.items()}
