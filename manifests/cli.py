"""`manifests` CLI: summary, query, verify, rebuild and the published reference sizes."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from typing import Any

from rich.console import Console
from rich.progress import track
from rich.table import Table

from corpus import format_tokens
from corpus.errors import run_cli
from corpus.urls import is_url
from manifests.manifest import manifest_path, manifest_url, open_manifest
from manifests.query import ALLOWED_HELP, run_query
from manifests.reference import reference_rows, reference_totals
from manifests.verify import CARRIED_TABLES, rebuild, verify

EPILOG = """examples:
  manifests summary --db out/demo/manifest.duckdb
  manifests query --db out/demo/manifest.duckdb "SELECT domain, n_tokens FROM tokens_by_domain"
  manifests query --db out/demo "SELECT * FROM shards LIMIT 5" --format csv
  manifests verify --db out/demo/manifest.duckdb          # exit 1 if a shard is missing/changed/stray
  manifests rebuild --db out/demo/manifest.duckdb         # re-scan shards; meta, sources, stats, mixtures, plans kept
  manifests reference                                     # the published DeMix Corpora sizes
"""


def _where(db: str) -> str:
    """The manifest file that `db` (a corpus folder, its .duckdb file, or a URL of either) names."""
    return manifest_url(db)[0] if is_url(db) else str(manifest_path(db))


def _rows(con, sql: str, args: list | None = None) -> tuple[list[str], list[tuple]]:
    rel = con.execute(sql, args or [])
    return [d[0] for d in rel.description], rel.fetchall()


def _fmt(value: Any, column: str, short: bool = False) -> str:
    if value is None:
        return ""
    if isinstance(value, int) and "tokens" in column:
        return format_tokens(value) if short else f"{value:,} ({format_tokens(value)})"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _table(title: str, cols: list[str], rows: list[tuple], short: bool = False) -> Table:
    t = Table(title=title)
    for c in cols:
        t.add_column(c, justify="right" if rows and isinstance(rows[0][cols.index(c)], (int, float)) else "left")
    for r in rows:
        t.add_row(*(_fmt(v, c, short) for v, c in zip(r, cols)))
    return t


def _emit(cols: list[str], rows: list[tuple], fmt: str, title: str, console: Console) -> None:
    if fmt == "json":
        print(json.dumps([dict(zip(cols, r)) for r in rows], default=str, indent=1))
    elif fmt == "csv":
        w = csv.writer(sys.stdout)
        w.writerow(cols)
        w.writerows(rows)
    else:
        console.print(_table(title, cols, rows))


def cmd_summary(args: argparse.Namespace, console: Console) -> int:
    with open_manifest(args.db, read_only=True) as con:
        views = {
            "tokens by domain": "SELECT * FROM tokens_by_domain",
            "tokens by tier": "SELECT * FROM tokens_by_tier",
            "tokens by candidate": "SELECT * FROM tokens_by_candidate",
            "tokens by source": "SELECT source, domain, tier, n_shards, n_docs, n_tokens, n_bytes FROM tokens_by_source",
            "validation split": """SELECT source, count(*) AS n_shards, sum(n_docs) AS n_docs, sum(n_tokens) AS n_tokens
                                   FROM shards WHERE split = 'validation' GROUP BY source ORDER BY source""",
            "dropped documents": """SELECT source, step, reason, count FROM step_stats
                                    WHERE reason <> '' AND count > 0 ORDER BY source, step, reason""",
        }
        result = {name: _rows(con, sql) for name, sql in views.items()}
    if args.json:
        print(
            json.dumps({k: [dict(zip(c, r)) for r in rows] for k, (c, rows) in result.items()}, default=str, indent=1)
        )
        return 0
    console.print(f"[bold]manifest[/bold] {_where(args.db)}")
    if not result["tokens by source"][1]:
        console.print("no train shards registered (an empty corpus)")
    for name, (cols, rows) in result.items():
        if rows:
            console.print(_table(name, cols, rows))
    return 0


def cmd_query(args: argparse.Namespace, console: Console) -> int:
    cols, rows = run_query(args.db, args.sql)
    _emit(cols, rows, "json" if args.json else args.format, args.sql, console)
    return 0


def cmd_verify(args: argparse.Namespace, console: Console) -> int:
    report = verify(
        args.db,
        checksums=not args.quick,
        progress=None if args.json else (lambda xs: track(xs, description="verifying shards")),
    )
    if args.json:
        print(
            json.dumps(
                {
                    "ok": report.ok,
                    "checked": report.checked,
                    "missing": report.missing,
                    "changed": [{"path": p, "why": w} for p, w in report.changed],
                    "unregistered": report.unregistered,
                },
                indent=1,
            )
        )
    else:
        for p in report.missing:
            console.print(f"[red]missing[/red]      {p}")
        for p, why in report.changed:
            console.print(f"[red]changed[/red]      {p}: {why}")
        for p in report.unregistered:
            console.print(f"[yellow]unregistered[/yellow] {p}")
        status = "[green]ok[/green]" if report.ok else "[red]FAILED[/red]"
        console.print(
            f"{status}: {report.checked} shards checked, {len(report.missing)} missing, "
            f"{len(report.changed)} changed, {len(report.unregistered)} unregistered"
        )
    return 0 if report.ok else 1


def cmd_rebuild(args: argparse.Namespace, console: Console) -> int:
    report = rebuild(
        args.db,
        progress=None if args.json else (lambda xs: track(xs, description="scanning shards")),
        from_shards_only=args.from_shards_only,
    )
    if args.json:
        print(
            json.dumps(
                {
                    "manifest": _where(args.db),
                    "shards": report.shards,
                    "carried": report.carried,
                    "set_aside": report.set_aside and str(report.set_aside),
                },
                indent=1,
            )
        )
        return 0
    carried = ", ".join(f"{n} {t}" for t, n in report.carried.items()) or "nothing (no old manifest)"
    console.print(f"rebuilt {manifest_path(args.db)}: {report.shards} shards registered; carried over {carried}")
    if report.set_aside:
        console.print(f"the old manifest was not carried over; it is kept as {report.set_aside}")
    return 0


def cmd_reference(args: argparse.Namespace, console: Console) -> int:
    rows = reference_rows()
    if args.json:
        print(json.dumps({"sources": rows, "totals": reference_totals()}, indent=1))
        return 0
    cols = [c for c in rows[0] if c not in ("source", "candidate")]
    totals = reference_totals()
    table_rows = [tuple(r[c] for c in cols) for r in rows]
    table_rows.append(
        (
            "total",
            "",
            "",
            *(totals[c.split("_")[1]] if c.startswith("stage_") else totals["available"] for c in cols[3:]),
        )
    )
    console.print(_table("DeMix Corpora (published, tokens)", cols, table_rows, short=True))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="manifests",
        description=__doc__.splitlines()[0],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, func, help_: str, db: bool = True) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        if db:
            sp.add_argument("--db", required=True, help="manifest.duckdb, or the corpus folder holding it")
        sp.add_argument("--json", action="store_true", help="machine-readable output")
        sp.set_defaults(func=func)
        return sp

    add("summary", cmd_summary, "tokens by domain, tier, candidate and source; dropped documents")
    q = add("query", cmd_query, "run read-only SQL on the manifest")
    q.description = (
        "Run SQL on a locked, read-only connection. Only read statements run: " + ALLOWED_HELP + ". "
        "Anything else (COPY, EXPORT, ATTACH, CREATE, INSERT, SET, INSTALL, LOAD, ...) is refused before any "
        "statement runs. Files can be read (read_parquet, read_csv, glob) only under the corpus's shards/ and "
        "validation/ folders; extensions are never installed or loaded."
    )
    q.add_argument(
        "sql",
        help="the SQL to run (tables: sources, shards, step_stats, mixtures, plans, meta; "
        "views: tokens_by_source, tokens_by_domain, tokens_by_tier, tokens_by_candidate)",
    )
    q.add_argument("--format", choices=("table", "csv", "json"), default="table")
    v = add("verify", cmd_verify, "check checksums and row counts against the files (exit 1 on any problem)")
    v.add_argument("--quick", action="store_true", help="sizes and row counts only, no checksums")
    r = add("rebuild", cmd_rebuild, "re-scan shards into a fresh manifest, carrying over " + ", ".join(CARRIED_TABLES))
    r.add_argument(
        "--from-shards-only",
        action="store_true",
        help="do not carry anything over (use when the old manifest is unreadable); it is renamed "
        "to manifest.duckdb.old-<time>, never deleted",
    )
    add("reference", cmd_reference, "the published DeMix Corpora sizes per source and stage", db=False)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; exit 0 ok, 1 failed (one line on stderr), 2 usage."""
    console = Console(stderr=False)
    return run_cli("manifests", build_parser(), argv, lambda args: args.func(args, console))


if __name__ == "__main__":
    sys.exit(main())
