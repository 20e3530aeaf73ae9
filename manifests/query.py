"""User SQL on the manifest: read statements only, on a connection that cannot write, install or wander.

Two locks, so that one mistake is not enough:
- every statement is parsed first (`duckdb.extract_statements`) and anything but a read is refused,
  naming the statement, before any of them runs;
- the connection is opened read-only, with extension install/autoload off, Python replacement scans
  off, no spill directory, external file access off except for the corpus's own data folders
  (`<corpus>/shards/`, `<corpus>/validation/`), and then the configuration is locked, so no `SET`
  or `PRAGMA` in the user's SQL can undo any of it.

The corpus folder is simply the folder that holds manifest.duckdb, which may be a home directory;
that is why file reads are allowed in the two folders of shards this toolkit writes, not in the
whole folder.
"""

from __future__ import annotations

import os
import re

import duckdb

from corpus.urls import is_url
from manifests.manifest import ManifestError, corpus_root, manifest_path, remote_copy, require_manifest
from manifests.schema import SHARD_FOLDERS

ST = duckdb.StatementType
# SELECT covers FROM-first queries, VALUES, WITH, set operations, DESCRIBE, SHOW and SUMMARIZE.
READ_TYPES = {ST.SELECT}
# PRAGMAs that only report; any other PRAGMA may change settings or import a database.
READ_PRAGMAS = {
    "table_info",
    "storage_info",
    "show",
    "show_tables",
    "show_tables_expanded",
    "show_databases",
    "database_list",
    "database_size",
    "version",
    "platform",
    "functions",
    "collations",
}
_PRAGMA = re.compile(r"\s*PRAGMA\s+(\w+)\s*(\(.*\))?\s*;?\s*$", re.I | re.S)
_EXPLAIN = re.compile(r"\s*EXPLAIN\s+(?:ANALY[SZ]E\s+)?(.*)$", re.I | re.S)
ALLOWED_HELP = (
    "SELECT (with FROM-first, WITH, VALUES, DESCRIBE, SHOW, SUMMARIZE), EXPLAIN of a SELECT, PRAGMA "
    + ", ".join(sorted(READ_PRAGMAS))
)


class QueryRefused(ManifestError):
    """User SQL that is not a read, or that would reach outside the corpus; the message names the statement."""


def _one_line(e: duckdb.Error) -> str:
    """DuckDB's message without the echoed SQL and caret lines, on one line."""
    lines = [ln.strip() for ln in str(e).splitlines()]
    return " ".join(ln for ln in lines if ln and not ln.startswith("LINE ") and set(ln) != {"^"})


def _statement_name(st) -> str:
    return st.type.name.replace("_", " ")


def _is_read(st) -> bool:
    if st.type in READ_TYPES:
        return True
    if st.type == ST.PRAGMA:
        m = _PRAGMA.match(st.query)
        return bool(m) and m.group(1).lower() in READ_PRAGMAS
    if st.type == ST.EXPLAIN:
        # EXPLAIN ANALYZE runs its statement, so the explained statement must itself be a read.
        m = _EXPLAIN.match(st.query)
        if not m:
            return False
        inner = duckdb.extract_statements(m.group(1))
        return len(inner) == 1 and inner[0].type in READ_TYPES
    return False


def read_statements(sql: str) -> list:
    """Parse ``sql`` and return its statements if every one is a read.

    Raises QueryRefused naming the first statement that is not (``statement 2 (COPY): ...``), and
    ManifestError for SQL that does not parse.
    """
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as e:
        raise ManifestError(f"cannot parse the query: {_one_line(e)}") from None
    if not statements:
        raise QueryRefused("the query holds no statement")
    for i, st in enumerate(statements, 1):
        try:
            ok = _is_read(st)
        except duckdb.Error as e:
            raise ManifestError(f"statement {i}: cannot parse: {_one_line(e)}") from None
        if not ok:
            raise QueryRefused(
                f"statement {i} ({_statement_name(st)}): only read statements are allowed "
                "(SELECT, EXPLAIN of a SELECT, PRAGMA table_info and other reporting PRAGMAs)"
            )
    return statements


def open_query_connection(db: str | os.PathLike) -> duckdb.DuckDBPyConnection:
    """A read-only, locked connection to the manifest for user SQL (see the module docstring).

    Raises ManifestError naming the file when there is no readable manifest.
    """
    if is_url(str(db)):  # a remote corpus: query a local copy; its shard files stay out of reach
        path, shard_dirs = remote_copy(str(db)), []
    else:
        path = manifest_path(db)
        if not path.is_file():
            raise ManifestError(f"{path}: no manifest here (build a corpus first, or `manifests rebuild`)")
        shard_dirs = [f"{corpus_root(db) / d}{os.sep}" for d in SHARD_FOLDERS]
    config = {
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "allow_community_extensions": False,
        "allow_persistent_secrets": False,
        "python_enable_replacements": False,
        "temp_directory": "",  # no spill folder appears beside the manifest
    }
    try:
        con = duckdb.connect(str(path), read_only=True, config=config)
    except duckdb.Error as e:
        raise ManifestError(f"{path}: cannot open the manifest: {_one_line(e)}") from None
    try:
        require_manifest(con, path)
        # DuckDB takes allowed_directories only while external access is still on, and only after
        # the database started; no user SQL has run yet, and the lock below freezes all three.
        # The trailing separator keeps `<corpus>/shards2` out of `<corpus>/shards`.
        con.execute("SET allowed_directories = ?", [shard_dirs])
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def run_query(db: str | os.PathLike, sql: str) -> tuple[list[str], list[tuple]]:
    """Run user SQL (read statements only) and return the last statement's column names and rows.

    Raises QueryRefused for anything but a read or a file outside the corpus, ManifestError (one line) for
    any other DuckDB error.
    """
    statements = read_statements(sql)
    with open_query_connection(db) as con:
        try:
            rel = None
            for st in statements:
                rel = con.execute(st)
            return [d[0] for d in rel.description], rel.fetchall()
        except duckdb.PermissionException as e:
            if is_url(str(db)):
                raise QueryRefused(f"query refused: {_one_line(e)} (a remote corpus's files cannot be read)") from None
            where = " and ".join(f"{corpus_root(db) / d}/" for d in SHARD_FOLDERS)
            raise QueryRefused(f"query refused: {_one_line(e)} (files can be read only under {where})") from None
        except duckdb.Error as e:
            raise ManifestError(f"query failed: {_one_line(e)}") from None


__all__ = ["ALLOWED_HELP", "QueryRefused", "open_query_connection", "read_statements", "run_query"]
