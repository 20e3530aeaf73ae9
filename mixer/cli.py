"""`mixer`: resolve mixtures into plans, print sampled sequences, release a plan as a Hugging Face dataset."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.table import Table

from corpus import DemixError, UsageError, format_tokens, run_cli
from corpus.urls import is_url
from mixer.cli_release import cmd_release
from mixer.cli_support import (
    arg_fraction,
    arg_int_at_least,
    arg_positive_number,
    arg_positive_tokens,
    arg_token_list,
    arg_tokens,
    console_for_stdout,
    user_paths,
)

EXAMPLES = """examples:
  mixer resolve --recipe corpus/recipes/demix_corpora.yaml --target 22T --out plan.json
  mixer resolve --recipe corpus/recipes/demix_corpora.yaml --stage 3 --target 2T --json
  mixer resolve --mixture best.json --db out/demo/manifest.duckdb --target 50M --max-epochs 4 --out plan.json
  mixer sample --plan plan.json --n 3 --decode
  mixer release --plan plan.json --out release/ --samples 10M,100M [--push ORG/NAME --private --revision main --dry-run]
  mixer release --plan plan.json --out release/ --push ORG/NAME --commit-files 200 --dry-run   # print the commit plan
  mixer release --plan plan22T.json --out recipe/ --recipe-only --recipe corpus/recipes/demix_corpora.yaml
"""


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
    r.add_argument("--target", type=arg_positive_tokens, required=True, help="tokens (> 0), e.g. 22T, 22383B, 50M")
    r.add_argument("--stage", help="resolve one stage of the recipe")
    r.add_argument("--seq-len", type=arg_int_at_least(1), default=2048, help="tokens per sequence (default 2048)")
    r.add_argument("--seed", type=arg_int_at_least(0), default=0, help="sampler seed (default 0)")
    r.add_argument("--max-epochs", type=arg_positive_number, help="fail if any source would repeat more often")
    g = r.add_mutually_exclusive_group()
    g.add_argument(
        "--general-share",
        type=arg_fraction,
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
    s.add_argument("--n", type=arg_int_at_least(0), default=3, help="sequences to print")
    s.add_argument("--start", type=arg_int_at_least(0), default=0, help="skip this many sequences first")
    s.add_argument("--seq-len", type=arg_int_at_least(1), help="tokens per sequence (default: the plan's)")
    s.add_argument("--seed", type=arg_int_at_least(0), help="sampler seed (default: the plan's)")
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
        type=arg_tokens,
        default=None,
        help="cap on the mixture config's stream tokens (default 100M; 'all' is --mixture-max-tokens 0)",
    )
    rel.add_argument(
        "--samples",
        type=arg_token_list,
        default=(),
        metavar="N[,N...]",
        help="add sample-<N> configs, exact prefixes of the stream (e.g. 10B,100B; no thousands commas)",
    )
    rel.add_argument(
        "--file-tokens",
        type=arg_positive_tokens,
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
        type=arg_int_at_least(1),
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
    if args.db and is_url(str(args.db)):  # a manifest at a URL is read here, never written
        print(f"plan not recorded in {args.db}: a manifest at a URL is read-only", file=sys.stderr)
    elif args.db:
        record_plan(plan, args.db)
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
    else:
        console_for_stdout().print(plan_table(plan))
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
        from corpus.urls import join_url

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


def _run(args: argparse.Namespace) -> int:
    with user_paths():
        return int(args.func(args))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: exit 0 ok, 1 failed, 2 usage; errors on stderr in one line, tracebacks only for bugs or --debug."""
    return run_cli("mixer", build_parser(), argv, _run)


if __name__ == "__main__":
    sys.exit(main())
