"""Dedup correctness: repeated input ids keep one copy per duplicate group; MinHash checks every bucket pair."""

from __future__ import annotations

import random

import pyarrow.parquet as pq
from datatrove.data import Document
from pipeline_inputs import prose

from corpus.recipe import DedupConfig
from pipelines.dedup import (
    DedupSignature,
    MinHasher,
    PreparedReader,
    PreparedWriter,
    find_duplicates,
    jaccard,
    kept_records,
    unique_ids,
)


def _doc(source: str, did: str, text: str, unit: int, row: int) -> Document:
    return Document(text=text, id=f"{source}/{did}", metadata={"source": source, "unit": unit, "row": row})


def _prepare(folder: str, tasks: list[list[Document]], cfg: DedupConfig, bands: dict[str, list[int]] | None = None):
    """Write each task's documents with the library's own signature step and writer."""
    for rank, docs in enumerate(tasks):
        signed = list(DedupSignature(cfg).run(iter(docs), rank, len(tasks)))
        for d in signed:  # a test may plant band hashes to build a bucket layout
            d.metadata["bands"] = (bands or {}).get(d.id, d.metadata["bands"])
        list(PreparedWriter(folder).run(iter(signed), rank, len(tasks)))


def _read_back(folder: str, ranks: int) -> list[tuple[str, str]]:
    drop_file = f"{folder}.dedup.parquet"
    pq.write_table(find_duplicates(folder, DedupConfig()), drop_file)
    return sorted((d.id, d.text) for r in range(ranks) for d in PreparedReader(folder, drop_file).run(None, r, ranks))


def _recrawl_docs(rng: random.Random) -> tuple[list[Document], dict[str, str]]:
    t = {k: prose(rng) for k in ("a", "b", "c", "d", "e")}
    docs = [  # (unit, row) is where each record was read: unit 1 is a re-crawl of unit 0
        _doc("web", "7", t["a"], 0, 0),
        _doc("web", "8", t["b"], 0, 1),
        _doc("web", "9", t["c"], 0, 2),
        _doc("web", "7", t["a"], 1, 0),  # same id, same text: an exact copy, one survives
        _doc("web", "9", t["d"], 1, 1),  # same id, other text: both survive, under distinct ids
        _doc("web", "9#1", t["e"], 1, 2),  # an input id that looks like a renamed one
        _doc("news", "7", t["a"], 0, 0),  # another source: its own id space and dedup
    ]
    return docs, t


def test_repeated_ids_keep_one_copy_and_distinct_texts(tmp_path):
    docs, t = _recrawl_docs(random.Random(5))
    _prepare(str(tmp_path / "p"), [docs], DedupConfig())
    got = _read_back(str(tmp_path / "p"), 1)
    assert got == sorted(
        [
            ("news/7", t["a"]),
            ("web/7", t["a"]),
            ("web/8", t["b"]),
            ("web/9", t["c"]),
            ("web/9#1", t["e"]),
            ("web/9#2", t["d"]),
        ]
    )
    drops = find_duplicates(str(tmp_path / "p"), DedupConfig()).to_pylist()
    assert [(d["pos"], d["id"], d["reason"]) for d in drops] == [
        (3, "web/7#1", "exact_duplicate"),
        (4, "web/9#2", None),
    ]


def test_repeated_ids_independent_of_task_split(tmp_path):
    """The k-th repeat follows the input order, not the task that read it: 1 and 3 tasks agree."""
    docs, _ = _recrawl_docs(random.Random(5))
    _prepare(str(tmp_path / "one"), [docs], DedupConfig())
    by_unit = [
        [d for d in docs if d.metadata["unit"] == 1],
        [d for d in docs if d.metadata["unit"] == 0][:2],
        [d for d in docs if d.metadata["unit"] == 0][2:],
    ]  # the re-crawl is read first, by task 0
    _prepare(str(tmp_path / "three"), by_unit, DedupConfig())
    assert _read_back(str(tmp_path / "three"), 3) == _read_back(str(tmp_path / "one"), 1)
    kept = sorted(r[2] for r in kept_records(str(tmp_path / "three"), str(tmp_path / "three.dedup.parquet")))
    assert kept == sorted(i for i, _ in _read_back(str(tmp_path / "three"), 3))


def test_unique_ids_skip_taken_names():
    assert unique_ids(["s"] * 4, ["s/1", "s/1#1", "s/1", "s/1"], [(0, 0), (0, 1), (1, 0), (0, 5)]) == [
        "s/1",
        "s/1#1",
        "s/1#3",
        "s/1#2",
    ]


def test_near_duplicates_behind_a_dissimilar_bucket_head(tmp_path):
    """a, b (Jaccard ~0.97) share buckets only with a lower id x headed first: the pair a, b is still checked."""
    cfg = DedupConfig()
    base = " ".join(prose(random.Random(9), 12).split()[:330])
    words = base.split()
    words[100] = "CHANGED"  # one word: the 5 shingles over it differ
    a, b, x = base, " ".join(words), prose(random.Random(10), 12)
    h = MinHasher(cfg)
    j = jaccard(set(h.shingles(a).tolist()), set(h.shingles(b).tolist()))
    assert 0.96 <= j <= 0.98 and jaccard(set(h.shingles(a).tolist()), set(h.shingles(x).tolist())) < 0.2
    assert set(h.bands(a)) & set(h.bands(b))  # a real LSH candidate pair
    docs = [_doc("s", "1x", x, 0, 0), _doc("s", "2a", a, 0, 1), _doc("s", "3b", b, 0, 2)]
    # x carries a's band hashes: every bucket a and b share is headed by x, which matches neither
    _prepare(str(tmp_path / "p"), [docs], cfg, bands={"s/1x": h.bands(a)})
    drops = find_duplicates(str(tmp_path / "p"), cfg).to_pylist()
    assert [(d["id"], d["reason"]) for d in drops] == [("s/3b", "near_duplicate")]  # x kept, one of a/b kept
    strict = find_duplicates(str(tmp_path / "p"), DedupConfig(threshold=0.99)).to_pylist()
    assert strict == []  # the exact Jaccard still decides
