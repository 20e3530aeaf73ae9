from __future__ import annotations

import pyarrow.parquet as pq

from manifests import list_shards, list_sources, open_manifest, read_shard_record, register_shards


def test_tiny_corpus_manifest_sums_equal_parquet(tiny_corpus):
    rows = list_shards(tiny_corpus)
    assert rows, "train shards registered"
    for row in rows:
        t = pq.read_table(row["abs_path"])
        assert t.num_rows == row["n_docs"]
        assert sum(t.column("n_tokens").to_pylist()) == row["n_tokens"]
        assert all(len(x) == n for x, n in zip(t.column("tokens").to_pylist(), t.column("n_tokens").to_pylist()))
    by_source = {r["source"]: r["n_tokens"] for r in list_sources(tiny_corpus)}
    assert set(by_source) == {"gen_a", "gen_b", "code_a", "math_a"}
    assert all(v > 0 for v in by_source.values())


def test_registration_is_idempotent(tiny_corpus, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(tiny_corpus, root)
    before = len(list_shards(root)) + len(list_shards(root, split="validation"))
    recs = [read_shard_record(r["abs_path"], root) for r in list_shards(root)]
    with open_manifest(root) as con:
        register_shards(con, recs)
        register_shards(con, recs)
        n = con.execute("SELECT count(*) FROM shards").fetchone()[0]
    assert n == before
