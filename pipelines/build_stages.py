"""The build as a table of stages: what each stage runs, on how many tasks, after which other stage.

  stage     tasks  runs
  prepare   N      read → normalize → domain filters → content hash + MinHash bands → prepared parts
  dedup     N      bucket shards: exact + near duplicate forests; the last task merges them → drop list, tokenizer
  shard     N      prepared parts minus duplicates → decontaminate → [language id] → tokenize → shards
  register  1      shards, sources, step stats and meta into <out>/manifest.duckdb (pipelines.register)

Each stage waits for the one above it; pipelines.build runs the table under one executor kind.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from corpus import Recipe, RecipeError
from pipelines.build_config import BuildConfig, located, selected_sources, work_location
from pipelines.build_tokenizer import TOKENIZER_DIR, prepare_tokenizer
from pipelines.decontaminate import Decontaminate
from pipelines.dedup import DedupPlan, DedupSignature, DuplicateFinder, PreparedReader, PreparedWriter
from pipelines.filters import DomainFilter, LanguageId, Normalize
from pipelines.readers import SourceFormat, SourceReader, list_units
from pipelines.register import RegisterManifest
from pipelines.shards import ShardInfo, ShardWriter, Tokenize

STAGES = ("prepare", "dedup", "shard", "register")


@dataclass(frozen=True)
class BuildStage:
    """One row of the build table: a datatrove pipeline run as `tasks` tasks under the chosen executor."""

    name: str
    """The stage's name: its log folder <out>/logs/<name> (completions, stats) and Slurm job demix-<name>."""
    pipeline: list
    """The datatrove steps each task runs, in order."""
    tasks: int
    """Datatrove tasks (ranks); task i reads work unit i % tasks, so reruns are reproducible."""
    workers: int
    """Tasks run at once (local, Ray), or the job array's throttle (Slurm; 0: no throttle)."""
    depends: str | None
    """The stage whose tasks must all finish before this one starts (None: the first stage)."""
    skip_completed: bool = True
    """Skip tasks with a completion marker on a rerun. False: the stage runs on every build."""


def make_pipelines(recipe: Recipe, cfg: BuildConfig) -> tuple[list[BuildStage], dict[str, int]]:
    """The build table (stages in run order) and {source: missing locations}; validates before any work."""
    cfg = located(cfg)
    out, work = cfg.out, work_location(cfg)
    names = selected_sources(recipe, cfg.sources)
    chosen = [s for s in recipe.sources if s.name in names]
    units, missing = list_units(recipe, names, cfg.limit)
    filter_params = {}
    for s in chosen:
        fp = s.params.get("filter_params") or {}
        if not isinstance(fp, dict):
            raise RecipeError(f"{recipe.path}: sources[{s.name}].params.filter_params: expected a mapping, got {fp!r}")
        filter_params[s.name] = fp
    try:
        domain_filter = DomainFilter({s.name: s.filters for s in chosen}, filter_params)
    except (ValueError, TypeError) as e:
        raise RecipeError(f"{recipe.path}: {e}") from None
    drop_file = f"{work}/dedup.parquet"
    plan = DedupPlan.of(recipe, f"{work}/dedup", cfg.tasks)  # prepare writes runs for cfg.tasks bucket shards
    prepare = [
        SourceReader(units, {s.name: SourceFormat.of(s) for s in chosen}, cfg.limit),
        Normalize(),
        domain_filter,
        DedupSignature(recipe.dedup),
        PreparedWriter(f"{work}/prepared", plan=plan),
    ]
    # the tokenizer is made once, after the drop list exists (a trained BPE samples kept docs)
    dedup = [
        DuplicateFinder(
            f"{work}/prepared",
            drop_file,
            recipe.dedup,
            plan,
            finish=functools.partial(prepare_tokenizer, recipe, out, f"{work}/prepared", drop_file),
        )
    ]
    shard: list = [PreparedReader(f"{work}/prepared", drop_file)]
    if recipe.decontamination.enabled:
        try:
            shard.append(Decontaminate(recipe.decontamination))
        except (OSError, ValueError) as e:
            raise RecipeError(f"{recipe.path}: decontamination: {e}") from None
    if recipe.language.model_path:
        if not Path(recipe.language.model_path).is_file():
            raise RecipeError(f"{recipe.path}: language.model_path: {recipe.language.model_path!r} is not a local file")
        shard.append(LanguageId(recipe.language.model_path, recipe.language.languages, recipe.language.threshold))
    meta = {"demix.tokenizer": recipe.tokenizer.display_name, "demix.config_hash": recipe.config_hash()}
    shard += [
        Tokenize(f"{out}/{TOKENIZER_DIR}", threads=encoder_threads_per_task(cfg)),
        ShardWriter(
            out,
            {s.name: ShardInfo(s.domain, s.tier, s.candidate or "") for s in chosen},
            meta,
            recipe.validation_fraction,
            f"{out}/logs/shard/records",
        ),
    ]
    stages = [
        BuildStage("prepare", prepare, cfg.tasks, cfg.workers, depends=None),
        # one bucket shard per task: the dedup stage must run exactly as many tasks as the plan has shards
        BuildStage("dedup", dedup, plan.shards, cfg.workers, depends="prepare"),
        BuildStage("shard", shard, cfg.tasks, cfg.workers, depends="dedup"),
        # registration reads every shard task's records: after a rerun of any task it must run again
        BuildStage("register", [RegisterManifest(recipe, cfg, missing)], 1, 1, depends="shard", skip_completed=False),
    ]
    return stages, missing


def encoder_threads_per_task(cfg: BuildConfig) -> int:
    """Encoder threads for one shard task: its share of this machine's CPUs (local), its CPUs (Slurm), 1 (Ray)."""
    if cfg.executor == "slurm":
        return max(1, cfg.slurm_cpus_per_task)
    if cfg.executor == "ray":
        return 1  # each Ray task asks for one CPU
    # W local workers each starting one thread per CPU would only trade cores in context switches
    return max(1, len(os.sched_getaffinity(0)) // max(1, cfg.workers))
