"""Open, register into and read the DuckDB manifest. Registration is bulk (Arrow) and idempotent."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from corpus import Recipe
from corpus.urls import is_url, join_url
from manifests.errors import ManifestError
from manifests.schema import TABLES, create_schema
from manifests.shardfile import ShardMeta

MANIFEST_NAME = "manifest.duckdb"


def manifest_path(db: str | os.PathLike) -> Path:
    """Accept either the .duckdb file or the corpus folder that holds it."""
    p = Path(db)
    return p / MANIFEST_NAME if p.is_dir() else p


def corpus_root(db: str | os.PathLike) -> Path:
    """The folder that shard paths in the manifest are relative to."""
    return manifest_path(db).resolve().parent


def corpus_location(db: str | os.PathLike) -> str:
    """`corpus_root` as a string, or the corpus root URL of a manifest at a URL (shard paths are relative to it)."""
    return manifest_url(str(db))[1] if is_url(str(db)) else str(corpus_root(db))


def manifest_url(db: str) -> tuple[str, str]:
    """(the manifest's URL, the corpus root URL) of a URL naming a corpus folder or its .duckdb file."""
    db = db.rstrip("/")
    if db.endswith(".duckdb"):
        return db, db.rsplit("/", 1)[0]
    return f"{db}/{MANIFEST_NAME}", db


def open_manifest(db: str | os.PathLike, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the manifest; read-only connections never create or change anything.

    ``db`` is a corpus folder or its .duckdb file, a local path or (read-only) any fsspec URL, whose
    manifest is then read from a private local copy made for this connection (a build made it locally too).
    For our own SQL: user SQL goes through `manifests.query.run_query`, which refuses all but reads.
    Raises ManifestError naming the file when a read-only open finds no file, or the file is no manifest.
    """
    if is_url(str(db)):
        return _open_remote(str(db), read_only)
    path = manifest_path(db)
    if read_only and not path.is_file():
        raise ManifestError(f"{path}: no manifest here (build a corpus first, or `manifests rebuild`)")
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.Error as e:  # not a DuckDB file, a newer format, locked by a writer, ...
        raise ManifestError(f"{path}: cannot open the manifest: {str(e).splitlines()[0]}") from None
    if not read_only:
        create_schema(con)
    else:
        require_manifest(con, path)
    return con


_REMOTE_COPIES: list[tempfile.TemporaryDirectory] = []  # local copies of remote manifests, removed at exit


def remote_copy(db: str) -> Path:
    """A fresh private local copy of the manifest at URL `db` (removed at exit); ManifestError when there is none."""
    url, _ = manifest_url(db)
    fs, path = fsspec.core.url_to_fs(url)
    if not fs.isfile(path):
        raise ManifestError(f"{url}: no manifest here (build a corpus first, or `manifests rebuild`)")
    if not _REMOTE_COPIES:
        _REMOTE_COPIES.append(tempfile.TemporaryDirectory(prefix="demix-manifest-"))
    local = Path(_REMOTE_COPIES[0].name) / f"{uuid.uuid4().hex}-{MANIFEST_NAME}"
    fs.get_file(path, str(local))
    return local


def _open_remote(db: str, read_only: bool) -> duckdb.DuckDBPyConnection:
    url, _ = manifest_url(db)
    if not read_only:
        raise ManifestError(
            f"{url}: a manifest at a URL opens read-only (DuckDB writes local files): change a local copy "
            "and upload it, or rebuild into a local folder"
        )
    local = remote_copy(db)
    try:
        con = duckdb.connect(str(local), read_only=True)
    except duckdb.Error as e:
        raise ManifestError(f"{url}: cannot open the manifest: {str(e).splitlines()[0]}") from None
    require_manifest(con, url)
    return con


def require_manifest(con: duckdb.DuckDBPyConnection, path: str | Path) -> None:
    """Close ``con`` and raise ManifestError naming ``path`` unless it holds every manifest table."""
    if missing := check_tables(con):
        con.close()
        raise ManifestError(f"{path}: a DuckDB file but not a manifest (no table {', '.join(missing)})")


def check_tables(con: duckdb.DuckDBPyConnection, database: str | None = None) -> list[str]:
    """The manifest tables missing from ``database`` (an attached name; default the current one)."""
    have = {
        r[0]
        for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' "
            "AND database_name = coalesce(?, current_database())",
            [database],
        ).fetchall()
    }
    return [t for t in TABLES if t not in have]


def _upsert(con: duckdb.DuckDBPyConnection, table: str, rows: pa.Table) -> int:
    if rows.num_rows == 0:
        return 0
    con.register("_incoming", rows)
    try:
        cols = ", ".join(rows.column_names)
        con.execute(f"INSERT OR REPLACE INTO {table} ({cols}) SELECT {cols} FROM _incoming")
    finally:
        con.unregister("_incoming")
    return rows.num_rows


def set_meta(con: duckdb.DuckDBPyConnection, values: dict[str, Any]) -> None:
    """Store build-wide facts (tokenizer path and hash, eos id, recipe) as strings."""
    rows = pa.table(
        {"key": list(values), "value": [v if isinstance(v, str) else json.dumps(v) for v in values.values()]}
    )
    _upsert(con, "meta", rows)


def get_meta(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Every meta key and its string value."""
    return dict(con.execute("SELECT key, value FROM meta").fetchall())


def register_sources(con: duckdb.DuckDBPyConnection, recipe: Recipe) -> int:
    """Upsert the recipe's sources (domain, tier, candidate, location, license, weight)."""
    s = recipe.sources
    rows = pa.table(
        {
            "source": [x.name for x in s],
            "domain": [x.domain for x in s],
            "tier": [x.tier for x in s],
            "candidate": [x.candidate for x in s],
            "uri": [";".join(x.locations) for x in s],
            "license": [x.license for x in s],
            "weight": pa.array([x.weight for x in s], pa.float64()),
            "title": [x.title or x.name for x in s],
        }
    )
    return _upsert(con, "sources", rows)


@dataclass(frozen=True)
class ShardRecord:
    """One row of the `shards` table."""

    path: str
    source: str
    split: str
    n_docs: int
    n_tokens: int
    n_bytes: int
    sha256: str
    tokenizer: str | None
    config_hash: str | None
    created_at: datetime


def file_sha256(path: str | os.PathLike, fs: fsspec.AbstractFileSystem | None = None) -> str:
    """Hex sha256 of a file's bytes, read in 8 MiB blocks."""
    fs = fs or fsspec.filesystem("file")
    h = hashlib.sha256()
    with fs.open(str(path), "rb") as f:
        for block in iter(lambda: f.read(8 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_shard_record(
    path: str | os.PathLike,
    root: str | os.PathLike,
    sha256: str | None = None,
    fs: fsspec.AbstractFileSystem | None = None,
) -> ShardRecord:
    """Build a shard row from a Parquet file's footer metadata and bytes; ``path`` relative to ``root``.

    Local files by default; with ``fs`` (e.g. a remote build's filesystem) ``path`` and ``root`` are its
    paths or URLs. Raises ManifestError naming the file if it is not a DeMix token shard.
    """
    if fs is None:
        fs = fsspec.filesystem("file")
        path, root = Path(path).resolve().as_posix(), Path(root).resolve().as_posix()
    path, root = fs._strip_protocol(str(path)), fs._strip_protocol(str(root)).rstrip("/")
    if not path.startswith(f"{root}/"):
        raise ManifestError(f"{path}: not below the corpus folder {root}")
    try:
        pf = pq.ParquetFile(fs.open(path, "rb"))
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a bad footer
        raise ManifestError(f"{path}: not a readable Parquet file ({e})") from None
    meta = ShardMeta.from_metadata(pf.schema_arrow.metadata, where=str(path))
    n_tokens = 0
    if "n_tokens" in pf.schema_arrow.names:
        col = pf.read(columns=["n_tokens"]).column("n_tokens")
        n_tokens = int(pa.compute.sum(col).as_py() or 0)
    return ShardRecord(
        path=path[len(root) + 1 :],
        source=meta.source,
        split=meta.split,
        n_docs=pf.metadata.num_rows,
        n_tokens=n_tokens,
        n_bytes=fs.size(path),
        sha256=sha256 or file_sha256(path, fs),
        tokenizer=meta.tokenizer,
        config_hash=meta.config_hash,
        created_at=file_modified(fs, path),
    )


def file_modified(fs: fsspec.AbstractFileSystem, path: str) -> datetime:
    """A file's modification time as naive UTC (now, for a filesystem that keeps none)."""
    try:
        when = fs.modified(path)
    except (NotImplementedError, KeyError, AttributeError):
        when = datetime.now(UTC)
    return when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo else when


def register_shards(con: duckdb.DuckDBPyConnection, records: Sequence[ShardRecord]) -> int:
    """Bulk upsert shard rows through Arrow; a shard registered twice stays one row."""
    if not records:
        return 0
    cols = {name: [getattr(r, name) for r in records] for name in ShardRecord.__dataclass_fields__}
    table = pa.table(
        {
            **{k: v for k, v in cols.items() if k != "created_at"},
            "created_at": pa.array(cols["created_at"], pa.timestamp("us")),
        }
    )
    return _upsert(con, "shards", table)


def register_step_stats(con: duckdb.DuckDBPyConnection, rows: Iterable[dict[str, Any]]) -> int:
    """Upsert (source, step, docs_in, docs_out, reason, count) rows; a rerun replaces its rows."""
    rows = list(rows)
    if not rows:
        return 0
    table = pa.table(
        {k: [r.get(k) for r in rows] for k in ("source", "step", "docs_in", "docs_out", "reason", "count")}
    )
    return _upsert(con, "step_stats", table)


def register_mixture(
    con: duckdb.DuckDBPyConnection,
    name: str,
    level: str,
    ratios: dict[str, float],
    method: str,
    score: float | None = None,
) -> None:
    """Record a mixture (name is the key: re-registering replaces it)."""
    con.execute(
        "INSERT OR REPLACE INTO mixtures VALUES (?, ?, ?, ?, ?, ?)",
        [
            name,
            level,
            json.dumps(ratios, sort_keys=True),
            method,
            score,
            datetime.now(UTC).replace(tzinfo=None),
        ],
    )


def register_plan(con: duckdb.DuckDBPyConnection, plan_id: str, rows: Iterable[dict[str, Any]]) -> int:
    """Record a plan's per-source allotments: (source, allotted_tokens, available_tokens, epochs)."""
    rows = list(rows)
    table = pa.table(
        {
            "plan_id": [plan_id] * len(rows),
            "source": [r["source"] for r in rows],
            "allotted_tokens": pa.array([int(r["allotted_tokens"]) for r in rows], pa.int64()),
            "available_tokens": pa.array([int(r["available_tokens"]) for r in rows], pa.int64()),
            "epochs": pa.array([float(r["epochs"]) for r in rows], pa.float64()),
        }
    )
    return _upsert(con, "plans", table)


def list_shards(
    db: str | os.PathLike, split: str = "train", sources: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Shard rows (absolute path or URL included as `abs_path`) for a split, optionally for some sources."""
    root = corpus_location(db)
    with open_manifest(db, read_only=True) as con:
        sql = "SELECT * FROM shards WHERE split = ?"
        args: list[Any] = [split]
        if sources is not None:
            sql += " AND source IN (SELECT unnest(?))"
            args.append(list(sources))
        rel = con.execute(sql + " ORDER BY source, path", args)
        names = [d[0] for d in rel.description]
        out = [dict(zip(names, row)) for row in rel.fetchall()]
    for row in out:
        row["abs_path"] = join_url(root, row["path"])
    return out


def list_sources(db: str | os.PathLike) -> list[dict[str, Any]]:
    """Source rows joined with their train-split token and doc counts (0 where nothing was built)."""
    with open_manifest(db, read_only=True) as con:
        rel = con.execute("""
            SELECT src.*, coalesce(t.n_tokens, 0) AS n_tokens, coalesce(t.n_docs, 0) AS n_docs
            FROM sources src LEFT JOIN (
                SELECT source, sum(n_tokens) AS n_tokens, sum(n_docs) AS n_docs
                FROM shards WHERE split = 'train' GROUP BY source) t USING (source)
            ORDER BY src.source""")
        names = [d[0] for d in rel.description]
        return [dict(zip(names, row)) for row in rel.fetchall()]
