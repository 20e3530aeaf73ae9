"""The build's tokenizer in <out>/tokenizer: a pretrained one fetched as published, or a BPE trained on a
bounded, seeded sample of the kept documents (`training_sample`)."""

from __future__ import annotations

import hashlib
import heapq
import os
import tempfile
from pathlib import Path

import fsspec
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from corpus import Recipe, RecipeError
from corpus.tokenizer import TokenizerError, fetch_tokenizer, parse_tokenizer, train_bpe, write_tokenizer_folder
from pipelines.dedup import kept_records

TOKENIZER_DIR = "tokenizer"


def _sample_key(doc_id: str, seed: int) -> bytes:
    salt = b"" if seed == 0 else seed.to_bytes(8, "big", signed=True)  # seed 0: the keys of earlier builds
    return hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8, person=b"bpe-samp", salt=salt).digest()


def training_sample(
    prepared_folder: str, drop_file: str | None, n_docs: int, max_bytes: int = 100_000_000, seed: int = 0
) -> list[str]:
    """A seeded sample of at most `n_docs` kept documents and `max_bytes` UTF-8 bytes, split evenly over sources.

    Each source keeps the `n_docs // sources` documents whose seeded hash of the unique id is smallest, so
    the sample does not depend on how documents fell into tasks or parts. Memory is bounded by the sample:
    the id column of every prepared part is scanned through one heap per source, and texts are read only
    from the parts that hold a chosen document. Sources then take documents in turn, in hash order, until
    the byte budget is spent.
    """
    per_source = max(1, n_docs // max(1, len(_prepared_sources(prepared_folder))))
    heaps: dict[str, list[tuple[bytes, str, str, int]]] = {}
    for path, pos, uid, source in kept_records(prepared_folder, drop_file):
        heap = heaps.setdefault(source, [])
        # a max-heap of the per_source smallest keys (negated bytes do not sort, so keys are inverted)
        item = (bytes(255 - b for b in _sample_key(uid, seed)), uid, path, pos)
        if len(heap) < per_source:
            heapq.heappush(heap, item)
        elif item > heap[0]:
            heapq.heapreplace(heap, item)
    chosen = [r for rows in heaps.values() for r in rows]
    fs, _ = fsspec.core.url_to_fs(prepared_folder)
    texts: dict[str, str] = {}
    for path in sorted({r[2] for r in chosen}):
        column = pq.read_table(fs.open(path, "rb"), columns=["text"]).column("text")
        texts.update((uid, column[pos].as_py()) for _, uid, p, pos in chosen if p == path)
    queues = [sorted(rows, reverse=True) for _, rows in sorted(heaps.items())]  # smallest key first
    taken, budget = [], max_bytes
    for rank in range(per_source):  # round robin: a byte budget that binds cuts every source alike
        for rows in queues:
            if rank < len(rows):
                budget -= len(texts[rows[rank][1]].encode("utf-8"))
                if budget < 0:
                    return [texts[i] for i in sorted(taken)]
                taken.append(rows[rank][1])
    return [texts[i] for i in sorted(taken)]  # id order, as the sample always was: the trainer sees one order


def _prepared_sources(prepared_folder: str) -> set[str]:
    """The sources of a prepared folder (its parts' dictionary-encoded source column alone)."""
    fs, root = fsspec.core.url_to_fs(prepared_folder)
    return {
        s
        for path in sorted(fs.glob(f"{root}/[0-9]*.parquet"))
        for s in pq.read_table(fs.open(path, "rb"), columns=["source"]).column("source").unique().to_pylist()
    }


def pretrained_tokenizer(recipe: Recipe) -> bytes | None:
    """tokenizer.json's bytes of the recipe's pretrained tokenizer (tokenizer.path / .hub), fetched and checked:
    it parses and holds the EOS token. None when the recipe trains a BPE. Raises RecipeError naming the field."""
    spec = recipe.tokenizer
    if not (spec.path or spec.hub):
        return None
    try:
        data, _ = fetch_tokenizer(spec.hub or spec.path, hub=bool(spec.hub), revision=spec.revision)
        tok = parse_tokenizer(data, spec.hub or spec.path)
    except TokenizerError as e:
        raise RecipeError(f"{recipe.path}: {'tokenizer.hub' if spec.hub else 'tokenizer.path'}: {e}") from None
    _check_eos(recipe, tok)
    return data


def _check_eos(recipe: Recipe, tok) -> None:
    if tok.token_to_id(recipe.tokenizer.eos_token) is None:
        raise RecipeError(
            f"{recipe.path}: tokenizer.eos_token: {recipe.tokenizer.eos_token!r} is not in the vocabulary of "
            f"{recipe.tokenizer.hub or recipe.tokenizer.path}"
        )


def tokenizer_ready(out: str) -> bool:
    """True when <out>/tokenizer holds a tokenizer.json (written last: the folder is whole)."""
    fs, root = fsspec.core.url_to_fs(f"{out.rstrip('/')}/{TOKENIZER_DIR}/tokenizer.json")
    return fs.isfile(root)


def prepare_tokenizer(
    recipe: Recipe,
    out: str,
    prepared_folder: str | None = None,
    drop_file: str | None = None,
    pretrained: bytes | None = None,
) -> str:
    """Make <out>/tokenizer (reused when present; `out` a path or URL): the pretrained tokenizer (`pretrained`,
    the bytes `pretrained_tokenizer` fetched, or fetched here), or a BPE trained on the prepared documents.
    Returns the folder.

    A pretrained tokenizer.json is kept byte for byte, so <out>/tokenizer's hash is the published one.
    Raises RecipeError when it cannot be fetched or lacks the EOS token.
    """
    spec = recipe.tokenizer
    folder = f"{out.rstrip('/')}/{TOKENIZER_DIR}"
    fs, root = fsspec.core.url_to_fs(folder)
    if tokenizer_ready(out):
        return folder
    data = pretrained or pretrained_tokenizer(recipe)
    if data is None:
        if prepared_folder is None:
            raise ValueError("training a tokenizer needs the prepared documents")
        texts = training_sample(
            prepared_folder, drop_file, spec.train_sample_docs, spec.train_sample_bytes, spec.train_seed
        )
        tok = train_bpe(texts, vocab_size=spec.train_vocab_size, eos_token=spec.eos_token)
        _check_eos(recipe, tok)
        data = tok.to_str(pretty=True).encode("utf-8")
    if isinstance(fs, LocalFileSystem):  # made beside, then renamed into place: never half a folder
        tmp = Path(root).with_name(f".{TOKENIZER_DIR}.tmp")
        write_tokenizer_folder(tmp, data, eos_token=spec.eos_token, name=spec.display_name)
        os.replace(tmp, root)
        return folder
    with tempfile.TemporaryDirectory(prefix="demix-tokenizer-") as tmp:
        write_tokenizer_folder(tmp, data, eos_token=spec.eos_token, name=spec.display_name)
        # tokenizer.json goes last: the check above takes its presence for a whole folder
        for name in sorted(os.listdir(tmp), key=lambda n: n == "tokenizer.json"):
            fs.put_file(os.path.join(tmp, name), f"{root}/{name}")
    return folder
