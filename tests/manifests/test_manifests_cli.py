from __future__ import annotations

import json
import shutil

import duckdb
import pyarrow.parquet as pq
import pytest

from manifests import ManifestError, open_manifest
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


def test_query_formats(tiny_corpus, capsys):
    assert main(["query", "--db", str(tiny_corpus), "SELECT count(*) AS n FROM shards", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["n"] == 12
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


def one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _garbage(tmp_path):
    p = tmp_path / "garbage.duckdb"
    p.write_bytes(b"\x00not a database" * 64)
    return p


def _foreign(tmp_path):
    p = tmp_path / "foreign.duckdb"
    duckdb.connect(str(p)).execute("CREATE TABLE t AS SELECT 1 AS x").close()
    return p


BAD_DB = {
    "missing file": (lambda tmp: tmp / "none.duckdb", "no manifest here"),
    "folder without a manifest": (lambda tmp: tmp, "no manifest here"),
    "not a duckdb file": (_garbage, "cannot open the manifest"),
    "duckdb file that is not a manifest": (_foreign, "not a manifest (no table meta, sources, shards"),
}


@pytest.mark.parametrize("command", [["summary"], ["query", "SELECT 1"], ["verify"], ["verify", "--quick"]])
@pytest.mark.parametrize("case", sorted(BAD_DB))
def test_a_bad_db_is_one_line(tmp_path, capsys, command, case):
    make, expected = BAD_DB[case]
    db = make(tmp_path)
    assert main([command[0], "--db", str(db), *command[1:]]) == 1
    line = one_line(capsys.readouterr().err)
    assert expected in line and str(db) in line


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ManifestError, match="no manifest here"):
        main(["--debug", "summary", "--db", str(tmp_path / "none.duckdb")])


def test_an_empty_corpus_is_reported_not_a_crash(tmp_path, capsys):
    open_manifest(tmp_path).close()  # the schema, no shards
    assert main(["summary", "--db", str(tmp_path)]) == 0
    assert "no train shards registered" in capsys.readouterr().out
    assert main(["query", "--db", str(tmp_path), "SELECT count(*) AS n FROM shards", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"n": 0}]
    assert main(["verify", "--db", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["checked"] == 0


@pytest.mark.parametrize(
    "argv", [[], ["query", "--db", "x"], ["query", "--db", "x", "SELECT 1", "--format", "xml"], ["no-such-command"]]
)
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_reference_totals_match_paper():
    assert reference_totals() == {k: v * 10**9 for k, v in PUBLISHED_TOTALS_B.items()}
