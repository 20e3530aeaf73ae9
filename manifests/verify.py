"""Check a manifest against the shard files, and rebuild a manifest by re-scanning them."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pyarrow.parquet as pq

from manifests.manifest import (
    ManifestError, corpus_root, file_sha256, manifest_path, open_manifest, read_shard_record, register_shards,
)

SHARD_FOLDERS = ("shards", "validation")


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
    out: list[Path] = []
    for folder in SHARD_FOLDERS:
        base = root / folder
        if base.exists():
            out.extend(p for p in base.rglob("*.parquet") if not p.name.startswith(".tmp-"))
    return sorted(out)


def verify(db: str | os.PathLike, checksums: bool = True, progress: Callable | None = None) -> VerifyReport:
    """Compare every registered shard's rows, tokens, bytes and sha256 with its file; list strays."""
    root = corpus_root(db)
    with open_manifest(db, read_only=True) as con:
        rows = con.execute("SELECT path, n_docs, n_tokens, n_bytes, sha256 FROM shards ORDER BY path").fetchall()
    report = VerifyReport()
    registered = set()
    for path, n_docs, n_tokens, n_bytes, sha in (progress(rows) if progress else rows):
        registered.add(path)
        report.checked += 1
        f = root / path
        if not f.exists():
            report.missing.append(path)
            continue
        if f.stat().st_size != n_bytes:
            report.changed.append((path, f"bytes {f.stat().st_size} != manifest {n_bytes}"))
            continue
        try:
            pf = pq.ParquetFile(f)
        except Exception as e:  # noqa: BLE001 - any unreadable footer is a changed file
            report.changed.append((path, f"unreadable Parquet: {e}"))
            continue
        if pf.metadata.num_rows != n_docs:
            report.changed.append((path, f"rows {pf.metadata.num_rows} != manifest {n_docs}"))
            continue
        if checksums and file_sha256(f) != sha:
            report.changed.append((path, "sha256 differs"))
            continue
        if checksums:
            tokens = sum(pq.read_table(f, columns=["n_tokens"]).column("n_tokens").to_pylist())
            if tokens != n_tokens:
                report.changed.append((path, f"tokens {tokens} != manifest {n_tokens}"))
    for f in scan_shard_files(root):
        rel = f.relative_to(root).as_posix()
        if rel not in registered:
            report.unregistered.append(rel)
    return report


def rebuild(db: str | os.PathLike, progress: Callable | None = None) -> int:
    """Re-scan every shard into a fresh manifest (the old file is replaced atomically).

    Sources come from the shards' footer metadata; meta, step stats, mixtures and plans of the old
    manifest are carried over when it is readable. Returns the number of shards registered.
    Raises ManifestError naming a file that is not a token shard.
    """
    path = manifest_path(db)
    root = path.resolve().parent
    files = scan_shard_files(root)
    records, sources = [], {}
    for f in (progress(files) if progress else files):
        records.append(read_shard_record(f, root))
        md = {k.decode(): v.decode() for k, v in (pq.read_schema(f).metadata or {}).items()}
        sources[md["demix.source"]] = (md.get("demix.domain", "unknown"), md.get("demix.tier", "unknown"),
                                       md.get("demix.candidate") or None)
    tmp = path.with_name(f".rebuild-{os.getpid()}-{path.name}")
    tmp.unlink(missing_ok=True)
    with open_manifest(tmp) as con:
        if path.exists():
            try:
                con.execute(f"ATTACH '{path}' AS old (READ_ONLY)")
                for table in ("meta", "step_stats", "mixtures", "plans"):
                    con.execute(f"INSERT OR REPLACE INTO {table} SELECT * FROM old.{table}")
                con.execute("""INSERT OR REPLACE INTO sources
                               SELECT * FROM old.sources""")
                con.execute("DETACH old")
            except Exception:  # noqa: BLE001 - a corrupt old manifest is exactly why one rebuilds
                pass
        for name, (domain, tier, candidate) in sources.items():
            con.execute("INSERT OR IGNORE INTO sources (source, domain, tier, candidate) VALUES (?, ?, ?, ?)",
                        [name, domain, tier, candidate])
        register_shards(con, records)
    os.replace(tmp, path)
    return len(records)


__all__ = ["ManifestError", "VerifyReport", "rebuild", "scan_shard_files", "verify"]
