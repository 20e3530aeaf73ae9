"""What a build run depends on besides the recipe: `BuildConfig`, the executor kinds, the --out check."""

from __future__ import annotations

import re
from dataclasses import dataclass

from corpus import Recipe, RecipeError
from corpus.errors import DemixError

EXECUTORS = ("local", "slurm", "ray")


class BuildError(DemixError, RuntimeError):
    """A build that cannot go on (conflicting earlier build, failed task); the message says what to do."""


@dataclass(frozen=True)
class BuildConfig:
    """Everything a build run depends on besides the recipe."""

    out: str
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


def local_out(out: str) -> str:
    """``out`` as a local folder path (a ``file://`` URL becomes its path); raises BuildError for other URLs.

    The shards, logs, tokenizer and the DuckDB manifest are written with local file operations, so
    ``s3://bucket/corpus`` would become a local folder named ``s3:``: refuse it instead.
    """
    text = str(out)
    if not text.strip():
        raise BuildError("--out: '': expected a folder path")
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.\-]*)://", text)
    if scheme is None:
        return text
    if scheme.group(1).lower() == "file":
        path = text[len("file://") :]
        if not path.startswith("/"):
            raise BuildError(f"--out: {text!r}: a file:// URL needs an absolute path (file:///data/corpus)")
        return path
    raise BuildError(
        f"--out: {text!r}: remote outputs are not supported (the build writes shards, logs and "
        f"manifest.duckdb with local file operations); build into a local or mounted folder and "
        f"copy it, e.g. `aws s3 sync out/corpus {text}`"
    )
