"""The cluster step: every bucket shard's edges -> the drop list (<work>/dedup.parquet), and its readers.

Union-find over the edges (duplicates are few next to the corpus, so this fits one task): in each
group of exact copies (the 'exact' edges) the first member by `DedupPlan.survivor_key` is kept (the
higher tier, then the smaller unique id; within one source just the smaller id) and the others are
exact duplicates; in each group joined by any edge the first member is kept and every other member
that is not an exact duplicate is a near duplicate. An exact copy has the same bands and shingles as
the copy that is kept, so it joins the same near group: the result equals near dedup over the exact
survivors only.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from corpus.errors import DemixError
from pipelines.dedup_buckets import EDGE_SCHEMA
from pipelines.dedup_runs import DedupPlan, node_part, read_at

# <work>/dedup.parquet: one row per prepared record that is dropped or renamed, keyed by where it is
# (part: prepared file name, pos: row in it), since input ids may repeat. id: the record's unique id
# (its input id, or that id + '#k' for the k-th repeat); reason: 'exact_duplicate' | 'near_duplicate',
# or null for a record kept under a new id.
DROP_SCHEMA = pa.schema([("part", pa.string()), ("pos", pa.int64()), ("source", pa.string()), ("id", pa.string()),
                         ("reason", pa.string())])


class DedupError(DemixError):
    """Prepared files, runs or a drop file this version cannot read (an older build's work folder)."""


class _Groups:
    """Union-find over node ids."""

    def __init__(self):
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        while self.parent.get(x, x) != x:
            self.parent[x] = self.parent.get(self.parent[x], self.parent[x])
            x = self.parent[x]
        return x

    def join(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)
            self.parent.setdefault(min(ra, rb), min(ra, rb))  # roots are members too

    def members(self) -> list[list[int]]:
        out: dict[int, list[int]] = defaultdict(list)
        for x in self.parent:
            out[self.find(x)].append(x)
        return list(out.values())


def read_edges(plan: DedupPlan) -> pa.Table:
    """The concatenated edges of every bucket shard; raises DedupError when one is missing."""
    fs, root = fsspec.core.url_to_fs(plan.folder)
    tables = []
    for s in range(plan.shards):
        path = f"{root}/shards/{s:05d}.parquet"
        if not fs.exists(path):
            raise DedupError(f"{path}: bucket shard {s} of {plan.shards} has no edges file (its task did not finish)")
        tables.append(pq.read_table(fs.open(path, "rb")))
    return pa.concat_tables(tables) if tables else EDGE_SCHEMA.empty_table()


def cluster(plan: DedupPlan, prepared: str) -> pa.Table:
    """The drop list (DROP_SCHEMA) from every shard's edges, sorted by (part, pos)."""
    edges = read_edges(plan)
    kind, a, b, uid = (edges.column(c).to_pylist() for c in EDGE_SCHEMA.names)
    renames = {n: u for k, n, u in zip(kind, a, uid) if k == "rename"}
    exact, linked = _Groups(), _Groups()
    for k, x, y in zip(kind, a, b):
        if k == "exact":
            exact.join(x, y)
            linked.join(x, y)
        elif k == "near":
            linked.join(x, y)
    nodes = set(renames) | set(linked.parent)
    meta = read_at(prepared, nodes, ["source", "id"])
    info = {n: (src, renames.get(n, did)) for n, (src, did) in meta.items()}

    def ordered(group: list[int]) -> list[int]:
        return sorted(group, key=lambda n: plan.survivor_key(*info[n]))

    drops: dict[int, str] = {}
    for g in exact.members():
        drops.update((n, "exact_duplicate") for n in ordered(g)[1:])
    for g in linked.members():
        drops.update((n, "near_duplicate") for n in ordered(g)[1:] if n not in drops)
    listed = sorted(set(drops) | set(renames), key=node_part)
    where = [node_part(n) for n in listed]
    return pa.table({"part": [p for p, _ in where], "pos": [i for _, i in where],
                     "source": [info[n][0] for n in listed], "id": [info[n][1] for n in listed],
                     "reason": [drops.get(n) for n in listed]}, schema=DROP_SCHEMA)


def read_drop_list(drop_file: str) -> dict[tuple[str, int], tuple[str, str | None]]:
    """{(part, pos): (unique id, drop reason or None for a record kept under a new id)} of a drop file."""
    fs, path = fsspec.core.url_to_fs(drop_file)
    t = pq.read_table(fs.open(path, "rb"))
    if t.schema.names != DROP_SCHEMA.names:
        raise DedupError(f"{drop_file}: columns {t.schema.names}, expected {DROP_SCHEMA.names} (written by an "
                         "older version); rebuild with --overwrite")
    return {(p, i): (d, r) for p, i, d, r in zip(*(t.column(c).to_pylist() for c in ("part", "pos", "id", "reason")))}


def drop_counts(drop_file: str) -> dict[str, Any]:
    """{source: {reason: count}} of a drop file (for summaries); renamed records are not drops."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    fs, path = fsspec.core.url_to_fs(drop_file)
    t = pq.read_table(fs.open(path, "rb"), columns=["source", "reason"])
    for s, r in zip(t.column("source").to_pylist(), t.column("reason").to_pylist()):
        if r is not None:
            out[s][r] += 1
    return {k: dict(v) for k, v in out.items()}
