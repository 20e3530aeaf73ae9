"""The bucket tasks' forests and the out-of-core cluster step: forests only, chains across shards, bounded memory."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.data import Document
from pipeline_inputs import prose

from corpus.recipe import DedupConfig
from pipelines.dedup import DedupPlan, DedupSignature, PreparedWriter, content_hash, find_duplicates
from pipelines.dedup_buckets import FOREST_SCHEMA, Groups, bucket_shard, write_forest
from pipelines.dedup_cluster import ClusterWork, cluster, components
from pipelines.dedup_runs import SortedRuns, node_of


def _write_prepared(folder: str, n: int) -> list[int]:
    """n prepared records of distinct texts in one part (no signatures needed: the forests are given); their nodes."""
    docs = [
        Document(
            text=f"text {i}",
            id=f"s/{i:06d}",
            metadata={"source": "s", "unit": 0, "row": i, "hash": content_hash(f"text {i}"), "bands": []},
        )
        for i in range(n)
    ]
    list(PreparedWriter(folder, part_docs=n).run(iter(docs), 0, 1))
    return node_of(0, 0, np.arange(n)).tolist()


def _roots(pairs: list[tuple[int, int]]) -> dict[int, int]:
    """The reference: union-find over every pair -> {node: smallest node of its group}."""
    g = Groups()
    for a, b in pairs:
        g.join(a, b)
    return {x: g.find(x) for x in g.parent}


def _forests(plan: DedupPlan, pairs_by_shard: list[list[tuple[int, int]]]) -> None:
    """What each bucket task writes: its own pairs reduced to a forest by a local union-find."""
    for s, pairs in enumerate(pairs_by_shard):
        g = Groups()
        for a, b in pairs:
            g.join(a, b)
        write_forest(plan, s, g.forest(), [])


def _merged(plan: DedupPlan, budget_bytes: int | None = None) -> dict[int, int]:
    work = ClusterWork(plan, budget_bytes)
    labels = work.sort(
        "labels", pa.schema([("node", pa.uint64()), ("root", pa.uint64()), ("uid", pa.string())]), "node"
    )
    return {
        n: r
        for t in components(plan, work, labels)
        for n, r in zip(t.column("node").to_pylist(), t.column("root").to_pylist())
    }


def test_bucket_task_writes_a_forest_of_roots(tmp_path):
    """x ~ t (near, one word changed) and t = t2 (exact): the exact join comes first, so t2's parent is t, not the root x."""
    cfg = DedupConfig()
    t = " ".join(prose(random.Random(9), 12).split()[:330])
    words = t.split()
    words[100] = "CHANGED"
    docs = [
        Document(text=text, id=f"s/{i}", metadata={"source": "s", "unit": 0, "row": i})
        for i, text in enumerate([" ".join(words), t, t, prose(random.Random(3), 12)])
    ]
    plan = DedupPlan(str(tmp_path / "dedup"), shards=1)
    list(PreparedWriter(str(tmp_path / "p"), plan=plan).run(DedupSignature(cfg).run(iter(docs)), 0, 1))
    forest = pq.read_table(bucket_shard(plan, 0, str(tmp_path / "p"), cfg))
    assert forest.schema == FOREST_SCHEMA  # (node, root, uid): no pair columns
    x, t1, t2, _ = node_of(0, 0, np.arange(4)).tolist()
    assert [(r["node"], r["root"]) for r in forest.to_pylist()] == [(t1, x), (t2, x)]  # every member -> the root
    drops = find_duplicates(str(tmp_path / "p"), cfg, plan=plan).to_pylist()
    assert [(d["id"], d["reason"]) for d in drops] == [("s/1", "near_duplicate"), ("s/2", "exact_duplicate")]


