"""What a build run depends on besides the recipe: `BuildConfig`, the executor kinds, where --out and --work are."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import fsspec

from corpus import Recipe, RecipeError
from corpus.errors import DemixError
from corpus.urls import url_protocol

EXECUTORS = ("local", "slurm", "ray")


class BuildError(DemixError, RuntimeError):
    """A build that cannot go on (conflicting earlier build, failed task); the message says what to do."""


@dataclass(frozen=True)
class BuildConfig:
    """Everything a build run depends on besides the recipe."""

    out: str
    """The output folder: a local path or any installed fsspec URL (see `out_location`)."""
    work: str | None = None
    """The work folder for prepared parts and dedup files (default <out>/work); every task must reach it."""
    executor: str = "local"
    tasks: int = 4
    workers: int = 2
    limit: int | None = None
    sources: tuple[str, ...] | None = None
    overwrite: bool = False
    slurm_partition: str = "cpu"
    slurm_time: str = "12:00:00"
    slurm_cpus_per_task: int = 2
    slurm_dry_run: bool = False
    ray_address: str | None = None
    quiet_logs: bool = True


def selected_sources(recipe: Recipe, names: tuple[str, ...] | None) -> list[str]:
    """The sources to build; raises RecipeError naming an unknown source."""
    known = [s.name for s in recipe.sources]
    for n in names or ():
        if n not in known:
            raise RecipeError(f"{recipe.path}: --sources: no source {n!r}; sources are {', '.join(known)}")
    return [n for n in known if not names or n in names]


def out_location(out: str) -> str:
    """``out`` as the build writes it: an absolute local path (a ``file://`` URL becomes its path), or an
    fsspec URL whose protocol is installed (``s3://bucket/corpus``, ``gs://...``, ``memory://...``).

    Raises BuildError before any work for an empty value, a relative file:// URL, an unknown protocol,
    a protocol whose package is missing, and ``hf://`` (the Hub takes one commit per file: build
    elsewhere and upload the finished folder).
    """
    text = str(out).strip()
    if not text:
        raise BuildError("--out: '': expected a folder path or URL")
    protocol = url_protocol(text)
    if protocol is None:
        return os.path.abspath(text)
    if protocol == "file":
        path = text[len("file://") :]
        if not path.startswith("/"):
            raise BuildError(f"--out: {text!r}: a file:// URL needs an absolute path (file:///data/corpus)")
        return os.path.abspath(path)
    if protocol in ("hf", "hf-datasets"):
        raise BuildError(
            f"--out: {text!r}: the Hub stores every file write as a commit, and a build writes thousands; "
            f"build into a local folder or an object store, then upload it (`hf upload-large-folder`)"
        )
    try:
        fsspec.get_filesystem_class(protocol)
    except ValueError:
        raise BuildError(f"--out: {text!r}: fsspec knows no protocol {protocol!r}") from None
    except ImportError as e:  # s3:// without s3fs, gs:// without gcsfs, ...
        raise BuildError(f"--out: {text!r}: {e}") from None
    return text.rstrip("/")


def located(cfg: BuildConfig) -> BuildConfig:
    """`cfg` with out and work as `out_location` writes them (absolute paths or checked URLs)."""
    out, work = out_location(cfg.out), out_location(cfg.work) if cfg.work else None
    return cfg if (out, work) == (cfg.out, cfg.work) else dataclasses.replace(cfg, out=out, work=work)


def check_reach(cfg: BuildConfig) -> None:
    """Refuse a memory:// out or work folder that worker processes would not share (each has its own memory)."""
    for flag, where in (("--out", cfg.out), ("--work", cfg.work or "")):
        if where.startswith("memory://") and (cfg.executor != "local" or min(cfg.workers, cfg.tasks) > 1):
            raise BuildError(
                f"{flag}: {where!r}: memory:// lives in this process, and {cfg.executor} tasks run in other "
                f"processes; use --executor local --workers 1, or a filesystem every task reaches"
            )


def work_location(cfg: BuildConfig) -> str:
    """The work folder of a `located` cfg (prepared parts, dedup runs, drop list): cfg.work, or <out>/work."""
    return cfg.work or f"{cfg.out}/work"
