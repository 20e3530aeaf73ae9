"""The cluster step: every bucket shard's forest -> the drop list (<work>/dedup.parquet), and its readers.

Each bucket task wrote its duplicate groups as a forest (member -> root, `dedup_buckets`); a chain
across shards (a~b in one, b~c in another) is one group. The forests are merged into connected
components out of core, every step an external sort (`SortedRuns`) within `DedupPlan.max_memory_mb`,
so the task's memory does not grow with the corpus:

1. components: the alternating large-star / small-star rounds of Kiveris et al., "Connected
   Components in MapReduce and Beyond" (SoCC 2014), over the edges (child, parent < child) sorted
   by node, until the edges form stars (every node points at its component's smallest node);
2. labels: each member's root, its unique id (renames) and, read from the prepared parts in node
   order, its source, input id and content hash;
3. survivors: per component, sorted by `DedupPlan.survivor_key` (the higher tier, then the smaller
   unique id): the first member is kept; a member whose content hash an earlier member has is an
   exact duplicate (with `dedup.exact`), any other is a near duplicate. Members with equal hashes
   are the exact copies (the bucket tasks join them through the exact runs), so this equals near
   dedup over the exact survivors only;
4. the drop list, sorted by (part, pos), streamed to a temporary file and renamed, in row groups of
   at most DROP_GROUP_ROWS rows whose `part` statistics let `DropList` read one part's rows alone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from itertools import cycle
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from corpus.atomic import atomic_write
from corpus.errors import DemixError
from pipelines.dedup_buckets import FOREST_SCHEMA
from pipelines.dedup_runs import DedupPlan, SortedRuns, node_part

# <work>/dedup.parquet: one row per prepared record that is dropped or renamed, keyed by where it is
# (part: prepared file name, pos: row in it), since input ids may repeat. id: the record's unique id
# (its input id, or that id + '#k' for the k-th repeat); reason: 'exact_duplicate' | 'near_duplicate',
# or null for a record kept under a new id.
DROP_SCHEMA = pa.schema(
    [("part", pa.string()), ("pos", pa.int64()), ("source", pa.string()), ("id", pa.string()), ("reason", pa.string())]
)
DROP_GROUP_ROWS = 1 << 16  # rows per drop-list row group: a reader of one part reads < 2 groups of other parts
# an edge seen from one of its ends: node and its neighbour other (a parent when other < node)
_ADJACENT = pa.schema([("node", pa.uint64()), ("other", pa.uint64())])
_LABEL = pa.schema([("node", pa.uint64()), ("root", pa.uint64()), ("uid", pa.string())])
_MEMBER = pa.schema(
    [
        ("root", pa.uint64()),
        ("node", pa.uint64()),
        ("tier", pa.int32()),
        ("uid", pa.string()),
        ("source", pa.string()),
        ("hash", pa.string()),
        ("renamed", pa.bool_()),
    ]
)
_LISTED = pa.schema([("node", pa.uint64()), ("source", pa.string()), ("id", pa.string()), ("reason", pa.string())])
MAX_ROUNDS = 200  # each round at least halves what is left far from a star; a real corpus needs a handful


class DedupError(DemixError):
    """Prepared files, runs or a drop file this version cannot read (an older build's work folder)."""


class ClusterWork:
    """The cluster step's sorts, all under <dedup>/cluster/ and each within the plan's memory budget."""

    def __init__(self, plan: DedupPlan, budget_bytes: int | None = None):
        self.folder = f"{plan.folder}/cluster"
        self.budget = plan.max_memory_mb * 2**20 if budget_bytes is None else budget_bytes
        self.sorts: list[SortedRuns] = []
        self.rows = 0
        """Rows of the drop list written."""

    def sort(self, name: str, schema: pa.Schema, key: str) -> SortedRuns:
        s = SortedRuns(f"{self.folder}/{name}", schema, key, self.budget)
        self.sorts.append(s)
        return s

    @property
    def peak_bytes(self) -> int:
        """The most Arrow bytes any one sort held at once (one sort runs at a time but for a hand-off)."""
        return max((s.peak_bytes for s in self.sorts), default=0)


def _add_edges(out: SortedRuns, child: np.ndarray, parent: np.ndarray) -> None:
    keep = child != parent
    child, parent = child[keep], parent[keep]
    out.add(
        pa.table({"node": np.concatenate([child, parent]), "other": np.concatenate([parent, child])}, schema=_ADJACENT)
    )


def _star_round(edges: SortedRuns, out: SortedRuns, large: bool) -> bool:
    """One large-star (or small-star) round from `edges` into `out`; True when `edges` already were stars.

    For a node u with neighbours N(u), m(u) = min(u, N(u)). Large-star points every larger neighbour of u
    at m(u); small-star points u and its smaller neighbours at m(u). Both keep the components, and
    alternating them ends in stars; on stars either gives the same stars back.
    """
    star = True
    for t in edges.groups():
        node, other = t.column("node").to_numpy(), t.column("other").to_numpy()
        order = np.lexsort((other, node))
        node, other = node[order], other[order]
        fresh = np.ones(len(node), bool)
        fresh[1:] = (node[1:] != node[:-1]) | (other[1:] != other[:-1])  # one edge may come from several nodes
        node, other = node[fresh], other[fresh]
        first = np.flatnonzero(np.r_[True, node[1:] != node[:-1]])
        group = np.cumsum(np.r_[True, node[1:] != node[:-1]]) - 1
        up = other < node
        ups = np.bincount(group, weights=up, minlength=len(first))
        downs = np.diff(np.r_[first, len(node)]) - ups
        star = star and not ((ups > 1) | ((ups > 0) & (downs > 0))).any()  # a star: a root, or one parent root
        m = np.minimum(node[first], other[first])  # the smallest neighbour comes first
        if large:
            _add_edges(out, other[~up], m[group][~up])
        else:
            _add_edges(out, np.concatenate([other[up], node[first]]), np.concatenate([m[group][up], m]))
    return star


def components(plan: DedupPlan, work: ClusterWork, labels: SortedRuns) -> Iterator[pa.Table]:
    """(node, root) of every node of a duplicate group, as _LABEL tables in node order; renames go to `labels`."""
    fs, root = fsspec.core.url_to_fs(plan.folder)
    edges = work.sort("edges-0", _ADJACENT, "node")
    for s in range(plan.shards):
        path = f"{root}/shards/{s:05d}.parquet"
        if not fs.exists(path):
            raise DedupError(f"{path}: bucket shard {s} of {plan.shards} has no edges file (its task did not finish)")
        with fs.open(path, "rb") as f:
            for batch in pq.ParquetFile(f).iter_batches(columns=FOREST_SCHEMA.names):
                t = pa.Table.from_batches([batch])
                linked = t.filter(t.column("root").is_valid())
                _add_edges(edges, linked.column("node").to_numpy(), linked.column("root").to_numpy())
                labels.add(t.filter(t.column("uid").is_valid()).select(_LABEL.names).cast(_LABEL))
    ops = cycle([True, False])
    for r in range(1, MAX_ROUNDS + 1):
        out = work.sort(f"edges-{r}", _ADJACENT, "node")
        if _star_round(edges, out, next(ops)):
            edges = out
            break
        edges = out
    else:
        raise DedupError(f"{plan.folder}: duplicate groups did not settle in {MAX_ROUNDS} rounds")
    for t in edges.groups():
        node, other = t.column("node").to_numpy(), t.column("other").to_numpy()
        first = np.flatnonzero(np.r_[True, node[1:] != node[:-1]]) if len(node) else np.empty(0, np.int64)
        lowest = np.minimum.reduceat(other, first) if len(node) else other
        yield pa.table(
            {"node": node[first], "root": np.minimum(node[first], lowest), "uid": pa.nulls(len(first), pa.string())},
            schema=_LABEL,
        )


class _PartCursor:
    """Columns of prepared records by node, for nodes asked in increasing order: one part is held at a time."""

    def __init__(self, prepared: str, columns: list[str]):
        self.fs, self.root = fsspec.core.url_to_fs(prepared)
        self.columns, self.part, self.rows = columns, None, []

    def __call__(self, nodes: list[int]) -> dict[int, tuple]:
        out = {}
        for n in nodes:
            part, pos = node_part(n)
            if part != self.part:
                with self.fs.open(f"{self.root}/{part}", "rb") as f:
                    t = pq.read_table(f, columns=self.columns)
                self.part, self.rows = part, list(zip(*(t.column(c).to_pylist() for c in self.columns)))
            out[n] = self.rows[pos]
        return out


def _members(plan: DedupPlan, prepared: str, labels: SortedRuns, members: SortedRuns, listed: SortedRuns) -> None:
    """Join each labelled node with its prepared record: members of groups, or renamed records alone."""
    read = _PartCursor(prepared, ["source", "id", "hash"])
    for t in labels.groups():
        root: dict[int, int] = {}
        uid: dict[int, str] = {}
        for n, r, u in zip(*(t.column(c).to_pylist() for c in _LABEL.names)):
            if r is not None:
                root[n] = r
            if u is not None:
                uid[n] = u
        nodes = sorted(set(root) | set(uid))
        meta = read(nodes)
        rows = [
            (root[n], n, plan.survivor_key(meta[n][0], "")[0], uid.get(n, meta[n][1]), meta[n][0], meta[n][2], n in uid)
            for n in nodes
            if n in root
        ]
        members.add(pa.table(dict(zip(_MEMBER.names, zip(*rows))), schema=_MEMBER) if rows else _MEMBER.empty_table())
        alone = [(n, meta[n][0], uid[n], None) for n in nodes if n not in root]
        listed.add(pa.table(dict(zip(_LISTED.names, zip(*alone))), schema=_LISTED) if alone else _LISTED.empty_table())


def _survivors(members: SortedRuns, listed: SortedRuns, exact: bool) -> None:
    """Per group, in survivor order: the first member kept, the others exact or near duplicates."""
    for t in members.groups():
        t = t.sort_by([("root", "ascending"), ("tier", "ascending"), ("uid", "ascending"), ("source", "ascending")])
        rows, current, seen = [], None, set()
        for r, n, uid, src, h, renamed in zip(
            *(t.column(c).to_pylist() for c in ("root", "node", "uid", "source", "hash", "renamed"))
        ):
            if r != current:
                current, seen, reason = r, {h}, None  # the group's survivor
            elif h in seen:
                reason = "exact_duplicate" if exact else "near_duplicate"
            else:
                seen.add(h)
                reason = "near_duplicate"
            if reason or renamed:
                rows.append((n, src, uid, reason))
        listed.add(pa.table(dict(zip(_LISTED.names, zip(*rows))), schema=_LISTED) if rows else _LISTED.empty_table())


def cluster(
    plan: DedupPlan, prepared: str, output: str, exact: bool = True, work: ClusterWork | None = None
) -> ClusterWork:
    """Write the drop list (DROP_SCHEMA, sorted by (part, pos)) of every shard's forest to `output`.

    `work`: where the sorts run and their budget (default: the plan's, max_memory_mb). Returns it, with
    the sorts it ran (their peak memory) and the rows written.
    `exact`: whether equal content is named 'exact_duplicate' (recipe dedup.exact) or 'near_duplicate'.
    """
    work = work or ClusterWork(plan)
    labels = work.sort("labels", _LABEL, "node")
    for t in components(plan, work, labels):
        labels.add(t)
    members, listed = work.sort("members", _MEMBER, "root"), work.sort("listed", _LISTED, "node")
    _members(plan, prepared, labels, members, listed)
    _survivors(members, listed, exact)
    work.rows += write_drop_list(output, _drop_rows(listed))
    fs, folder = fsspec.core.url_to_fs(work.folder)
    if fs.exists(folder):  # on an object store a folder exists only while it holds a file
        fs.rm(folder, recursive=True)
    return work


def _drop_rows(listed: SortedRuns) -> Iterator[pa.Table]:
    """The listed records as DROP_SCHEMA tables, in node order: node order is (part, pos) order."""
    for t in listed.groups():
        where = [node_part(n) for n in t.column("node").to_pylist()]
        yield pa.table(
            {
                "part": [p for p, _ in where],
                "pos": [i for _, i in where],
                **{c: t.column(c) for c in ("source", "id", "reason")},
            },
            schema=DROP_SCHEMA,
        )


def write_drop_list(output: str, tables: Iterator[pa.Table], group_rows: int = DROP_GROUP_ROWS) -> int:
    """Stream DROP_SCHEMA tables, sorted by (part, pos), to the drop file `output`; the rows written.

    Each row group holds at most `group_rows` rows of a few consecutive parts, and its min/max
    statistics of `part` (written by default) say which: `DropList` reads a part's row groups only.
    """
    rows = 0
    with atomic_write(output, "wb") as f, pq.ParquetWriter(f, DROP_SCHEMA) as w:
        for t in tables:
            w.write_table(t, row_group_size=group_rows)
            rows += t.num_rows
    return rows


def _check_drop_schema(drop_file: str, names: list[str]) -> None:
    if names != DROP_SCHEMA.names:
        raise DedupError(
            f"{drop_file}: columns {names}, expected {DROP_SCHEMA.names} (written by an "
            "older version); rebuild with --overwrite"
        )


def read_drop_list(drop_file: str) -> dict[tuple[str, int], tuple[str, str | None]]:
    """{(part, pos): (unique id, drop reason or None for a record kept under a new id)} of a whole drop file.

    The whole list is in memory: for tests and small corpora; a task that reads some parts uses `DropList`.
    """
    fs, path = fsspec.core.url_to_fs(drop_file)
    t = pq.read_table(fs.open(path, "rb"))
    _check_drop_schema(drop_file, t.schema.names)
    return {(p, i): (d, r) for p, i, d, r in zip(*(t.column(c).to_pylist() for c in ("part", "pos", "id", "reason")))}


class DropList:
    """A drop file read part by part, so a task holds the decisions of the part it reads, not the whole list.

    `part(name)` reads, one at a time, only the row groups whose `part` statistics [min, max] hold `name`:
    in a file `write_drop_list` wrote, the groups that hold rows of that part (the first and last may
    hold other parts' rows too). Memory: that part's decisions and one row group. A file without
    statistics or out of order is still read right, only less selectively.
    `rows_read`: the drop-list rows materialised so far (each row group read counts whole).
    """

    def __init__(self, drop_file: str):
        fs, path = fsspec.core.url_to_fs(drop_file)
        self.file = fs.open(path, "rb")
        self.parquet = pq.ParquetFile(self.file)
        _check_drop_schema(drop_file, self.parquet.schema_arrow.names)
        meta, column = self.parquet.metadata, DROP_SCHEMA.names.index("part")
        self.spans = [_span(meta.row_group(g).column(column).statistics) for g in range(meta.num_row_groups)]
        self.rows_read = 0

    def groups_of(self, part: str) -> list[int]:
        """The row groups that may hold rows of `part` (a group without statistics may hold any)."""
        return [g for g, span in enumerate(self.spans) if span is None or span[0] <= part <= span[1]]

    def part(self, part: str) -> dict[int, tuple[str, str | None]]:
        """{pos: (unique id, drop reason or None for a record kept under a new id)} of one prepared part."""
        out: dict[int, tuple[str, str | None]] = {}
        for g in self.groups_of(part):
            t = self.parquet.read_row_group(g, columns=["part", "pos", "id", "reason"], use_threads=False)
            self.rows_read += t.num_rows
            t = t.filter(pc.equal(t.column("part"), part))
            out.update(
                zip(t.column("pos").to_pylist(), zip(t.column("id").to_pylist(), t.column("reason").to_pylist()))
            )
        return out

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> DropList:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _span(stats) -> tuple[str, str] | None:
    """(min, max) part of a row group, or None where its statistics do not say."""
    if stats is None or not stats.has_min_max:
        return None
    return stats.min, stats.max


def drop_counts(drop_file: str) -> dict[str, Any]:
    """{source: {reason: count}} of a drop file (for summaries); renamed records are not drops."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    fs, path = fsspec.core.url_to_fs(drop_file)
    t = pq.read_table(fs.open(path, "rb"), columns=["source", "reason"])
    for s, r in zip(t.column("source").to_pylist(), t.column("reason").to_pylist()):
        if r is not None:
            out[s][r] += 1
    return {k: dict(v) for k, v in out.items()}
