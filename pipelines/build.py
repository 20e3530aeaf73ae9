"""Assemble and run the corpus build: four datatrove stages on one executor kind, then the manifest.

  prepare (N tasks)  read → normalize → domain filters → content hash + MinHash bands → prepared parts
  dedup   (N tasks)  bucket shards: exact + near duplicate edges; the last one clusters → drop list, tokenizer
  shard   (N tasks)  prepared parts minus duplicates → decontaminate → [language id] → tokenize → shards
  register (driver)  shards, sources, step stats and meta into <out>/manifest.duckdb (one DuckDB writer)

Every stage logs to <out>/logs/<stage> (datatrove completions + per-task stats), so a rerun skips
finished tasks and reads their counts back. Under Slurm the stages are chained job arrays
(`depends`), and registration is a final one-task job.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import shutil
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

from datatrove.pipeline.base import PipelineStep

from corpus import Recipe, RecipeError
from corpus.tokenizer import load_tokenizer, tokenizer_hash
from manifests import open_manifest, register_shards, register_sources, register_step_stats, set_meta
from manifests.manifest import ShardRecord
from pipelines.decontaminate import Decontaminate
from pipelines.dedup import DedupPlan, DedupSignature, DuplicateFinder, PreparedReader, PreparedWriter
from pipelines.filters import DomainFilter, LanguageId, Normalize
from pipelines.readers import SourceFormat, SourceReader, list_units
from pipelines.shards import TOKENIZER_DIR, ShardInfo, ShardWriter, Tokenize, prepare_tokenizer
from pipelines.stats import read_step_counts, step_stats_rows
from pipelines.step_order import step_row_key
from pipelines.summary import summarize
from corpus.errors import DemixError

STAGES = ("prepare", "dedup", "shard", "register")
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


class RegisterManifest(PipelineStep):
    """One task (Slurm): register everything in the manifest after the shard stage."""

    name = "register"
    type = "🗂 - MANIFEST"

    def __init__(self, recipe: Recipe, cfg: BuildConfig, missing: dict[str, int]):
        super().__init__()
        self.recipe, self.cfg, self.missing = recipe, cfg, dict(missing)

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        if data:
            yield from data
        register_manifest(self.recipe, self.cfg, self.missing)


def selected_sources(recipe: Recipe, names: tuple[str, ...] | None) -> list[str]:
    """The sources to build; raises RecipeError naming an unknown source."""
    known = [s.name for s in recipe.sources]
    for n in names or ():
        if n not in known:
            raise RecipeError(f"{recipe.path}: --sources: no source {n!r}; sources are {', '.join(known)}")
    return [n for n in known if not names or n in names]


def build_key(recipe: Recipe, cfg: BuildConfig) -> dict[str, Any]:
    """What must match for a rerun to reuse an output folder."""
    return {"recipe": recipe.name, "config_hash": recipe.config_hash(), "tasks": cfg.tasks, "limit": cfg.limit,
            "sources": list(cfg.sources) if cfg.sources else None}


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
        path = text[len("file://"):]
        if not path.startswith("/"):
            raise BuildError(f"--out: {text!r}: a file:// URL needs an absolute path (file:///data/corpus)")
        return path
    raise BuildError(f"--out: {text!r}: remote outputs are not supported (the build writes shards, logs and "
                     f"manifest.duckdb with local file operations); build into a local or mounted folder and "
                     f"copy it, e.g. `aws s3 sync out/corpus {text}`")


def _check_out(recipe: Recipe, cfg: BuildConfig) -> None:
    out = Path(cfg.out)
    key_file = out / "build.json"
    key = build_key(recipe, cfg)
    try:
        if out.exists() and not out.is_dir():
            raise BuildError(f"--out: {str(out)!r}: exists and is not a folder")
        if key_file.exists() and not cfg.overwrite:
            try:
                old = json.loads(key_file.read_text())
            except (ValueError, UnicodeDecodeError) as e:
                raise BuildError(f"{key_file}: not a build key written by build-corpus ({e}); "
                                 "pass --overwrite or use a new --out") from None
            if old != key:
                diff = ", ".join(f"{k}: {old.get(k)!r} -> {v!r}" for k, v in key.items() if old.get(k) != v)
                raise BuildError(f"{out}: holds a build with other settings ({diff}); pass --overwrite or use a new --out")
        if cfg.overwrite:
            for name in ("logs", "work", "shards", "validation", TOKENIZER_DIR, "manifest.duckdb", "build.json"):
                p = out / name
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        out.mkdir(parents=True, exist_ok=True)
        key_file.write_text(json.dumps(key, indent=1))
    except OSError as e:  # an unwritable or odd --out is the user's input, not a bug
        raise BuildError(f"--out: {str(out)!r}: {e.strerror or e} ({e.filename or out})") from None


def make_pipelines(recipe: Recipe, cfg: BuildConfig) -> tuple[dict[str, list], dict[str, int]]:
    """The step lists of each stage, and {source: missing locations}; validates before any work."""
    out = str(Path(cfg.out).resolve())
    work = f"{out}/work"
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
    prepare = [SourceReader(units, {s.name: SourceFormat.of(s) for s in chosen}, cfg.limit), Normalize(),
               domain_filter, DedupSignature(recipe.dedup), PreparedWriter(f"{work}/prepared", plan=plan)]
    # the tokenizer is made once, after the drop list exists (a trained BPE samples kept docs)
    dedup = [DuplicateFinder(f"{work}/prepared", drop_file, recipe.dedup, plan,
                             finish=functools.partial(prepare_tokenizer, recipe, out, f"{work}/prepared", drop_file))]
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
    shard += [Tokenize(f"{out}/{TOKENIZER_DIR}", threads=encoder_threads_per_task(cfg)),
              ShardWriter(out, {s.name: ShardInfo(s.domain, s.tier, s.candidate or "") for s in chosen}, meta,
                          recipe.validation_fraction, f"{out}/logs/shard/records")]
    return {"prepare": prepare, "dedup": dedup, "shard": shard}, missing


def encoder_threads_per_task(cfg: BuildConfig) -> int:
    """Encoder threads for one shard task: its share of this machine's CPUs (local), its CPUs (Slurm), 1 (Ray)."""
    if cfg.executor == "slurm":
        return max(1, cfg.slurm_cpus_per_task)
    if cfg.executor == "ray":
        return 1  # each Ray task asks for one CPU
    # W local workers each starting one thread per CPU would only trade cores in context switches
    return max(1, len(os.sched_getaffinity(0)) // max(1, cfg.workers))


def make_executor(kind: str, pipeline: list, tasks: int, cfg: BuildConfig, stage: str, depends=None):
    """A datatrove executor of `kind` for one stage, logging to <out>/logs/<stage>."""
    logging_dir = str(Path(cfg.out).resolve() / "logs" / stage)
    if kind == "local":
        from datatrove.executor import LocalPipelineExecutor

        return LocalPipelineExecutor(pipeline, tasks=tasks, workers=max(1, min(cfg.workers, tasks)),
                                     logging_dir=logging_dir, depends=depends)
    if kind == "ray":
        from datatrove.executor.ray import RayPipelineExecutor

        return RayPipelineExecutor(pipeline, tasks=tasks, workers=max(1, min(cfg.workers, tasks)),
                                   logging_dir=logging_dir, depends=depends, cpus_per_task=1, mem_per_cpu_gb=1)
    if kind == "slurm":
        from datatrove.executor.slurm import SlurmPipelineExecutor

        return SlurmPipelineExecutor(pipeline, tasks=tasks, time=cfg.slurm_time, partition=cfg.slurm_partition,
                                     cpus_per_task=cfg.slurm_cpus_per_task, workers=cfg.workers if cfg.workers > 0 else -1,
                                     job_name=f"demix-{stage}", logging_dir=logging_dir, depends=depends,
                                     venv_path=str(Path(sys.prefix) / "bin" / "activate"), mail_type="NONE")
    raise BuildError(f"unknown executor {kind!r}; choose one of {', '.join(EXECUTORS)}")


@contextmanager
def _quiet(log_path: Path, enabled: bool) -> Iterator[None]:
    """Send fd 1/2 (datatrove's per-task loguru output, also in worker processes) to a log file."""
    if not enabled:
        yield
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1), os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


