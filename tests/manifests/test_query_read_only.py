"""`manifests query` runs reads only: every write, file access outside the corpus and extension is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from manifests import list_shards
from manifests.cli import main
from manifests.query import QueryRefused, read_statements, run_query


@pytest.fixture()
def corpus(tiny_corpus, tmp_path, monkeypatch):
    """A copy of the tiny corpus in tmp_path/c, run from tmp_path so relative paths land where we look."""
    root = tmp_path / "c"
    shutil.copytree(tiny_corpus, root)
    (tmp_path / "outside.csv").write_text("secret,value\nkey,42\n")
    monkeypatch.chdir(tmp_path)
    return root


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``folder`` with its size and mtime, to see that nothing changed."""
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def one_line_error(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("manifests: error: ")
    return lines[0]


REFUSED_BY_TYPE = [
    ("COPY (SELECT 1) TO 'f.csv'", "statement 1 (COPY)"),
    ("COPY (SELECT * FROM shards) TO '{root}/shards/gen_a/99999_00000.parquet' (FORMAT parquet)", "statement 1 (COPY)"),
    ("COPY shards FROM '{root}/shards/gen_a/00000_00000.parquet'", "statement 1 (COPY)"),
    ("EXPORT DATABASE 'd'", "statement 1 (EXPORT)"),
    ("EXPORT DATABASE '{root}/shards/d'", "statement 1 (EXPORT)"),
    ("ATTACH 'other.duckdb' (READ_WRITE); CREATE TABLE other.t AS SELECT 1", "statement 1 (ATTACH)"),
    ("ATTACH '{root}/other.duckdb' AS o", "statement 1 (ATTACH)"),
    ("CREATE TABLE t AS SELECT 1", "statement 1 (CREATE)"),
    ("CREATE VIEW v AS SELECT 1", "statement 1 (CREATE)"),
    ("CREATE MACRO m(x) AS x + 1", "statement 1 (CREATE"),
    ("CREATE SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')", "statement 1 (CREATE"),
    ("INSERT INTO meta VALUES ('k', 'v')", "statement 1 (INSERT)"),
    ("UPDATE shards SET n_docs = 0", "statement 1 (UPDATE)"),
    ("DELETE FROM shards", "statement 1 (DELETE)"),
    ("DROP TABLE shards", "statement 1 (DROP)"),
    ("ALTER TABLE shards ADD COLUMN x INTEGER", "statement 1 (ALTER)"),
    ("INSTALL httpfs", "statement 1 (LOAD)"),
    ("FORCE INSTALL httpfs FROM community", "statement 1 (LOAD)"),
    ("LOAD httpfs", "statement 1 (LOAD)"),
    ("SET enable_external_access = true", "statement 1 (SET)"),
    ("SET profiling_output = 'p.txt'", "statement 1 (SET)"),
    ("RESET lock_configuration", "statement 1 (SET)"),
    ("PRAGMA enable_profiling", "statement 1 (PRAGMA)"),
    ("PRAGMA profiling_output = 'p.txt'", "statement 1 (SET)"),  # DuckDB parses it as a SET
    ("PRAGMA import_database('d')", "statement 1 (PRAGMA)"),
    ("CALL checkpoint()", "statement 1 (CALL)"),
    ("CHECKPOINT", "statement 1 (CALL)"),
    ("VACUUM", "statement 1 (VACUUM)"),
    ("BEGIN TRANSACTION", "statement 1 (TRANSACTION)"),
    ("PREPARE p AS SELECT 1", "statement 1 (PREPARE)"),
    ("EXPLAIN ANALYZE COPY (SELECT 1) TO 'f.csv'", "statement 1 (EXPLAIN)"),
    ("SELECT 1; COPY (SELECT 1) TO 'f.csv'", "statement 2 (COPY)"),
    ("SELECT count(*) FROM shards; DELETE FROM shards", "statement 2 (DELETE)"),
    ("SELECT 1; SELECT 2; COPY (SELECT 1) TO '{root}/shards/gen_a/99999_00000.parquet'", "statement 3 (COPY)"),
]

REFUSED_FILE_ACCESS = [
    ("SELECT * FROM read_text('/etc/passwd')", "/etc/passwd"),
    ("SELECT * FROM read_csv('/etc/passwd')", "/etc/passwd"),
    ("SELECT * FROM '/etc/passwd'", "/etc/passwd"),  # not even tried: no replacement scan for a bare file name
    ("SELECT * FROM '/etc/os-release.csv'", "/etc/os-release.csv"),
    ("SELECT * FROM read_csv('{outside}')", "outside.csv"),
    ("SELECT * FROM read_csv('outside.csv')", "outside.csv"),
    ("SELECT * FROM read_text('{root}/shards/../../outside.csv')", "outside.csv"),
    ("SELECT * FROM read_text('{root}/tokenizer/tokenizer.json')", "tokenizer.json"),  # only shards/ and validation/
    ("SELECT * FROM glob('/etc/*')", "/etc/*"),
    ("SELECT * FROM read_parquet('https://example.com/x.parquet')", "https://example.com/x.parquet"),
]


@pytest.mark.parametrize("sql,named", REFUSED_BY_TYPE + REFUSED_FILE_ACCESS)
def test_every_non_read_is_refused_and_nothing_is_created(corpus, tmp_path, capsys, sql, named):
    file_access = (sql, named) in REFUSED_FILE_ACCESS and "FROM '/etc/passwd'" not in sql
    sql = sql.format(root=corpus, outside=tmp_path / "outside.csv")
    before = tree(tmp_path)
    assert main(["query", "--db", str(corpus), sql]) == 1
    out, err = capsys.readouterr()
    line = one_line_error(err)
    assert named in line
    if file_access:
        assert f"files can be read only under {corpus.resolve()}/shards/" in line
    assert "secret" not in out and "root:" not in out
    assert tree(tmp_path) == before


@pytest.mark.parametrize("sql,named", REFUSED_BY_TYPE)
def test_refusal_happens_before_any_statement_runs(corpus, sql, named):
    with pytest.raises(QueryRefused, match=named.replace("(", r"\(").replace(")", r"\)")):
        read_statements(sql.format(root=corpus))


def test_the_connection_is_locked_down(corpus):
    cols, rows = run_query(
        corpus,
        "SELECT current_setting('enable_external_access'), current_setting('lock_configuration'), "
        "current_setting('autoinstall_known_extensions'), "
        "current_setting('autoload_known_extensions'), current_setting('allowed_directories')",
    )
    external, locked, autoinstall, autoload, allowed = rows[0]
    assert (external, locked, autoinstall, autoload) == (False, True, False, False)
    assert sorted(allowed) == sorted(f"{corpus.resolve() / d}/" for d in ("shards", "validation"))


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) AS n FROM shards",
        "FROM shards SELECT count(*) AS n",
        "WITH s AS (SELECT * FROM shards) SELECT count(*) AS n FROM s",
        "SELECT sum(n_shards) AS n FROM tokens_by_source",  # a view (train only) plus the validation shards below
    ],
)
def test_reads_on_tables_and_views_still_work(corpus, capsys, sql):
    expected = len(list_shards(corpus)) + (0 if "tokens_by_source" in sql else len(list_shards(corpus, "validation")))
    assert main(["query", "--db", str(corpus), sql, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"n": expected}]