def test_chain_across_bucket_shards_is_one_cluster(tmp_path):
    """a ~ b only in shard 0, b ~ c only in shard 1: one group {a, b, c}, two drops."""
    a, b, c, d = _write_prepared(str(tmp_path / "p"), 4)
    plan = DedupPlan(str(tmp_path / "dedup"), shards=2)
    _forests(plan, [[(a, b)], [(b, c)]])
    assert _merged(plan) == {a: a, b: a, c: a}
    cluster(plan, str(tmp_path / "p"), str(tmp_path / "dedup.parquet"))
    drops = pq.read_table(tmp_path / "dedup.parquet").to_pylist()
    assert [(r["id"], r["reason"]) for r in drops] == [("s/000001", "near_duplicate"), ("s/000002", "near_duplicate")]


def test_merged_forests_equal_union_find_over_all_pairs(tmp_path):
    """Random pairs spread over 5 shards, long chains included; any memory budget gives the reference groups."""
    rng = random.Random(1)
    nodes = _write_prepared(str(tmp_path / "p"), 300)
    pairs = [(rng.choice(nodes), rng.choice(nodes)) for _ in range(100)]
    pairs += [(nodes[i], nodes[i + 1]) for i in range(200, 240)]  # a 41-node chain, its links in random shards
    by_shard = [[] for _ in range(5)]
    for p in pairs:
        by_shard[rng.randrange(5)].append(p)
    want = _roots(pairs)
    plan = DedupPlan(str(tmp_path / "dedup"), shards=5)
    _forests(plan, by_shard)
    assert _merged(plan) == want
    assert _merged(plan, budget_bytes=4096) == want  # runs of 64 rows in row groups of 4: many merge passes


def test_sorted_runs_stay_within_the_budget_and_keep_groups_whole(tmp_path):
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 2_000, 40_000).astype(np.uint64)
    schema = pa.schema([("node", pa.uint64()), ("other", pa.uint64())])
    budget = 60_000  # 640 KB of rows through a 60 KB sort: each table added (16 KB) spills
    s = SortedRuns(str(tmp_path / "runs"), schema, "node", budget, piece_rows=100)
    for i in range(0, len(keys), 1000):
        s.add(pa.table({"node": keys[i : i + 1000], "other": np.arange(i, i + 1000, dtype=np.uint64)}, schema=schema))
    assert len(s.runs) > SortedRuns.FAN_IN  # more runs than one merge reads: an extra merge pass
    out = list(s.groups())
    got = np.concatenate([t.column("node").to_numpy() for t in out])
    assert (got == np.sort(keys)).all()
    assert sorted(np.concatenate([t.column("other").to_numpy() for t in out]).tolist()) == list(range(len(keys)))
    firsts = [t.column("node")[0].as_py() for t in out]
    lasts = [t.column("node")[-1].as_py() for t in out]
    assert all(last < first for last, first in zip(lasts, firsts[1:]))  # no key group split over two tables
    assert s.peak_bytes <= budget
    assert not (tmp_path / "runs").exists()  # the runs are removed once read


def test_cluster_memory_is_bounded_by_max_memory_mb(tmp_path):
    """9K linked records through a 128 KiB cluster step: every sort spills instead of holding the groups."""
    n, budget = 9_000, 128 * 1024
    nodes = _write_prepared(str(tmp_path / "p"), n)
    pairs = [(nodes[i], nodes[i + 1]) for i in range(0, n - 1) if i % 3 != 2]  # groups of 3, as chains
    plan = DedupPlan(str(tmp_path / "dedup"), shards=2)
    _forests(plan, [pairs[::2], pairs[1::2]])  # each chain crosses the two shards
    work = cluster(plan, str(tmp_path / "p"), str(tmp_path / "dedup.parquet"), work=ClusterWork(plan, budget))
    assert work.rows == 2 * n // 3
    assert work.peak_bytes <= budget
    edges = next(s for s in work.sorts if s.root.endswith("/edges-0"))
    assert edges.rows * 16 > budget and edges.written > 1  # more than the budget went through, as sorted runs
    drops = pq.read_table(tmp_path / "dedup.parquet", columns=["pos", "reason"]).to_pydict()
    assert drops["pos"] == [i for i in range(n) if i % 3] and set(drops["reason"]) == {"near_duplicate"}
    assert ClusterWork(DedupPlan("x", max_memory_mb=3)).budget == 3 * 2**20  # the setting is the default budget