def _completions(logging_dir: Path) -> int:
    d = logging_dir / "completions"
    return len(os.listdir(d)) if d.is_dir() else 0


def run_stage(stage: str, executor, tasks: int, cfg: BuildConfig, progress: Callable[[str, int, int], None] | None) -> float:
    """Run one stage's executor with task-level progress; raises BuildError when tasks stay unfinished."""
    logging_dir = Path(cfg.out).resolve() / "logs" / stage
    t0 = time.time()
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(0.3):
            progress(stage, _completions(logging_dir), tasks)

    thread = threading.Thread(target=poll, daemon=True) if progress else None
    if thread:
        thread.start()
    try:
        with _quiet(Path(cfg.out) / "logs" / "build.log", cfg.quiet_logs):
            executor.run()
    except Exception as e:  # noqa: BLE001 - datatrove re-raises a task's error as is
        raise BuildError(f"stage {stage} failed: {type(e).__name__}: {e} (see {Path(cfg.out) / 'logs' / 'build.log'} "
                         f"and {logging_dir / 'logs'})") from e
    finally:
        stop.set()
        if thread:
            thread.join()
    done = _completions(logging_dir)
    if progress:
        progress(stage, done, tasks)
    if done < tasks:
        raise BuildError(f"stage {stage}: only {done}/{tasks} tasks completed (see {logging_dir / 'logs'}); rerun to resume")
    return time.time() - t0


def collect_step_stats(cfg: BuildConfig, missing: dict[str, int]) -> list[dict[str, Any]]:
    """step_stats rows summed over every stage's task stats, plus missing locations under 'read'."""
    logs = Path(cfg.out).resolve() / "logs"
    counts: dict = {}
    for stage in ("prepare", "shard"):
        counts.update(read_step_counts(str(logs / stage)))
    for src, n in missing.items():
        row = counts.setdefault((src, "read"), {"docs_in": 0, "docs_out": 0, "reasons": {}})
        row["reasons"] = {**row["reasons"], "missing_location": n}
    return sorted(step_stats_rows(counts), key=step_row_key)


