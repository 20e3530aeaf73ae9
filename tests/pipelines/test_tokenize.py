"""The threaded Tokenize step: the same ids as `encode_batch`, in input order, into the shards; settings restored."""

from __future__ import annotations

import json
import os
import random

import numpy as np
import pyarrow.parquet as pq
import pytest
from pipeline_inputs import code_file, prose

from corpus.tokenizer import load_tokenizer, save_tokenizer, train_bpe
from manifests import read_shard_record
from pipelines.readers import ListReader
from pipelines.shards import ShardInfo, ShardWriter, Tokenize, encode_flat, encode_texts


def _texts(n: int = 120) -> list[str]:
    """Mixed sizes (one long document among short ones), non-ASCII, one empty text, repeated texts."""
    rng = random.Random(7)
    texts = [prose(rng) if i % 3 else code_file(rng, i) for i in range(n)]
    texts[5] = "Grüße, naïve café — 数学 ∑ x² ≤ 1 🙂\n" * 3
    texts[17] = ""  # no tokens: dropped and counted
    texts[40] = "x = 1\n" * 3000  # far longer than a chunk's character bound
    texts[41] = texts[42] = texts[3]  # the same text at three positions
    return texts


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    texts = _texts()
    folder = tmp_path_factory.mktemp("tok") / "tokenizer"
    save_tokenizer(train_bpe(texts, vocab_size=400), folder)
    return folder


def _tokenize(tok_dir, texts, **kw):
    step = Tokenize(str(tok_dir), **kw)
    return list(step.run(ListReader(texts, "src").run())), step


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"threads": 1},
        {"threads": 3, "batch_docs": 3, "batch_chars": 200, "ahead": 1},
        {"threads": 2, "batch_docs": 1},
    ],
)
def test_ids_equal_encode_batch_in_input_order(tok_dir, kw):
    texts = _texts()
    tok = load_tokenizer(tok_dir)
    want = [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]  # the slow path, with offsets
    docs, step = _tokenize(tok_dir, texts, **kw)
    kept = [i for i, w in enumerate(want) if w]
    assert [d.id for d in docs] == [f"src/{i}" for i in kept]  # order kept, only the empty text dropped
    assert 17 not in kept and len(kept) == len(texts) - 1
    for d, i in zip(docs, kept):
        assert d.text == texts[i]
        assert d.metadata["tokens"].dtype == np.uint32
        assert d.metadata["tokens"].tolist() == want[i]
    assert step.stats["src|drop|no_tokens"].total == 1
    assert step.stats["src|in"].total == len(texts) and step.stats["src|out"].total == len(kept)
    assert step.stats["src|tokens"].total == sum(map(len, want))


def test_encode_flat_equals_encode_texts(tok_dir):
    texts = _texts()
    tok = load_tokenizer(tok_dir)
    flat, ends = encode_flat(tok, texts)
    lists = encode_texts(tok, texts)
    assert ends == np.cumsum([len(x) for x in lists]).tolist()
    assert flat.tolist() == [t for x in lists for t in x]


@pytest.mark.parametrize("before", [None, "true"])
def test_tokenizers_parallelism_setting_restored(tok_dir, monkeypatch, before):
    if before is None:
        monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    else:
        monkeypatch.setenv("TOKENIZERS_PARALLELISM", before)
    step = Tokenize(str(tok_dir), threads=2, batch_docs=4)
    gen = step.run(ListReader(_texts(), "src").run())
    next(gen)
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"  # our threads are the parallelism while it runs
    gen.close()  # a consumer that stops early restores it too
    assert os.environ.get("TOKENIZERS_PARALLELISM") == before


def test_shards_hold_encode_batch_ids_per_document_id(tok_dir, tmp_path):
    texts = _texts()
    out = tmp_path / "out"
    save_tokenizer(load_tokenizer(tok_dir), out / "tokenizer")
    writer = ShardWriter(
        str(out),
        {"src": ShardInfo("general", "high", "general")},
        {"demix.tokenizer": "t"},
        0.3,
        str(out / "records"),
        max_shard_tokens=2000,
    )  # several shards per split
    tokens = Tokenize(str(out / "tokenizer"), threads=2, batch_docs=5, batch_chars=300)
    for _ in writer.run(tokens.run(ListReader(texts, "src").run())):
        pass
    tok = load_tokenizer(tok_dir)
    want = {f"src/{i}": e.ids for i, e in enumerate(tok.encode_batch(texts, add_special_tokens=False)) if e.ids}
    got, n_shards = {}, 0
    for split in ("shards", "validation"):
        for path in sorted((out / split / "src").glob("*.parquet")):
            n_shards += 1
            t = pq.read_table(path).to_pydict()
            assert t["n_tokens"] == [len(x) for x in t["tokens"]]
            ids = t["id"]
            assert ids == sorted(ids, key=lambda s: int(s.split("/")[1]))  # input order within a shard
            got.update(zip(ids, t["tokens"]))
    assert n_shards > 2
    assert got == want


@pytest.mark.parametrize("fraction", [0.0, 0.3])
def test_records_equal_read_shard_record(tok_dir, tmp_path, fraction):
    """The writer's record rows, made while writing (sha256 on the way out), equal a second read of each shard."""
    texts = _texts()
    out = tmp_path / "out"
    save_tokenizer(load_tokenizer(tok_dir), out / "tokenizer")
    meta = {"demix.tokenizer": "t", "demix.config_hash": "c0"}
    writer = ShardWriter(
        str(out), {"src": ShardInfo("code", "high", "")}, meta, fraction, str(out / "records"), max_shard_tokens=2000
    )
    for _ in writer.run(Tokenize(str(out / "tokenizer"), threads=2, batch_docs=5).run(ListReader(texts, "src").run())):
        pass
    records = json.loads((out / "records" / "00000.json").read_text())
    shards = sorted(out.glob("*/src/*.parquet"))
    assert len(records) == len(shards) > 2
    want = [read_shard_record(p, out).__dict__ for p in shards]
    want = [{k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in r.items()} for r in want]
    assert sorted(records, key=lambda r: r["path"]) == sorted(want, key=lambda r: r["path"])
    assert {r["split"] for r in records} == ({"train"} if fraction == 0 else {"train", "validation"})
