"""`manifests rebuild` re-scans the shards and loses nothing else: meta, sources, step stats, mixtures, plans."""

from __future__ import annotations

import json
import shutil

import duckdb
import pytest

from manifests import open_manifest, register_mixture, register_plan, register_step_stats, set_meta
from manifests.cli import main
from manifests.schema import TABLES
from manifests.verify import rebuild

CARRIED = [t for t in TABLES if t != "shards"]  # every table of the schema; shards are re-scanned


@pytest.fixture()
def corpus(tiny_corpus, tmp_path):
    """The tiny corpus in a folder whose name has a quote, with rows in every table a build and a search write."""
    root = tmp_path / 'bob\'s "corpus"'
    shutil.copytree(tiny_corpus, root)
    with open_manifest(root) as con:
        register_step_stats(
            con,
            [
                {"source": "gen_a", "step": "dedup", "docs_in": 400, "docs_out": 390, "reason": "exact", "count": 10},
                {
                    "source": "math_a",
                    "step": "filter",
                    "docs_in": 400,
                    "docs_out": 399,
                    "reason": "too_short",
                    "count": 1,
                },
            ],
        )
        register_mixture(con, "best", "candidate", {"general": 0.25, "code_a": 0.75}, "demix", score=1.5)
        register_plan(
            con, "plan-1", [{"source": "gen_a", "allotted_tokens": 1000, "available_tokens": 800, "epochs": 1.25}]
        )
        set_meta(con, {"recipe": {"name": "tiny", "note": "é π 漢"}})
    return root


def snapshot(root) -> dict[str, list[tuple]]:
    with open_manifest(root, read_only=True) as con:
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in TABLES}


def test_rebuild_keeps_every_table(corpus, capsys):
    before = snapshot(corpus)
    assert all(before[t] for t in TABLES), "every table has rows to lose"
    assert main(["rebuild", "--db", str(corpus / "manifest.duckdb"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["carried"] == {t: len(before[t]) for t in CARRIED}
    assert snapshot(corpus) == before  # shard rows included, created_at too (it is the file's mtime)
    assert sorted(p.name for p in corpus.iterdir() if p.name.startswith(".")) == []  # no temporary left
    assert main(["verify", "--db", str(corpus)]) == 0


def test_rebuild_without_a_manifest_recovers_shards_and_sources(corpus):
    before = snapshot(corpus)
    (corpus / "manifest.duckdb").unlink()
    report = rebuild(corpus)
    assert report.carried == {} and report.shards == len(before["shards"])
    after = snapshot(corpus)
    assert after["shards"] == before["shards"]
    # the footers tell source, domain, tier and candidate; uri, license, weight and title need the recipe
    assert [r[:4] for r in after["sources"]] == [r[:4] for r in before["sources"]]


def test_an_unreadable_old_manifest_stops_the_rebuild(corpus, capsys):
    manifest = corpus / "manifest.duckdb"
    manifest.write_bytes(b"not a duckdb file\n" * 100)
    assert main(["rebuild", "--db", str(manifest)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert str(manifest) in err and "--from-shards-only" in err
    assert manifest.read_bytes() == b"not a duckdb file\n" * 100  # nothing changed
    assert sorted(p.name for p in corpus.iterdir()) == ["manifest.duckdb", "shards", "tokenizer", "validation"]

    assert main(["rebuild", "--db", str(manifest), "--from-shards-only", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    kept = corpus / report["set_aside"].rsplit("/", 1)[1]
    assert kept.read_bytes() == b"not a duckdb file\n" * 100  # set aside, never deleted
    assert report["carried"] == {} and report["shards"] == 12
    assert main(["verify", "--db", str(corpus)]) == 0


def test_an_old_manifest_without_our_tables_stops_the_rebuild(corpus, capsys):
    manifest = corpus / "manifest.duckdb"
    manifest.unlink()
    duckdb.connect(str(manifest)).execute("CREATE TABLE other AS SELECT 1 AS x").close()
    assert main(["rebuild", "--db", str(manifest)]) == 1
    err = capsys.readouterr().err
    assert "the old manifest has no table meta" in err and len(err.strip().splitlines()) == 1


def test_rebuild_of_an_empty_corpus_is_one_line(tmp_path, capsys):
    (tmp_path / "shards").mkdir()
    assert main(["rebuild", "--db", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "no shards under shards/ or validation/" in err and str(tmp_path) in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "manifest.duckdb").exists()
