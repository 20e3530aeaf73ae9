"""Check a manifest against the shard files, and rebuild a manifest by re-scanning them."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import fsspec
import pyarrow.parquet as pq

from corpus.urls import is_url
from manifests.manifest import (
    ManifestError,
    check_tables,
    corpus_root,
    file_sha256,
    manifest_path,
    manifest_url,
    open_manifest,
    read_shard_record,
    register_shards,
)
from manifests.schema import SHARD_FOLDERS
from manifests.shardfile import ShardMeta


@dataclass
class VerifyReport:
    """What `verify` found: paths relative to the corpus root."""

    checked: int = 0
    missing: list[str] = field(default_factory=list)
    changed: list[tuple[str, str]] = field(default_factory=list)  # (path, what differs)
    unregistered: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.changed or self.unregistered)


def scan_shard_files(root: str | os.PathLike) -> list[Path]:
    """Every completed shard under <root>/shards and <root>/validation (temporary files excluded)."""
    root = Path(root)
    return [root / rel for rel in _shard_files(fsspec.filesystem("file"), root.resolve().as_posix())]


def _shard_files(fs: fsspec.AbstractFileSystem, root: str) -> list[str]:
    """Paths relative to `root` of every completed shard below its shard folders, sorted."""
    out: list[str] = []
    for folder in SHARD_FOLDERS:
        base = f"{root}/{folder}"
        fs.invalidate_cache(base)
        if fs.isdir(base):
            out.extend(
                p[len(root) + 1 :]
                for p in fs.find(base)
                if p.endswith(".parquet") and not p.rsplit("/", 1)[-1].startswith(".tmp-")
            )
    return sorted(out)


def verify(db: str | os.PathLike, checksums: bool = True, progress: Callable | None = None) -> VerifyReport:
    """Compare every registered shard's rows, tokens, bytes and sha256 with its file; list strays.

    ``db`` is a corpus folder or its manifest, a local path or any fsspec URL (a remote build's).
    """
    if is_url(str(db)):
        fs, root = fsspec.core.url_to_fs(manifest_url(str(db))[1])
    else:
        fs, root = fsspec.filesystem("file"), corpus_root(db).as_posix()
    root = root.rstrip("/")
    with open_manifest(db, read_only=True) as con:
        rows = con.execute("SELECT path, n_docs, n_tokens, n_bytes, sha256 FROM shards ORDER BY path").fetchall()
    report = VerifyReport()
    registered = set()
    for path, n_docs, n_tokens, n_bytes, sha in progress(rows) if progress else rows:
        registered.add(path)
        report.checked += 1
        f = f"{root}/{path}"
        if not fs.isfile(f):
            report.missing.append(path)
            continue
        if fs.size(f) != n_bytes:
            report.changed.append((path, f"bytes {fs.size(f)} != manifest {n_bytes}"))
            continue
        try:
            pf = pq.ParquetFile(fs.open(f, "rb"))
        except Exception as e:  # noqa: BLE001 - any unreadable footer is a changed file
            report.changed.append((path, f"unreadable Parquet: {e}"))
            continue
        if pf.metadata.num_rows != n_docs:
            report.changed.append((path, f"rows {pf.metadata.num_rows} != manifest {n_docs}"))
            continue
        if checksums and file_sha256(f, fs) != sha:
            report.changed.append((path, "sha256 differs"))
            continue
        if checksums:
            tokens = sum(pf.read(columns=["n_tokens"]).column("n_tokens").to_pylist())
            if tokens != n_tokens:
                report.changed.append((path, f"tokens {tokens} != manifest {n_tokens}"))
    report.unregistered.extend(rel for rel in _shard_files(fs, root) if rel not in registered)
    return report


# Everything of the old manifest that the shard files cannot tell again: a rebuild carries it over.
CARRIED_TABLES = ("meta", "sources", "step_stats", "mixtures", "plans")


@dataclass
class RebuildReport:
    """What `rebuild` did."""

    shards: int
    """Shard rows registered from the files."""
    carried: dict[str, int] = field(default_factory=dict)
    """Rows carried over from the old manifest, per table (empty when there was none)."""
    set_aside: Path | None = None
    """Where the old manifest was moved when it was not carried over (``from_shards_only``)."""


def _columns(con: duckdb.DuckDBPyConnection, database: str, table: str) -> list[str]:
    return [
        r[0]
        for r in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = ? AND schema_name = 'main' "
            "AND table_name = ? ORDER BY column_index",
            [database, table],
        ).fetchall()
    ]


def _carry_over(con: duckdb.DuckDBPyConnection, old: Path) -> dict[str, int]:
    """Copy every CARRIED_TABLES row of the manifest at ``old`` into ``con``'s; raise ManifestError if one can't be."""
    hint = "nothing was changed; `manifests rebuild --from-shards-only` rebuilds without it and keeps it aside"
    try:
        # a parameter, not an f-string: a corpus folder may well be called "Bob's corpus"
        con.execute("ATTACH ? AS old (READ_ONLY)", [str(old)])
    except duckdb.Error as e:
        raise ManifestError(f"{old}: cannot read the old manifest ({str(e).splitlines()[0]}); {hint}") from None
    main_db = con.execute("SELECT current_database()").fetchone()[0]
    carried, table = {}, "list"
    try:
        if missing := check_tables(con, "old"):
            raise ManifestError(f"{old}: the old manifest has no table {', '.join(missing)}; {hint}")
        for table in CARRIED_TABLES:
            # by name, so an old manifest without a later nullable column still carries over
            old_cols = set(_columns(con, "old", table))
            cols = ", ".join(f'"{c}"' for c in _columns(con, main_db, table) if c in old_cols)
            con.execute(f"INSERT OR REPLACE INTO {table} ({cols}) SELECT {cols} FROM old.{table}")
            carried[table] = con.execute(f"SELECT count(*) FROM old.{table}").fetchone()[0]
    except duckdb.Error as e:
        raise ManifestError(f"{old}: cannot carry the {table} table over ({str(e).splitlines()[0]}); {hint}") from None
    finally:
        con.execute("DETACH old")
    return carried


def rebuild(db: str | os.PathLike, progress: Callable | None = None, from_shards_only: bool = False) -> RebuildReport:
    """Re-scan every shard into a fresh manifest (the old file is replaced atomically).

    Shard rows come from the files; sources, meta, step stats, mixtures and plans are carried over
    from the old manifest, and sources it lacks are added from the shards' footer metadata. An old
    manifest that cannot be carried over stops the rebuild (ManifestError naming it), unless
    ``from_shards_only``: then it is renamed aside, never deleted. Raises ManifestError naming a
    file that is not a token shard, or a corpus folder without shards.
    """
    if is_url(str(db)):
        raise ManifestError(
            f"{db}: a manifest is rebuilt in a local corpus folder (DuckDB writes local files); "
            "copy the corpus, rebuild, and upload manifest.duckdb"
        )
    path = manifest_path(db)
    root = path.resolve().parent
    files = scan_shard_files(root)
    if not files:
        raise ManifestError(
            f"{root}: no shards under {' or '.join(f'{d}/' for d in SHARD_FOLDERS)}; nothing to rebuild from"
        )
    records, sources = [], {}
    for f in progress(files) if progress else files:
        records.append(read_shard_record(f, root))
        meta = ShardMeta.from_metadata(pq.read_schema(f).metadata, where=str(f))
        sources[meta.source] = (
            meta.domain if meta.domain is not None else "unknown",
            meta.tier if meta.tier is not None else "unknown",
            meta.candidate,
        )
    tmp = path.with_name(f".rebuild-{os.getpid()}-{path.name}")
    report = RebuildReport(shards=len(records))
    try:
        tmp.unlink(missing_ok=True)
        with open_manifest(tmp) as con:
            if path.exists() and not from_shards_only:
                report.carried = _carry_over(con, path)
            for name, (domain, tier, candidate) in sources.items():
                con.execute(
                    "INSERT OR IGNORE INTO sources (source, domain, tier, candidate) VALUES (?, ?, ?, ?)",
                    [name, domain, tier, candidate],
                )
            register_shards(con, records)
        if path.exists() and from_shards_only:
            report.set_aside = path.with_name(f"{path.name}.old-{datetime.now():%Y%m%dT%H%M%S}")
            os.replace(path, report.set_aside)
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
            leftover.unlink(missing_ok=True)
    return report


__all__ = ["CARRIED_TABLES", "ManifestError", "RebuildReport", "VerifyReport", "rebuild", "scan_shard_files", "verify"]
