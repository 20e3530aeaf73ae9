"""One bucket task: the duplicate forest of one key-range shard of the runs (`dedup_runs`).

From its slice of every prepare task's runs a bucket task finds, within a memory budget:
- repeated ids: records sharing (source, id root) get their unique ids (`unique_ids`) -> renames;
- exact duplicates: records with equal (scope group, content hash) are joined;
- near duplicates: records sharing an LSH band in their scope group are candidates; every pair of a
  bucket is checked with the exact Jaccard similarity of their shingle sets (the confirmation
  option: `dedup.confirm`, on by default), skipping pairs already joined in this task -> joined.
The joins go into one local union-find whose root is the smallest node of each group, and the task
writes only that forest: <dedup>/shards/<shard:05d>.parquet (FOREST_SCHEMA), one row per member that
is not a root (member -> root) and one per renamed record, sorted by node. A member of a group of k
records costs one row however many pairs the buckets held. Which copy survives is decided once all
shards are in (`dedup_cluster`, which merges the forests), so the result does not depend on the shard
count; whether a group is of exact copies is told there by the content hash.
"""

from __future__ import annotations

from collections import defaultdict

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from corpus.recipe import DedupConfig
from pipelines.dedup_runs import DedupPlan, RunReader, read_at, write_bytes
from pipelines.dedup_signature import MinHasher, jaccard

# a forest edge (node -> root: the smallest node of its group in this task; uid null) or a rename
# (node, uid: its unique id; root null); sorted by node
FOREST_SCHEMA = pa.schema([("node", pa.uint64()), ("root", pa.uint64()), ("uid", pa.string())])
FOREST_ROW_GROUP = 1 << 16  # rows: the cluster step reads a forest a row group at a time


class Groups:
    """Union-find over node ids; the root of a group is its smallest node."""

    def __init__(self):
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        while self.parent.get(x, x) != x:
            self.parent[x] = self.parent.get(self.parent[x], self.parent[x])  # path halving
            x = self.parent[x]
        return x

    def join(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)
            self.parent.setdefault(min(ra, rb), min(ra, rb))  # roots are members too

    def forest(self) -> list[tuple[int, int]]:
        """(member, root) of every member that is not a root, sorted by member."""
        return [(x, r) for x in sorted(self.parent) if (r := self.find(x)) != x]


def unique_ids(sources: list[str], ids: list[str], origins: list[tuple[int, int]]) -> list[str]:
    """Each record's id, with '#k' appended to the k-th repeat of an id within its source.

    Repeats are ordered by origin (input unit, record in it), which does not depend on the number of
    tasks, so a rerun gives the same names; a '#k' that is itself an id of the source is skipped over.
    Any subset of records closed under (source, id root) gets the same names as the whole corpus.
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


def _groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) of each run of >= 2 equal values in sorted `keys`."""
    if len(keys) < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    change = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(keys)]])
    big = ends - starts >= 2
    return starts[big], ends[big]


def _renames(plan: DedupPlan, shard: int, prepared: str) -> list[tuple[int, str]]:
    found: list[np.ndarray] = []
    for rows in RunReader(plan, "ids", shard):
        rows = rows[np.argsort(rows["key"], kind="stable")]
        for s, e in zip(*_groups(rows["key"])):  # only a shared (source, id root) can need a new name
            found.append(rows[s:e].copy())
    if not found:
        return []
    rows = np.concatenate(found)
    meta = read_at(prepared, rows["node"], ["source", "id"])
    nodes = [int(n) for n in rows["node"]]
    sources, ids = [meta[n][0] for n in nodes], [meta[n][1] for n in nodes]
    uids = unique_ids(sources, ids, list(zip(rows["unit"].tolist(), rows["row"].tolist())))
    return [(n, u) for n, u, d in zip(nodes, uids, ids) if u != d]


def _join_exact(plan: DedupPlan, shard: int, groups: Groups) -> None:
    for rows in RunReader(plan, "exact", shard):
        rows = rows[np.lexsort((rows["node"], rows["lo"], rows["hi"]))]
        same = np.flatnonzero((rows["hi"][1:] == rows["hi"][:-1]) & (rows["lo"][1:] == rows["lo"][:-1]))
        # a chain of adjacent equal rows joins the whole group
        for a, b in zip(rows["node"][same].tolist(), rows["node"][same + 1].tolist()):
            groups.join(a, b)


def _join_near(plan: DedupPlan, shard: int, prepared: str, cfg: DedupConfig, groups: Groups) -> None:
    buckets: list[np.ndarray] = []
    for rows in RunReader(plan, "band", shard):
        rows = rows[np.lexsort((rows["node"], rows["key"]))]
        buckets += (rows[s:e].copy() for s, e in zip(*_groups(rows["key"])))  # copies: a view keeps the sub-range alive
    find, join = groups.find, groups.join
    pending = []
    for g in buckets:
        chash = g["chash"]
        if (chash == chash[0]).all():  # equal content (Jaccard 1): no text needed
            first = int(g["node"][0])
            for b in g["node"][1:].tolist():
                if find(first) != find(b):
                    join(first, b)
        else:
            pending.append(g)
    confirm = cfg.confirm
    wanted = {int(n) for g in pending for n in g["node"]} if confirm else set()
    texts = read_at(prepared, wanted, ["text"]) if wanted else {}
    hasher = MinHasher(cfg)
    shingles: dict[int, set[int]] = {}
    rejected: set[tuple[int, int]] = set()

    def shingled(i: int) -> set[int]:
        if i not in shingles:
            shingles[i] = set(hasher.shingles(texts[i][0]).tolist())
        return shingles[i]

    for g in pending:
        members, chash = g["node"].tolist(), g["chash"].tolist()
        for k, b in enumerate(members):
            for j, a in enumerate(members[:k]):
                if find(a) == find(b) or (a, b) in rejected:  # already one group, or failed in another band
                    continue
                if chash[j] == chash[k] or not confirm or jaccard(shingled(a), shingled(b)) >= cfg.threshold:
                    join(a, b)
                else:
                    rejected.add((a, b))


def bucket_shard(plan: DedupPlan, shard: int, prepared: str, cfg: DedupConfig) -> str:
    """Find one shard's duplicate forest and renames, write <dedup>/shards/<shard:05d>.parquet; returns its path."""
    groups = Groups()
    if cfg.exact:
        _join_exact(plan, shard, groups)
    if cfg.minhash:  # after the exact joins: pairs of exact copies need no Jaccard check
        _join_near(plan, shard, prepared, cfg, groups)
    return write_forest(plan, shard, groups.forest(), _renames(plan, shard, prepared))


def write_forest(plan: DedupPlan, shard: int, forest: list[tuple[int, int]], renames: list[tuple[int, str]]) -> str:
    """Write one shard's (member, root) forest and (node, unique id) renames as FOREST_SCHEMA; returns the path."""
    rows = [(n, r, None) for n, r in forest] + [(n, None, u) for n, u in renames]
    rows.sort(key=lambda row: row[0])
    table = pa.table(
        dict(zip(FOREST_SCHEMA.names, zip(*rows))) if rows else {f.name: pa.array([], f.type) for f in FOREST_SCHEMA},
        schema=FOREST_SCHEMA,
    )
    fs, _ = fsspec.core.url_to_fs(plan.folder)
    path = f"{plan.folder}/shards/{shard:05d}.parquet"
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=FOREST_ROW_GROUP)
    write_bytes(fs, path, sink.getvalue().to_pybytes())
    return path
