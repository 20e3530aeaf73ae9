"""Tokenizer preparation, batched tokenization and the Parquet token-shard writer.

Tokenization uses tokenizers' `encode_batch_fast` (no offsets; falls back to `encode_batch`) on
bounded batches. The writer splits documents into train/validation by a stable hash of the id and
writes `manifests.shardfile` shards atomically; a rerun of a task first removes what a crashed
attempt of that task left, then writes the same bytes again.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.data import Document, DocumentsPipeline

from corpus import Recipe
from corpus.tokenizer import load_tokenizer, save_tokenizer, tokenizer_hash, train_bpe
from manifests import read_shard_record, shard_path, shard_table, write_shard_atomic
from pipelines.dedup import kept_records
from pipelines.stats import CountingStep

TOKENIZER_DIR = "tokenizer"
BATCH_DOCS, BATCH_CHARS = 2048, 1 << 20  # bounded tokenizer batches (1 MB: faster than 8 MB here, raw and ours)


def is_validation(doc_id: str, fraction: float) -> bool:
    """Stable split: the first 8 bytes of blake2b(id) as a fraction of 2**64 fall below `fraction`."""
    h = int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest(), "big")
    return h < fraction * 2**64


def _sample_key(doc_id: str) -> bytes:
    return hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8, person=b"bpe-samp").digest()


def training_sample(prepared_folder: str, drop_file: str | None, n_docs: int) -> list[str]:
    """A deterministic sample of about `n_docs` kept documents, split evenly over sources (by unique id)."""
    by_source: dict[str, list[tuple[bytes, str, str, int]]] = {}
    for path, pos, uid, source in kept_records(prepared_folder, drop_file):
        by_source.setdefault(source, []).append((_sample_key(uid), uid, path, pos))
    per_source = max(1, n_docs // max(1, len(by_source)))
    chosen = [r for rows in by_source.values() for r in sorted(rows)[:per_source]]
    fs, _ = fsspec.core.url_to_fs(prepared_folder)
    texts: dict[str, str] = {}
    for path in sorted({r[2] for r in chosen}):
        column = pq.read_table(fs.open(path, "rb"), columns=["text"]).column("text")
        texts.update((uid, column[pos].as_py()) for _, uid, p, pos in chosen if p == path)
    return [texts[i] for i in sorted(texts)]


def prepare_tokenizer(recipe: Recipe, out: str, prepared_folder: str | None = None,
                      drop_file: str | None = None) -> Path:
    """Make <out>/tokenizer (reused when present): copy recipe.tokenizer.path, fetch .hub, or train BPE.

    Raises ValueError when the tokenizer lacks the EOS token.
    """
    spec = recipe.tokenizer
    folder = Path(out) / TOKENIZER_DIR
    if (folder / "tokenizer.json").exists():
        return folder
    if spec.path:
        tok = load_tokenizer(spec.path)
    elif spec.hub:
        from huggingface_hub import hf_hub_download

        tok = load_tokenizer(hf_hub_download(spec.hub, "tokenizer.json"))
    else:
        if prepared_folder is None:
            raise ValueError("training a tokenizer needs the prepared documents")
        tok = train_bpe(training_sample(prepared_folder, drop_file, spec.train_sample_docs),
                        vocab_size=spec.train_vocab_size, eos_token=spec.eos_token)
    if tok.token_to_id(spec.eos_token) is None:
        raise ValueError(f"{recipe.path}: tokenizer.eos_token: {spec.eos_token!r} is not in the tokenizer's vocabulary")
    tmp = folder.with_name(f".{TOKENIZER_DIR}.tmp")
    save_tokenizer(tok, tmp, eos_token=spec.eos_token, name=spec.display_name)
    os.replace(tmp, folder)
    return folder


def encode_texts(tok, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, no special tokens; `encode_batch_fast` when this tokenizers has it."""
    encode = getattr(tok, "encode_batch_fast", None) or tok.encode_batch
    return [e.ids for e in encode(texts, add_special_tokens=False)]


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
    """Put each document's token ids in metadata['tokens'] (documents with no tokens are dropped)."""

    name = "tokenize"
    type = "🔢 - TOKENIZER"

    def __init__(self, tokenizer_path: str, batch_docs: int = BATCH_DOCS, batch_chars: int = BATCH_CHARS):
        super().__init__()
        self.tokenizer_path, self.batch_docs, self.batch_chars = tokenizer_path, batch_docs, batch_chars
        self._tok = None

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        self._tok = self._tok or load_tokenizer(self.tokenizer_path)
        # One batch ahead: the next batch encodes (tokenizers releases the GIL and fans out over the
        # cores) while this thread hands the previous one downstream, so writing hides behind encoding.
        with ThreadPoolExecutor(1, thread_name_prefix="tokenize") as pool:
            pending: tuple[list[Document], Future] | None = None
            for batch in batches(data, self.batch_docs, self.batch_chars):
                ahead = pool.submit(encode_texts, self._tok, [d.text for d in batch])
                if pending is not None:
                    yield from self._emit(pending[0], self._wait(pending[1]))
                pending = (batch, ahead)
            if pending is not None:
                yield from self._emit(pending[0], self._wait(pending[1]))

    def _wait(self, future: Future) -> list[list[int]]:
        with self.track_time("batch"):
            return future.result()

    def _emit(self, batch: list[Document], ids: list[list[int]]) -> DocumentsPipeline:
        counts: dict[str, list[int]] = {}  # source -> [in, out, tokens]; stats once per batch, not per doc
        kept = []
        for doc, toks in zip(batch, ids):
            c = counts.setdefault(doc.metadata["source"], [0, 0, 0])
            c[0] += 1
            if toks:
                doc.metadata["tokens"] = toks
                c[1] += 1
                c[2] += len(toks)
                kept.append(doc)
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
    """Write train/validation token shards per source for this task, and a record file of them."""

    name = "write"
    type = "💽 - WRITER"

    def __init__(self, out: str, sources: dict[str, ShardInfo], meta: dict[str, str], validation_fraction: float,
                 records_folder: str, max_shard_tokens: int = 32_000_000):
        super().__init__()
        self.out, self.sources, self.meta = out.rstrip("/"), dict(sources), dict(meta)
        self.validation_fraction, self.records_folder = validation_fraction, records_folder.rstrip("/")
        self.max_shard_tokens = max_shard_tokens

    def _clean(self, fs, rank: int) -> None:
        for folder in ("shards", "validation"):
            for stale in fs.glob(f"{self.out}/{folder}/*/{rank:05d}_*.parquet") + \
                    fs.glob(f"{self.out}/{folder}/*/.tmp-*-{rank:05d}_*.parquet"):
                fs.rm(stale)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        fs, _ = fsspec.core.url_to_fs(self.out)
        self.meta["demix.tokenizer_hash"] = tokenizer_hash(f"{self.out}/{TOKENIZER_DIR}")
        self._clean(fs, rank)
        buffers: dict[tuple[str, str], list[Document]] = {}
        sizes: dict[tuple[str, str], int] = {}
        seqs: dict[tuple[str, str], int] = {}
        records: list[dict[str, Any]] = []
        for doc in data:
            src = doc.metadata["source"]
            split = "validation" if is_validation(doc.id, self.validation_fraction) else "train"
            key = (src, split)
            doc.metadata["tokens"] = np.asarray(doc.metadata["tokens"], dtype=np.uint32)  # 4 bytes a token
            buffers.setdefault(key, []).append(doc)
            sizes[key] = sizes.get(key, 0) + len(doc.metadata["tokens"])
            if sizes[key] >= self.max_shard_tokens:
                records.append(self._flush(fs, rank, key, buffers.pop(key), seqs))
                sizes[key] = 0
        for key in sorted(buffers):
            records.append(self._flush(fs, rank, key, buffers[key], seqs))
        with fsspec.open(f"{self.records_folder}/{rank:05d}.json.tmp", "w") as f:
            json.dump(records, f, indent=1)
        fs.mv(f"{self.records_folder}/{rank:05d}.json.tmp", f"{self.records_folder}/{rank:05d}.json")
        return
        yield  # a generator that consumes the pipeline

    def _flush(self, fs, rank: int, key: tuple[str, str], docs: list[Document], seqs: dict) -> dict[str, Any]:
        src, split = key
        seq = seqs.get(key, 0)
        seqs[key] = seq + 1
        info = self.sources[src]
        meta = {**self.meta, "demix.source": src, "demix.split": split, "demix.domain": info.domain,
                "demix.tier": info.tier, "demix.candidate": info.candidate}
        table = shard_table([d.id for d in docs], [d.text for d in docs], token_lists([d.metadata["tokens"] for d in docs]), meta)
        path = shard_path(self.out, src, split, rank, seq)
        write_shard_atomic(table, path, fs=fs)
        rec = read_shard_record(path, self.out)
        self.count_in(src, len(docs))
        self.count_out(src, len(docs))
        self.stat_update(f"{src}|split|{split}", value=len(docs))
        return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in rec.__dict__.items()}
