"""`mixer release`: write a plan's mixture as a Hugging Face dataset folder (or its recipe), push it to the Hub."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.table import Table

from corpus import UsageError
from mixer.cli_support import console_for_stdout


def cmd_release(args: argparse.Namespace) -> int:
    """Write the release folder (or plan it with --dry-run); with --push upload it, or print the commit plan."""
    from mixer.release import DEFAULT_MIXTURE_MAX_TOKENS, write_release
    from mixer.release_layout import FILE_TOKENS
    from mixer.release_push import COMMIT_FILES, HUB_COMMITS_PER_HOUR, plan_push, push_release

    if args.recipe_only and (args.samples or args.mixture_max_tokens is not None or args.file_tokens):
        raise UsageError("--recipe-only writes no data: --samples, --mixture-max-tokens and --file-tokens do not apply")
    cap = DEFAULT_MIXTURE_MAX_TOKENS if args.mixture_max_tokens is None else (args.mixture_max_tokens or None)
    files = write_release(
        args.plan,
        args.out,
        mixture_max_tokens=cap,
        samples=args.samples,
        file_tokens=args.file_tokens or FILE_TOKENS,
        overwrite=args.overwrite,
        recipe=args.recipe,
        recipe_only=args.recipe_only,
        dry_run=args.dry_run,
        progress=not (args.json or args.dry_run),
    )
    total = sum(f.n_bytes for f in files)
    result: dict[str, Any] = {
        "out": args.out,
        "dry_run": args.dry_run,
        "recipe_only": args.recipe_only,
        "files": [{"path": f.path, "bytes": f.n_bytes} for f in files],
        "bytes": total,
        "push": None,
        "pushed": None,
    }
    push = None
    if args.push:
        per_commit = args.commit_files or COMMIT_FILES
        if args.dry_run:
            push = plan_push(files, args.push, revision=args.revision, max_files=per_commit)
        else:
            done = push_release(
                args.out,
                args.push,
                private=args.private,
                revision=args.revision,
                max_files=per_commit,
                progress=None if args.json else print,
            )
            push, result["pushed"] = done.plan, done.url
        result["push"] = push.to_dict()
    if args.json:
        print(json.dumps(result))
        return 0
    console = console_for_stdout()
    console.print(_files_table(args, files))
    if push is not None:
        console.print(_commits_table(push))
        print(
            f"{len(push.commits):,} commit(s) of at most {args.commit_files or COMMIT_FILES} files: "
            f"{push.n_files:,} files, {push.n_bytes:,} bytes"
            + (" (estimated)" if args.dry_run else "")
            + f"; at {HUB_COMMITS_PER_HOUR} commits per hour, at least {push.min_hours} hour(s) of waiting"
        )
        if push.remote_checked:
            print(f"{len(push.skipped):,} file(s) already on {args.push} at the same size and hash: skipped")
        else:
            print(f"dry run: {args.push} was not contacted; a real push skips the files it already holds")
    if result["pushed"]:
        print(f"pushed to {result['pushed']}")
    return 0


def _files_table(args: argparse.Namespace, files) -> Table:
    """The release's files, or per folder when there are many (a 22T release has tens of thousands)."""
    what = " (dry run: nothing written; sizes are upper estimates)" if args.dry_run else ""
    t = Table(title=f"{args.out}{what}" + (f" -> {args.push}" if args.push else ""))
    rows: dict[str, list[int]] = {}
    for f in files:
        key = f.path if len(files) <= 40 else (f.path.rsplit("/", 1)[0] + "/" if "/" in f.path else f.path)
        rows.setdefault(key, [0, 0])
        rows[key][0] += 1
        rows[key][1] += f.n_bytes
    t.add_column("file" if len(files) <= 40 else "folder")
    t.add_column("files", justify="right")
    t.add_column("bytes", justify="right")
    for key, (n, b) in rows.items():
        t.add_row(key, f"{n:,}", f"{b:,}")
    t.add_row("total", f"{len(files):,}", f"{sum(f.n_bytes for f in files):,}", style="bold")
    return t


def _commits_table(push) -> Table:
    """The commit plan: the first 15 and last 5 commits when there are more than 20."""
    t = Table(title=f"commit plan for {push.repo_id}" + (f"@{push.revision}" if push.revision else ""))
    for col in ("commit", "files", "bytes", "first file", "last file"):
        t.add_column(col, justify="right" if col in ("commit", "files", "bytes") else "left")
    n = len(push.commits)
    shown = list(range(n)) if n <= 20 else [*range(15), None, *range(n - 5, n)]
    for i in shown:
        if i is None:
            t.add_row("...", "", "", "", "")
            continue
        c = push.commits[i]
        t.add_row(f"{i + 1}/{n}", f"{len(c.files):,}", f"{c.n_bytes:,}", c.files[0].path, c.files[-1].path)
    return t
