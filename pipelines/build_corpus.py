"""build-corpus: build a recipe's sources into token shards and a DuckDB manifest with datatrove.

Run as ``build-corpus``, ``python -m pipelines.build_corpus`` or ``python pipelines/build_corpus.py``.
Exit codes: 0 ok, 1 build failed (one line on stderr), 2 usage or recipe error (nothing was done,
no output folder made). A traceback shows only for a bug, or with --debug.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

if __package__ in (None, ""):  # `python pipelines/build_corpus.py`: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rich.console import Console  # noqa: E402 - after the path fix above
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402

from corpus import RecipeError, UsageError, load_recipe, run_cli  # noqa: E402
from pipelines.build import build  # noqa: E402
from pipelines.build_config import BuildConfig, BuildError, check_reach, out_location  # noqa: E402
from pipelines.summary import render  # noqa: E402

EXAMPLES = """examples:
  build-corpus --recipe corpus/recipes/demo.yaml --out out/demo
  build-corpus --recipe demo --out out/quick --limit 2000 --tasks 2
  build-corpus --recipe demo --out out/code --sources python_stdlib,python_tests --json
  build-corpus --recipe my.yaml --out /shared/corpus --executor slurm --partition cpu --tasks 512
  build-corpus --recipe my.yaml --out /shared/corpus --executor ray --ray-address auto --tasks 64
  build-corpus --recipe my.yaml --out s3://bucket/corpus --work /scratch/demix-work --tasks 64

--out is a local folder or any fsspec URL whose package is installed (s3:// needs s3fs, gs:// gcsfs): shards,
validation, tokenizer, logs and manifest.duckdb (made locally, copied at the end of the build) land there.
--work holds the prepared documents and dedup files (default OUT/work); every task must reach it.
A rerun of the same command resumes: finished tasks are skipped, shards are rewritten identically.
"""


class RecipeRefused(UsageError):
    """A recipe, --out or --sources value refused before any work (exit 2); the problem is in the file, not the flags."""

    show_usage = False  # for run_cli: the usage line says nothing about a bad recipe


def _at_least_one(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: expected an integer >= 1") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: expected an integer >= 1")
    return number


def parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    p = argparse.ArgumentParser(
        prog="build-corpus",
        description=__doc__.split("\n")[0],
        usage="build-corpus --recipe RECIPE --out OUT [options] (see --help)",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--recipe", required=True, help="recipe YAML path, or a built-in name (demo)")
    p.add_argument(
        "--out",
        required=True,
        help="output corpus folder (shards, manifest.duckdb, tokenizer, logs): a local path or an fsspec URL",
    )
    p.add_argument(
        "--work",
        default=None,
        help="work folder for prepared parts and dedup files, reachable by every task (default: OUT/work)",
    )
    p.add_argument("--executor", choices=("local", "slurm", "ray"), default="local")
    p.add_argument("--tasks", type=_at_least_one, default=None, help="datatrove tasks per stage (default: 2 x workers)")
    p.add_argument(
        "--workers", type=_at_least_one, default=None, help="tasks run at once (default: CPU count; slurm: no limit)"
    )
    p.add_argument("--limit", type=_at_least_one, default=None, help="about DOCS documents per source (quick runs)")
    p.add_argument("--sources", default=None, help="comma-separated source names to build (default: all)")
    p.add_argument("--overwrite", action="store_true", help="discard an earlier build in --out with other settings")
    p.add_argument("--partition", default="cpu", help="slurm partition")
    p.add_argument("--time", default="12:00:00", help="slurm time limit per task")
    p.add_argument("--cpus-per-task", type=_at_least_one, default=2, help="slurm CPUs per task")
    p.add_argument("--dry-run", action="store_true", help="slurm: write the sbatch scripts without submitting")
    p.add_argument("--ray-address", default=None, help="ray cluster address (default: start a local one)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.add_argument("--verbose", action="store_true", help="show datatrove's task logs instead of <out>/logs/build.log")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (see the module docstring)."""
    return run_cli("build-corpus", parser(), argv, _command)


def _command(args: argparse.Namespace) -> int:
    try:
        out = out_location(args.out)  # an unknown protocol or a missing s3fs is refused before anything else
        work = out_location(args.work) if args.work else None
        recipe = load_recipe(args.recipe)
        workers = args.workers or (0 if args.executor == "slurm" else os.cpu_count() or 1)  # slurm: no array throttle
        cfg = BuildConfig(
            out=out,
            work=work,
            executor=args.executor,
            tasks=args.tasks or 2 * (workers or os.cpu_count() or 1),
            workers=workers,
            limit=args.limit,
            sources=tuple(s.strip() for s in args.sources.split(",") if s.strip()) if args.sources else None,
            overwrite=args.overwrite,
            slurm_partition=args.partition,
            slurm_time=args.time,
            slurm_cpus_per_task=args.cpus_per_task,
            slurm_dry_run=args.dry_run,
            ray_address=args.ray_address,
            quiet_logs=not args.verbose,
        )
        check_reach(cfg)  # memory:// with worker processes: nothing would reach this process
    except (BuildError, RecipeError) as e:  # a bad --out or recipe: nothing was done, exit 2
        raise RecipeRefused(str(e)) from e
    # a private copy of stderr: the build sends fd 2 (datatrove's task logs) to <out>/logs/build.log
    with os.fdopen(os.dup(2), "w", buffering=1) as stderr_copy:
        console = Console(file=stderr_copy, stderr=True)
        try:
            summary = _run(recipe, cfg, console, show_progress=not args.json)
        except RecipeError as e:  # raised before any work (a bad selection, filter or benchmark file): exit 2
            raise RecipeRefused(str(e)) from e
        if args.json:
            print(json.dumps(summary, indent=1, default=str))
        elif summary.get("executor") == "slurm":
            console.print(
                f"slurm jobs {'written (dry run)' if summary['dry_run'] else 'submitted'}: {summary['scripts']}"
            )
        else:
            render(summary, Console())
    return 0


def _run(recipe, cfg, console, show_progress: bool) -> dict:
    if not show_progress:
        return build(recipe, cfg)
    bars: dict[str, int] = {}
    with Progress(
        TextColumn("[bold]{task.description:<8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("tasks"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as prog:

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in bars:
                bars[stage] = prog.add_task(stage, total=total)
            prog.update(bars[stage], completed=done)

        return build(recipe, cfg, progress=progress)


if __name__ == "__main__":
    sys.exit(main())