def test_reporting_statements_and_shard_reads_work(corpus):
    assert ("shards",) in run_query(corpus, "SHOW TABLES")[1]
    assert "sha256" in [r[0] for r in run_query(corpus, "DESCRIBE shards")[1]]
    assert "n_tokens" in [r[1] for r in run_query(corpus, "PRAGMA table_info('shards')")[1]]
    assert run_query(corpus, "EXPLAIN SELECT * FROM shards")[1]
    assert run_query(corpus, "SELECT 1 AS a; SELECT 2 AS b") == (["b"], [(2,)])  # the last statement's result
    shard = list_shards(corpus)[0]
    _, rows = run_query(corpus, f"SELECT count(*), sum(n_tokens) FROM read_parquet('{shard['abs_path']}')")
    t = pq.read_table(shard["abs_path"])
    assert rows == [(t.num_rows, sum(t.column("n_tokens").to_pylist()))] == [(shard["n_docs"], shard["n_tokens"])]


@pytest.mark.parametrize(
    "sql,named",
    [
        ("SELEC 1", "syntax error"),
        ("SELECT no_such_column FROM shards", "no_such_column"),
        ("SELECT * FROM no_such_table", "no_such_table"),
        ("", "no statement"),
    ],
)
def test_sql_errors_are_one_line(corpus, capsys, sql, named):
    assert main(["query", "--db", str(corpus), sql]) == 1
    assert named in one_line_error(capsys.readouterr().err)
