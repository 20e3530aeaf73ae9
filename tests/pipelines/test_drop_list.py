"""The drop list read part by part: a reader of one part reads only that part's row groups, and decides as the whole list."""

from __future__ import annotations

import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datatrove.data import Document
from pipeline_inputs import prose

from corpus.recipe import DedupConfig
from pipelines.dedup import DedupSignature, DropList, PreparedReader, PreparedWriter, find_duplicates, kept_records
from pipelines.dedup_cluster import DROP_SCHEMA, read_drop_list, write_drop_list

GROUP_ROWS = 37  # small row groups, so parts share groups and one part spans several


def _part(rank: int, part: int) -> str:
    return f"{rank:05d}_{part:05d}.parquet"


def _synthetic(path: str, rng: random.Random) -> list[dict]:
    """A drop list of 4 ranks x 10 parts, some parts without rows, written in tables of uneven sizes."""
    rows = []
    for rank in range(4):
        for part in range(10):
            n = rng.choice([0, 1, 5, 36, 37, 38, 120])
            for pos in sorted(rng.sample(range(500), n)):
                reason = rng.choice([None, "exact_duplicate", "near_duplicate"])
                rows.append(
                    {"part": _part(rank, part), "pos": pos, "source": "wéb", "id": f"wéb/{pos}#1", "reason": reason}
                )
    cuts = sorted(rng.sample(range(1, len(rows)), 30))
    tables = [pa.Table.from_pylist(rows[a:b], schema=DROP_SCHEMA) for a, b in zip([0, *cuts], [*cuts, len(rows)])]
    assert write_drop_list(path, iter(tables), GROUP_ROWS) == len(rows)
    return rows


@pytest.fixture
def groups_read(monkeypatch) -> list[int]:
    """The row-group indices every ParquetFile.read_row_group call reads (drop files only)."""
    seen: list[int] = []
    original = pq.ParquetFile.read_row_group

    def counting(self, i, *args, **kwargs):
        if self.schema_arrow.names == DROP_SCHEMA.names:
            seen.append(i)
        return original(self, i, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", counting)
    return seen


def test_a_part_reads_only_its_row_groups(tmp_path, groups_read):
    path = str(tmp_path / "dedup.parquet")
    rows = _synthetic(path, random.Random(3))
    meta = pq.ParquetFile(path).metadata
    assert (
        meta.num_row_groups >= len(rows) // GROUP_ROWS
        and max(meta.row_group(g).num_rows for g in range(meta.num_row_groups)) <= GROUP_ROWS
    )
    holders: dict[str, set[int]] = {}  # which row groups hold rows of each part, counted from the rows
    start = 0
    for g in range(meta.num_row_groups):
        for r in rows[start : start + meta.row_group(g).num_rows]:
            holders.setdefault(r["part"], set()).add(g)
        start += meta.row_group(g).num_rows
    assert any(len(h) > 1 for h in holders.values())  # a part over several groups
    assert sum(len(h) for h in holders.values()) > meta.num_row_groups  # and groups shared by parts
    whole = read_drop_list(path)
    with DropList(path) as drops:
        for rank in range(4):
            for part in (_part(rank, p) for p in range(10)):
                groups_read.clear()
                before = drops.rows_read
                got = drops.part(part)
                assert got == {pos: v for (p, pos), v in whole.items() if p == part}
                if part in holders:  # its own groups, and none other
                    assert set(groups_read) == holders[part] and len(groups_read) == len(holders[part])
                    assert drops.rows_read - before <= len(got) + 2 * GROUP_ROWS
                else:  # no rows: at most the one group whose span it falls in
                    assert len(groups_read) <= 1 and not got
        assert drops.part("99999_00000.parquet") == {} and drops.part("") == {}


def test_unsorted_or_single_group_files_still_read_right(tmp_path):
    """A drop list written otherwise (one row group, rows out of order) gives the same decisions."""
    path, other = str(tmp_path / "dedup.parquet"), str(tmp_path / "shuffled.parquet")
    rows = _synthetic(path, random.Random(4))
    random.Random(0).shuffle(rows)
    pq.write_table(pa.Table.from_pylist(rows, schema=DROP_SCHEMA), other, row_group_size=50)
    with DropList(path) as a, DropList(other) as b:
        for part in {r["part"] for r in rows}:
            assert a.part(part) == b.part(part)


def _prepare(folder: str, rng: random.Random) -> None:
    """3 prepare tasks, parts of 4 documents, duplicates within and across parts and tasks, repeated ids."""
    texts = [prose(rng) for _ in range(6)]
    cfg = DedupConfig()
    for rank in range(3):
        docs = [
            Document(
                text=texts[rng.randrange(len(texts))],
                id=f"wéb/{rng.randrange(8)}",
                metadata={"source": "wéb", "unit": rank, "row": i},
            )
            for i in range(13)
        ]
        signed = list(DedupSignature(cfg).run(iter(docs), rank, 3))
        list(PreparedWriter(folder, part_docs=4).run(iter(signed), rank, 3))


def test_shard_tasks_decide_as_the_whole_list(tmp_path, groups_read):
    folder, drop_file = str(tmp_path / "prepared"), str(tmp_path / "dedup.parquet")
    _prepare(folder, random.Random(7))
    table = find_duplicates(folder, DedupConfig())
    reasons = table.column("reason").to_pylist()
    assert None in reasons and "exact_duplicate" in reasons  # renamed repeated ids and drops
    assert len(set(table.column("part").to_pylist())) > 4
    write_drop_list(drop_file, (pa.Table.from_batches([b]) for b in table.to_batches(max_chunksize=5)), group_rows=3)
    whole = read_drop_list(drop_file)
    expected: dict[int, list[tuple[str, str]]] = {}  # the whole-list reader's decisions, rank by rank
    for path in sorted((tmp_path / "prepared").glob("[0-9]*.parquet")):
        t = pq.read_table(path, columns=["id", "text"]).to_pylist()
        for i, r in enumerate(t):
            uid, reason = whole.get((path.name, i), (r["id"], None))
            if reason is None:
                expected.setdefault(int(path.name[:5]), []).append((uid, r["text"]))
    meta = pq.ParquetFile(drop_file).metadata
    parts = pq.read_table(drop_file, columns=["part"]).column("part").to_pylist()
    first = [sum(meta.row_group(k).num_rows for k in range(g)) for g in range(meta.num_row_groups)]
    for rank in range(3):
        groups_read.clear()
        got = [(d.id, d.text) for d in PreparedReader(folder, drop_file).run(None, rank, 3)]
        assert got == expected[rank]
        mine = {
            g
            for g in range(meta.num_row_groups)
            if any(p.startswith(f"{rank:05d}_") for p in parts[first[g] : first[g] + meta.row_group(g).num_rows])
        }
        assert set(groups_read) <= mine  # never a row group of another task's parts
    kept = [(r[2], r[3]) for r in kept_records(folder, drop_file, ("text",))]
    assert kept == [x for rank in range(3) for x in expected[rank]]
