"""Build a recipe: run the table of stages (pipelines.build_stages) under one executor kind, then summarize.

One loop makes a datatrove executor per stage, each chained to the stage it waits for (`depends=`, as
in datatrove's examples/minhash_deduplication.py), and runs them in table order: Local and Ray run the
tasks here, Slurm submits one job array per stage, each depending on the one before, and returns
(`--dry-run`: writes the sbatch scripts and submits nothing). Every stage logs to <out>/logs/<stage>
(datatrove completions + per-task stats), so a rerun skips finished tasks and reads their counts back;
the register stage runs every time.
"""

from __future__ import annotations

import json
import time
from typing import Any

import fsspec
from datatrove.executor.base import PipelineExecutor

from corpus import Recipe, write_json_atomic
from pipelines.build_config import EXECUTORS, BuildConfig, BuildError, check_reach, located, out_location, work_location
from pipelines.build_stages import STAGES, BuildStage, make_pipelines
from pipelines.build_tokenizer import TOKENIZER_DIR, prepare_tokenizer, pretrained_tokenizer, tokenizer_ready
from pipelines.executors import Progress, SlurmDryRun, make_executor, run_stage
from pipelines.summary import summarize

__all__ = ["BuildConfig", "BuildError", "build", "build_key", "make_pipelines", "out_location"]


def build_key(recipe: Recipe, cfg: BuildConfig) -> dict[str, Any]:
    """What must match for a rerun to reuse an output folder."""
    return {
        "recipe": recipe.name,
        "config_hash": recipe.config_hash(),
        "tasks": cfg.tasks,
        "limit": cfg.limit,
        "sources": list(cfg.sources) if cfg.sources else None,
    }


def _check_out(recipe: Recipe, cfg: BuildConfig) -> None:
    """Refuse an --out that holds another build; with --overwrite, clear what a build writes; write build.json."""
    fs, root = fsspec.core.url_to_fs(cfg.out)
    key_file = f"{root}/build.json"
    key = build_key(recipe, cfg)
    try:
        if fs.exists(root) and not fs.isdir(root):
            raise BuildError(f"--out: {cfg.out!r}: exists and is not a folder")
        if fs.exists(key_file) and not cfg.overwrite:
            try:
                old = json.loads(fs.cat_file(key_file))
            except (ValueError, UnicodeDecodeError) as e:
                raise BuildError(
                    f"{cfg.out}/build.json: not a build key written by build-corpus ({e}); "
                    f"pass --overwrite or use a new --out"
                ) from None
            if old != key:
                diff = ", ".join(f"{k}: {old.get(k)!r} -> {v!r}" for k, v in key.items() if old.get(k) != v)
                raise BuildError(
                    f"{cfg.out}: holds a build with other settings ({diff}); pass --overwrite or use a new --out"
                )
        if cfg.overwrite:
            work_fs, work = fsspec.core.url_to_fs(work_location(cfg))
            if work_fs.exists(work):
                work_fs.rm(work, recursive=True)
            for name in ("logs", "shards", "validation", TOKENIZER_DIR, "manifest.duckdb", "build.json"):
                if fs.exists(f"{root}/{name}"):
                    fs.rm(f"{root}/{name}", recursive=True)
        fs.makedirs(root, exist_ok=True)
        write_json_atomic(key_file, key, fs=fs, indent=1)
    except OSError as e:  # an unwritable or odd --out is the user's input, not a bug
        raise BuildError(f"--out: {cfg.out!r}: {e.strerror or e} ({e.filename or cfg.out})") from None


def build(recipe: Recipe, cfg: BuildConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Build `recipe` into cfg.out; returns the summary dict (see `summarize`; Slurm: what was submitted).

    Raises RecipeError before any work for a bad recipe or selection, BuildError when a stage fails.
    """
    t0 = time.time()
    if cfg.executor not in EXECUTORS:
        raise BuildError(f"unknown executor {cfg.executor!r}; choose one of {', '.join(EXECUTORS)}")
    cfg = located(cfg)
    check_reach(cfg)
    stages, _ = make_pipelines(recipe, cfg)  # validates everything before touching cfg.out
    # a pretrained tokenizer is fetched and checked before any work (a bad Hub id, no network or a missing EOS
    # stops here) and written before any task runs, so tasks on compute nodes never need the network
    reuse = tokenizer_ready(cfg.out) and not cfg.overwrite
    pretrained = None if reuse else pretrained_tokenizer(recipe)
    _check_out(recipe, cfg)
    if pretrained is not None:
        prepare_tokenizer(recipe, cfg.out, pretrained=pretrained)
    if cfg.executor == "ray":
        import ray

        if not ray.is_initialized():
            ray.init(
                address=cfg.ray_address,
                num_cpus=None if cfg.ray_address else max(1, cfg.workers),
                include_dashboard=False,
                log_to_driver=False,
                ignore_reinit_error=True,
            )
    executors: dict[str, PipelineExecutor] = {}
    for stage in stages:
        executors[stage.name] = make_executor(stage, cfg, depends=executors.get(stage.depends))
    timings = {stage.name: run_stage(stage, executors[stage.name], cfg, progress) for stage in stages}
    if cfg.executor == "slurm":
        return _submitted(cfg, stages, executors)
    return summarize(recipe, cfg, timings, time.time() - t0)


def _submitted(cfg: BuildConfig, stages: list[BuildStage], executors: dict[str, PipelineExecutor]) -> dict[str, Any]:
    """What a Slurm build left: the job id that ends the chain, each stage's sbatch script, the dry run's jobs."""
    logs = f"{cfg.out}/logs"
    submitted = [job for ex in executors.values() if isinstance(ex, SlurmDryRun) for job in ex.submitted]
    return {
        "executor": "slurm",
        "dry_run": cfg.slurm_dry_run,
        "out": cfg.out,
        "job_id": executors[stages[-1].name].job_id,
        "scripts": {s: f"{logs}/{s}/launch_script.slurm" for s in STAGES},
        "submitted": submitted if cfg.slurm_dry_run else None,
    }