def register_manifest(recipe: Recipe, cfg: BuildConfig, missing: dict[str, int]) -> dict[str, Any]:
    """Register sources, shards (from the shard tasks' record files), step stats and meta; returns meta."""
    out = Path(cfg.out).resolve()
    records = []
    for p in sorted((out / "logs" / "shard" / "records").glob("*.json")):
        for r in json.loads(p.read_text()):
            r["created_at"] = datetime.fromisoformat(r["created_at"])
            records.append(ShardRecord(**r))
    tok_dir = out / TOKENIZER_DIR
    tok = load_tokenizer(tok_dir)
    meta = {"tokenizer_path": TOKENIZER_DIR, "tokenizer_name": recipe.tokenizer.display_name,
            "tokenizer_hash": tokenizer_hash(tok_dir), "eos_token": recipe.tokenizer.eos_token,
            "eos_id": tok.token_to_id(recipe.tokenizer.eos_token), "vocab_size": tok.get_vocab_size(),
            "recipe_name": recipe.name, "config_hash": recipe.config_hash()}
    names = set(selected_sources(recipe, cfg.sources))
    sub = Recipe(**{**{f: getattr(recipe, f) for f in recipe.__dataclass_fields__},
                    "sources": tuple(s for s in recipe.sources if s.name in names)})
    with open_manifest(out) as con:
        register_sources(con, sub)
        con.execute("DELETE FROM shards WHERE source IN (SELECT unnest(?))", [sorted(names)])
        register_shards(con, records)
        # '(benchmarks)' holds decontamination's own counts: a rebuild without decontamination must not keep them
        con.execute("DELETE FROM step_stats WHERE source IN (SELECT unnest(?)) OR source = '(benchmarks)'",
                    [sorted(names)])
        register_step_stats(con, collect_step_stats(cfg, missing))
        set_meta(con, meta)
    return meta


def build(recipe: Recipe, cfg: BuildConfig,
          progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Build `recipe` into cfg.out; returns the summary dict (see `summarize`).

    Raises RecipeError before any work for a bad recipe or selection, BuildError when a stage fails.
    """
    t0 = time.time()
    if cfg.executor not in EXECUTORS:
        raise BuildError(f"unknown executor {cfg.executor!r}; choose one of {', '.join(EXECUTORS)}")
    if local_out(cfg.out) != cfg.out:
        cfg = dataclasses.replace(cfg, out=local_out(cfg.out))
    pipelines, missing = make_pipelines(recipe, cfg)  # validates everything before touching cfg.out
    _check_out(recipe, cfg)
    tasks = {"prepare": cfg.tasks, "dedup": cfg.tasks, "shard": cfg.tasks}
    timings: dict[str, float] = {}
    if cfg.executor == "slurm":
        return _submit_slurm(recipe, cfg, pipelines, tasks, missing)
    if cfg.executor == "ray":
        import ray

        if not ray.is_initialized():
            ray.init(address=cfg.ray_address, num_cpus=None if cfg.ray_address else max(1, cfg.workers),
                     include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    for stage in ("prepare", "dedup", "shard"):
        ex = make_executor(cfg.executor, pipelines[stage], tasks[stage], cfg, stage)
        timings[stage] = run_stage(stage, ex, tasks[stage], cfg, progress)
    t = time.time()
    register_manifest(recipe, cfg, missing)
    timings["register"] = time.time() - t
    return summarize(recipe, cfg, timings, time.time() - t0)


def _submit_slurm(recipe: Recipe, cfg: BuildConfig, pipelines: dict, tasks: dict, missing: dict) -> dict[str, Any]:
    import datatrove.executor.slurm as slurm

    submitted: list[dict[str, Any]] = []
    original = slurm.launch_slurm_job
    if cfg.slurm_dry_run:
        def fake(contents: str, retriever, *args) -> str:
            job_id = str(1000 + len(submitted) + 1)
            name = next((ln.split("=", 1)[1] for ln in contents.splitlines() if ln.startswith("#SBATCH --job-name=")), "")
            submitted.append({"job_id": job_id, "job_name": name, "args": list(args)})
            return job_id
        slurm.launch_slurm_job = fake
    try:
        prev = None
        for stage in ("prepare", "dedup", "shard"):
            prev = make_executor("slurm", pipelines[stage], tasks[stage], cfg, stage, depends=prev)
        last = make_executor("slurm", [RegisterManifest(recipe, cfg, missing)], 1, cfg, "register", depends=prev)
        with _quiet(Path(cfg.out) / "logs" / "build.log", cfg.quiet_logs):
            last.run()
    finally:
        slurm.launch_slurm_job = original
    logs = Path(cfg.out).resolve() / "logs"
    return {"executor": "slurm", "dry_run": cfg.slurm_dry_run, "out": str(Path(cfg.out).resolve()),
            "job_id": last.job_id, "scripts": {s: str(logs / s / "launch_script.slurm") for s in STAGES},
            "submitted": submitted if cfg.slurm_dry_run else None}
