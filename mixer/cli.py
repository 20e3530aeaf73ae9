"""`mixer`: resolve mixtures into plans, print sampled sequences, release a plan as a Hugging Face dataset."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from corpus import DemixError, UsageError, format_tokens, parse_tokens, run_cli

EXAMPLES = """examples:
  mixer resolve --recipe corpus/recipes/demix_corpora.yaml --target 22T --out plan.json
  mixer resolve --recipe corpus/recipes/demix_corpora.yaml --stage 3 --target 2T --json
  mixer resolve --mixture best.json --db out/demo/manifest.duckdb --target 50M --max-epochs 4 --out plan.json
  mixer sample --plan plan.json --n 3 --decode
  mixer release --plan plan.json --out release/ --samples 10M,100M [--push ORG/NAME --private --revision main --dry-run]
  mixer release --plan plan.json --out release/ --push ORG/NAME --commit-files 200 --dry-run   # print the commit plan
  mixer release --plan plan22T.json --out recipe/ --recipe-only --recipe corpus/recipes/demix_corpora.yaml
"""


def _tokens(value: str) -> int:
    try:
        return parse_tokens(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive_tokens(value: str) -> int:
    n = _tokens(value)
    if n <= 0:
        raise argparse.ArgumentTypeError(f"{value!r}: expected a token amount > 0, e.g. 50M or 22T")
    return n


def _token_list(value: str) -> tuple[int, ...]:
    return tuple(_positive_tokens(part) for part in value.split(","))


def _int_at_least(lo: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r}: expected an integer >= {lo}") from None
        if n < lo:
            raise argparse.ArgumentTypeError(f"{value!r}: expected an integer >= {lo}")
        return n

    parse.__name__ = f"integer >= {lo}"
    return parse


def _number(value: str, ok: Callable[[float], bool], what: str) -> float:
    try:
        x = float(value)
    except ValueError:
        x = math.nan
    if not (math.isfinite(x) and ok(x)):
        raise argparse.ArgumentTypeError(f"{value!r}: expected {what}")
    return x


def _fraction(value: str) -> float:
    return _number(value, lambda x: 0.0 <= x <= 1.0, "a number in [0, 1]")


def _positive_number(value: str) -> float:
    return _number(value, lambda x: x > 0.0, "a finite number > 0")


@contextlib.contextmanager
def _user_paths() -> Iterator[None]:
    """A path the user named that is missing, a folder or unreadable is their input, not a bug: one line."""
    try:
        yield
    except OSError as e:
        where = e.filename if e.filename is not None else "input"
        raise DemixError(f"{where}: {e.strerror or e}") from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every `mixer` subcommand."""
    p = argparse.ArgumentParser(
        prog="mixer", description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser(
        "resolve",
        help="mixture or recipe + token target -> plan.json",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--recipe", help="recipe YAML (its own stage shares; no corpus needed)")
    src.add_argument("--mixture", help="mixture JSON (candidate, domain or source level); needs --db")
    r.add_argument("--db", help="built corpus folder or its manifest.duckdb")
    r.add_argument("--target", type=_positive_tokens, required=True, help="tokens (> 0), e.g. 22T, 22383B, 50M")
    r.add_argument("--stage", help="resolve one stage of the recipe")
    r.add_argument("--seq-len", type=_int_at_least(1), default=2048, help="tokens per sequence (default 2048)")
    r.add_argument("--seed", type=_int_at_least(0), default=0, help="sampler seed (default 0)")
    r.add_argument("--max-epochs", type=_positive_number, help="fail if any source would repeat more often")
    g = r.add_mutually_exclusive_group()
    g.add_argument(
        "--general-share",
        type=_fraction,
        metavar="G",
        help="override the components' general share recorded in the mixture's provenance (in [0, 1])",
    )
    g.add_argument(
        "--as-is",
        action="store_true",
        help="resolve the mixture's ratios unchanged, without adding the components' general share",
    )
    r.add_argument("--out", help="plan JSON path (any fsspec URL)")
    r.add_argument("--overwrite", action="store_true", help="replace a different plan at --out")
    r.add_argument("--json", action="store_true", help="print the plan as JSON")
    r.set_defaults(func=cmd_resolve)

    s = sub.add_parser(
        "sample",
        help="print sequences of a plan's stream",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("--plan", required=True)
    s.add_argument("--n", type=_int_at_least(0), default=3, help="sequences to print")
    s.add_argument("--start", type=_int_at_least(0), default=0, help="skip this many sequences first")
    s.add_argument("--seq-len", type=_int_at_least(1), help="tokens per sequence (default: the plan's)")
    s.add_argument("--seed", type=_int_at_least(0), help="sampler seed (default: the plan's)")
    s.add_argument("--decode", action="store_true", help="decode with the corpus tokenizer")
    s.add_argument("--verify", action="store_true", help="check shard sha256 against the plan")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_sample)

    rel = sub.add_parser(
        "release",
        help="write a Hugging Face dataset folder; optionally push it",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rel.add_argument("--plan", required=True)
    rel.add_argument("--out", required=True, help="folder or fsspec URL (file://, memory://, s3://, ...)")
    rel.add_argument(
        "--mixture-max-tokens",
        type=_tokens,
        default=None,
        help="cap on the mixture config's stream tokens (default 100M; 'all' is --mixture-max-tokens 0)",
    )
    rel.add_argument(
        "--samples",
        type=_token_list,
        default=(),
        metavar="N[,N...]",
        help="add sample-<N> configs, exact prefixes of the stream (e.g. 10B,100B; no thousands commas)",
    )
    rel.add_argument(
        "--file-tokens",
        type=_positive_tokens,
        default=None,
        help="stream tokens per Parquet file (default 64M, about 0.5 GB)",
    )
    rel.add_argument("--overwrite", action="store_true", help="replace a previous release at --out (only one)")
    rel.add_argument(
        "--recipe",
        help="the recipe file the plan was built from, for the card's upstream URLs and "
        "filter/dedup settings (default: found from the plan if its hash matches)",
    )
    rel.add_argument(
        "--recipe-only",
        action="store_true",
        help="write the plan, the manifest's rows for it (Parquet), the recipe and the card; no data",
    )
    rel.add_argument(
        "--push",
        metavar="ORG/NAME",
        help="create this dataset repo and upload the folder in batched "
        "commits; a rerun uploads only the files not there yet",
    )
    rel.add_argument(
        "--commit-files",
        type=_int_at_least(1),
        default=None,
        help="files per commit when pushing (default 100; the Hub allows 128 commits per hour)",
    )
    rel.add_argument("--private", action="store_true")
    rel.add_argument("--revision", help="branch to upload to (created if missing)")
    rel.add_argument(
        "--dry-run",
        action="store_true",
        help="plan the files (estimated sizes) and, with --push, the commits; write and contact nothing",
    )
    rel.add_argument("--json", action="store_true")
    rel.set_defaults(func=cmd_release)
    return p


def _console() -> Console:
    return Console() if sys.stdout.isatty() else Console(width=200)


def _fmt_b(n: int) -> str:
    return f"{n / 1e9:,.3f}B" if n >= 10**9 else f"{n:,}"


def plan_table(plan) -> Table:
    """A rich table of a plan: one row per source, per-stage columns when the plan has stages."""
    stage_names = [st["name"] for st in plan.stages]
    t = Table(title=f"plan {plan.plan_id}: {format_tokens(plan.target_tokens)} tokens ({plan.target_tokens:,})")
    for col in (
        "source",
        "domain",
        "tier",
        "candidate",
        "share",
        "available",
        "allotted",
        *[f"stage {n}" for n in stage_names],
        "epochs",
    ):
        t.add_column(col, justify="left" if col in ("source", "domain", "tier", "candidate") else "right")
    for s in plan.sources:
        t.add_row(
            s.source,
            s.domain,
            s.tier,
            s.candidate or "",
            f"{s.share:.4%}",
            _fmt_b(s.available_tokens),
            _fmt_b(s.allotted_tokens),
            *[_fmt_b(s.stages.get(n, 0)) for n in stage_names],
            f"{s.epochs:.3f}",
        )
    t.add_row(
        "total",
        "",
        "",
        "",
        f"{sum(s.share for s in plan.sources):.4%}",
        _fmt_b(sum(s.available_tokens for s in plan.sources)),
        _fmt_b(sum(s.allotted_tokens for s in plan.sources)),
        *[_fmt_b(st["target_tokens"]) for st in plan.stages],
        "",
        style="bold",
    )
    return t


def cmd_resolve(args: argparse.Namespace) -> int:
    """Resolve a recipe or mixture into a plan; write it, record it in the manifest, print it."""
    from mixer.plan import Plan
    from mixer.resolve import record_plan, resolve_mixture, resolve_recipe

    if args.mixture and not args.db:
        raise UsageError("--mixture needs --db (the built corpus)")
    if args.recipe:
        if args.general_share is not None or args.as_is:
            raise UsageError("--general-share and --as-is apply to --mixture only")
        plan = resolve_recipe(
            args.recipe, args.target, stage=args.stage, seq_len=args.seq_len, seed=args.seed, max_epochs=args.max_epochs
        )
    else:
        if args.stage:
            raise UsageError("--stage applies to --recipe only")
        plan = resolve_mixture(
            args.mixture,
            args.db,
            args.target,
            seq_len=args.seq_len,
            seed=args.seed,
            max_epochs=args.max_epochs,
            general_share=args.general_share,
            as_is=args.as_is,
        )
    for warning in plan.warnings:
        print(f"mixer: warning: {warning}", file=sys.stderr)
    if args.out:
        import fsspec

        fs, path = fsspec.core.url_to_fs(args.out)
        if fs.isdir(path):
            raise DemixError(f"{args.out}: is a folder; --out names the plan file to write (e.g. {args.out}/plan.json)")
        if fs.exists(path) and not args.overwrite:
            try:
                same = Plan.load(args.out).plan_id == plan.plan_id
            except ValueError:
                same = False
            if not same:
                raise DemixError(f"{args.out}: holds a different plan; pass --overwrite to replace it")
        plan.save(args.out)
    if args.db:
        record_plan(plan, args.db)
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
    else:
        _console().print(plan_table(plan))
        if args.out:
            print(f"wrote {args.out}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    """Print the first sequences of a plan's stream (token ids, or text with --decode)."""
    from mixer.sampler import Sampler

    sampler = Sampler(args.plan, seq_len=args.seq_len, seed=args.seed, verify=args.verify, prefetch=0)
    if args.start:
        sampler.load_state_dict({"position": min(args.start, len(sampler))})
    tok = None
    if args.decode:
        from corpus.tokenizer import load_tokenizer
        from mixer.stream import join_url

        if not sampler.plan.tokenizer_path:
            raise DemixError(f"{args.plan}: tokenizer_path: the plan names no tokenizer folder to decode with")
        tok = load_tokenizer(join_url(sampler.plan.corpus_root, sampler.plan.tokenizer_path))
    out = []
    for i, (slot, source, k, seq) in enumerate(sampler.items()):
        if i >= args.n:
            break
        ids = seq.tolist()
        row: dict[str, Any] = {"position": slot, "source": source, "k": k, "tokens": ids}
        if tok is not None:
            row["text"] = tok.decode(ids, skip_special_tokens=False)
        out.append(row)
    if args.json:
        print(json.dumps(out))
        return 0
    for row in out:
        print(f"--- position {row['position']} source {row['source']} (its sequence {row['k']}) ---")
        print(row["text"] if tok is not None else " ".join(map(str, row["tokens"])))
    return 0


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
    console = _console()
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


def _run(args: argparse.Namespace) -> int:
    with _user_paths():
        return int(args.func(args))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: exit 0 ok, 1 failed, 2 usage; errors on stderr in one line, tracebacks only for bugs or --debug."""
    return run_cli("mixer", build_parser(), argv, _run)


if __name__ == "__main__":
    sys.exit(main())
