from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest

from manifests.cli import main
from manifests.reference import PUBLISHED_TOTALS_B, reference_totals


@pytest.fixture()
def corpus_copy(tiny_corpus, tmp_path):
    root = tmp_path / "c"
    shutil.copytree(tiny_corpus, root)
    return root


def test_summary_json_has_three_domains(tiny_corpus, capsys):
    assert main(["summary", "--db", str(tiny_corpus / "manifest.duckdb"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {r["domain"] for r in out["tokens by domain"]} == {"general", "code", "math"}
    total = sum(r["n_tokens"] for r in out["tokens by domain"])
    assert total == sum(r["n_tokens"] for r in out["tokens by source"])


def test_query_is_read_only_and_formats(tiny_corpus, capsys):
    assert main(["query", "--db", str(tiny_corpus), "SELECT count(*) AS n FROM shards", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["n"] == 12
    assert main(["query", "--db", str(tiny_corpus), "DELETE FROM shards"]) == 1
    assert "read-only" in capsys.readouterr().err
    assert main(["query", "--db", str(tiny_corpus), "SELECT count(*) AS n FROM shards", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["n", "12"]


def test_verify_finds_missing_changed_and_unregistered(corpus_copy, capsys):
    assert main(["verify", "--db", str(corpus_copy), "--json"]) == 0
    shards = sorted((corpus_copy / "shards").rglob("*.parquet"))
    shards[0].unlink()
    t = pq.read_table(shards[1])
    pq.write_table(t.slice(1), shards[1])  # changed rows and bytes
    shutil.copy(shards[2], shards[2].with_name("99999_00000.parquet"))
    capsys.readouterr()
    assert main(["verify", "--db", str(corpus_copy), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    rel = lambda p: p.relative_to(corpus_copy).as_posix()  # noqa: E731
    assert report["missing"] == [rel(shards[0])]
    assert [c["path"] for c in report["changed"]] == [rel(shards[1])]
    assert report["unregistered"] == [rel(shards[2].with_name("99999_00000.parquet"))]


def test_rebuild_reproduces_the_manifest(corpus_copy, capsys):
    def snapshot():
        main(["query", "--db", str(corpus_copy), "SELECT path, source, split, n_docs, n_tokens, n_bytes, sha256 "
              "FROM shards ORDER BY path", "--format", "json"])
        return json.loads(capsys.readouterr().out)
    before = snapshot()
    (corpus_copy / "manifest.duckdb").unlink()
    assert main(["rebuild", "--db", str(corpus_copy / "manifest.duckdb")]) == 0
    capsys.readouterr()
    assert snapshot() == before
    assert main(["verify", "--db", str(corpus_copy)]) == 0


def test_missing_manifest_is_a_clear_error(tmp_path, capsys):
    assert main(["summary", "--db", str(tmp_path / "none.duckdb")]) == 1
    assert "no manifest here" in capsys.readouterr().err


def test_reference_totals_match_paper():
    assert reference_totals() == {k: v * 10**9 for k, v in PUBLISHED_TOTALS_B.items()}
