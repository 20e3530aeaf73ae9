"""The bucket-sharded dedup stage: same drops for any shard count and memory budget; scope and tier rule."""

from __future__ import annotations

import dataclasses
import random

import pyarrow.parquet as pq
import pytest
from datatrove.data import Document
from pipeline_inputs import prose

from corpus.recipe import DedupConfig
from pipelines.dedup import DedupPlan, DedupSignature, DuplicateFinder, PreparedWriter, find_duplicates
from pipelines.dedup_runs import RunReader


def _corpus(rng: random.Random) -> list[list[Document]]:
    """Two prepare tasks; exact copies, edited copies, repeated ids, and one text in two sources."""
    base = [prose(rng) for _ in range(12)]
    docs = []
    for i, t in enumerate(base):
        docs.append(Document(text=t, id=f"web/{i}", metadata={"source": "web", "unit": 0, "row": i}))
        if i % 3 == 0:  # an exact copy under a repeated id (a re-crawl)
            docs.append(Document(text=t, id=f"web/{i}", metadata={"source": "web", "unit": 1, "row": i}))
        if i % 4 == 1:  # an edited copy: one word changed
            words = t.split(" ")
            words[5] = "EDITED"
            docs.append(Document(text=" ".join(words), id=f"web/e{i}", metadata={"source": "web", "unit": 2, "row": i}))
    docs.append(Document(text=base[2], id="news/x", metadata={"source": "news", "unit": 3, "row": 0}))
    docs.append(Document(text=base[5], id="code/y", metadata={"source": "code", "unit": 4, "row": 0}))
    return [docs[::2], docs[1::2]]


def _prepare(folder: str, tasks: list[list[Document]], cfg: DedupConfig, plan: DedupPlan | None = None) -> None:
    for rank, docs in enumerate(tasks):
        signed = DedupSignature(cfg).run(iter(docs), rank, len(tasks))
        list(PreparedWriter(folder, part_docs=7, plan=plan).run(signed, rank, len(tasks)))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("dedup") / "prepared")
    _prepare(folder, _corpus(random.Random(4)), DedupConfig())
    return folder


@pytest.mark.parametrize("shards", [2, 3, 7])
def test_any_shard_count_gives_the_single_shard_drops(prepared, shards):
    one = find_duplicates(prepared, DedupConfig()).to_pylist()
    assert (
        sorted(d["reason"] or "renamed" for d in one) == ["exact_duplicate"] * 4 + ["near_duplicate"] * 3
    )  # 4 re-crawls (renamed, then dropped), 3 edited copies
    assert find_duplicates(prepared, DedupConfig(), shards=shards).to_pylist() == one


def test_tiny_memory_budget_splits_subranges_and_keeps_the_result(tmp_path, prepared):
    plan = DedupPlan(str(tmp_path / "dedup"), shards=2, max_memory_mb=0)  # 0 MiB: as many sub-ranges as rows
    _prepare(str(tmp_path / "p"), _corpus(random.Random(4)), DedupConfig(), plan)
    reader = RunReader(plan, "band", 0)
    pieces = list(reader)
    assert reader.pieces == sum(reader.sizes) > 100 and sum(map(len, pieces)) == sum(reader.sizes)
    keys = [int(k) for p in pieces for k in sorted(p["key"])]
    assert keys == sorted(keys)  # each sub-range holds the next slice of the key range, whole
    got = find_duplicates(str(tmp_path / "p"), DedupConfig(), plan=plan).to_pylist()
    assert got == find_duplicates(prepared, DedupConfig()).to_pylist()


def test_every_bucket_task_then_the_last_one_clusters(tmp_path, prepared):
    """Run the stage's tasks one by one, as an executor would: only the task that ends it writes the drop list."""
    plan = DedupPlan(str(tmp_path / "dedup"), shards=3)
    _prepare(str(tmp_path / "p"), _corpus(random.Random(4)), DedupConfig(), plan)
    out = str(tmp_path / "dedup.parquet")
    finished = []
    step = DuplicateFinder(str(tmp_path / "p"), out, DedupConfig(), plan, finish=lambda: finished.append(1))
    for rank in (2, 0):
        list(step.run(None, rank, 3))
        assert not (tmp_path / "dedup.parquet").exists() and not finished
    list(step.run(None, 1, 3))
    assert finished == [1]
    assert pq.read_table(out).to_pylist() == find_duplicates(prepared, DedupConfig()).to_pylist()
    list(step.run(None, 0, 3))  # a late rerun of another task does not cluster again
    assert finished == [1]


@pytest.mark.parametrize(
    "scope, dropped",
    [
        ("source", set()),
        ("domain", {"news/x"}),  # web (high) keeps its copy of news/x's text
        ("corpus", {"news/x", "code/y"}),
    ],
)
def test_scope_and_higher_tier_survives(tmp_path, scope, dropped):
    plan = DedupPlan(
        str(tmp_path / "dedup"),
        scope=scope,
        domains={"web": "general", "news": "general", "code": "code"},
        tiers={"web": "high", "news": "low", "code": "medium"},
    )
    _prepare(str(tmp_path / "p"), _corpus(random.Random(4)), DedupConfig(), plan)
    drops = find_duplicates(str(tmp_path / "p"), DedupConfig(), plan=plan).to_pylist()
    cross = {d["id"] for d in drops if d["reason"] and not d["id"].startswith("web/")}
    assert cross == dropped
    # a higher tier on the other side flips which copy survives
    flipped = dataclasses.replace(
        plan, folder=str(tmp_path / "d2"), tiers={"web": "low", "news": "high", "code": "high"}
    )
    _prepare(str(tmp_path / "p2"), _corpus(random.Random(4)), DedupConfig(), flipped)
    drops = find_duplicates(str(tmp_path / "p2"), DedupConfig(), plan=flipped).to_pylist()
    assert ({d["id"] for d in drops if d["reason"] and not d["id"].startswith("web/")}) == set()
    web_dropped = {d["id"] for d in drops if d["reason"]}
    assert ("web/2" in web_dropped, "web/5" in web_dropped) == (scope != "source", scope == "corpus")
