"""One datatrove executor per build stage, of the chosen kind, and running it with task-level progress.

`make_executor` turns a `BuildStage` into a Local, Ray or Slurm executor logging to <out>/logs/<stage>,
chained to the stage it depends on (`depends=`, as in datatrove's examples/minhash_deduplication.py).
`SlurmDryRun` is the Slurm executor of `--dry-run`: it writes what a submission writes and submits
nothing.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from copy import deepcopy
from pathlib import Path
from typing import Any

import dill
import fsspec
from datatrove.executor import LocalPipelineExecutor
from datatrove.executor.base import PipelineExecutor
from datatrove.executor.ray import RayPipelineExecutor
from datatrove.executor.slurm import SlurmPipelineExecutor
from dill import CONTENTS_FMODE

from corpus.urls import is_url, staged_file
from pipelines.build_config import EXECUTORS, BuildConfig, BuildError
from pipelines.build_stages import BuildStage

Progress = Callable[[str, int, int], None]
"""progress(stage, tasks completed, tasks) while a stage runs."""


class SlurmDryRun(SlurmPipelineExecutor):
    """A Slurm executor that writes every file a submission writes and calls no `sbatch`.

    `launch_job` follows datatrove's own step by step (launch the dependency first and take its job id,
    pickle the executor to executor.pik, ranks_to_run.json, launch_script.slurm, one array job per
    `max_array_size` ranks, then the stats-merging job), but where datatrove runs `sbatch` it appends
    {"job_id", "job_name", "args"} to `submitted` and hands out the made-up id ``dry-run-<job name>``
    (``...-stats`` for the merge job), so the next stage's ``--dependency=`` names it. Submitting the
    written scripts by hand later runs the stage as usual: inside a Slurm task `run` is datatrove's.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.submitted: list[dict[str, Any]] = []

    def _sbatch(self, job_id: str, *args: str) -> str:
        self.submitted.append({"job_id": job_id, "job_name": self.job_name, "args": list(args)})
        return job_id

    def launch_job(self) -> None:
        if self.depends:
            if not self.depends.job_id:
                self.depends.launch_job()
            if self.depends.job_id != -1:  # -1: every task of the dependency had finished, nothing to wait for
                self.depends_job_id = self.depends.job_id
            self.depends = None  # as datatrove: the pickle must not carry the whole chain
        ranks = self.get_incomplete_ranks()
        if not ranks:
            self.job_id = -1
            return
        with self.logging_dir.open("executor.pik", "wb") as f:
            dill.dump(deepcopy(self), f, fmode=CONTENTS_FMODE)
        self.save_executor_as_json()
        with self.logging_dir.open("ranks_to_run.json", "w") as f:
            json.dump(ranks, f)
        jobs = math.ceil(len(ranks) / self.tasks_per_job)
        max_array = min(jobs, self.max_array_size) if self.max_array_size != -1 else jobs
        pickled = self.logging_dir.resolve_paths("executor.pik")
        srun_args = " ".join(f"--{k}={v}" for k, v in self.srun_args.items()) if self.srun_args else ""
        command = (
            f"srun {srun_args} -l -n {self.nodes_per_task} launch_pickled_pipeline {pickled}"
            if self.with_srun
            else f"launch_pickled_pipeline {pickled}"
        )
        with self.logging_dir.open("launch_script.slurm", "w") as f:
            f.write(self.get_launch_file_contents(self.get_sbatch_args(max_array), command))
        for offset in range(math.ceil(jobs / max_array)):
            args = [f"--export=ALL,RUN_OFFSET={offset}"]
            if self.dependency:  # read after each launch: a later array job waits for the one before
                args.append(f"--dependency={self.dependency}")
            self.job_id = self._sbatch(f"dry-run-{self.job_name}" + (f"-{offset}" if offset else ""), *args)
        self.launch_merge_stats()

    def launch_merge_stats(self) -> None:
        self._sbatch(f"dry-run-{self.job_name}-stats")  # its afterok dependency is inside its script


def make_executor(stage: BuildStage, cfg: BuildConfig, depends: PipelineExecutor | None = None) -> PipelineExecutor:
    """A datatrove executor of kind cfg.executor for `stage`, logging to <out>/logs/<stage>, after `depends`."""
    logging_dir = f"{cfg.out}/logs/{stage.name}"  # a path or URL: datatrove's DataFolder takes either
    workers = max(1, min(stage.workers, stage.tasks))
    common = {
        "tasks": stage.tasks,
        "logging_dir": logging_dir,
        "depends": depends,
        "skip_completed": stage.skip_completed,
    }
    if cfg.executor == "local":
        return LocalPipelineExecutor(stage.pipeline, workers=workers, **common)
    if cfg.executor == "ray":
        return RayPipelineExecutor(stage.pipeline, workers=workers, cpus_per_task=1, mem_per_cpu_gb=1, **common)
    if cfg.executor == "slurm":
        slurm = SlurmDryRun if cfg.slurm_dry_run else SlurmPipelineExecutor
        return slurm(
            stage.pipeline,
            time=cfg.slurm_time,
            partition=cfg.slurm_partition,
            cpus_per_task=cfg.slurm_cpus_per_task,
            workers=stage.workers if stage.workers > 0 else -1,
            job_name=f"demix-{stage.name}",
            venv_path=str(Path(sys.prefix) / "bin" / "activate"),
            mail_type="NONE",
            **common,
        )
    raise BuildError(f"unknown executor {cfg.executor!r}; choose one of {', '.join(EXECUTORS)}")


@contextmanager
def quiet_output(log_url: str, enabled: bool) -> Iterator[None]:
    """Send fd 1/2 (datatrove's per-task loguru output, also in worker processes) to a log file.

    A remote log (out is a URL) is written locally and appended to its URL when the block ends, error or not.
    """
    if not enabled:
        yield
        return
    with staged_file(log_url, upload="always") as log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
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


def _completions(logging_dir: str) -> int:
    """Completion markers in a stage's logging folder (a path or URL; listed afresh, not from a cache)."""
    fs, root = fsspec.core.url_to_fs(f"{logging_dir}/completions")
    fs.invalidate_cache(root)
    try:
        return len(fs.ls(root, detail=False))
    except FileNotFoundError:
        return 0


def run_stage(stage: BuildStage, executor: PipelineExecutor, cfg: BuildConfig, progress: Progress | None) -> float:
    """Run (Slurm: submit) one stage's executor; returns seconds. Raises BuildError when tasks stay unfinished."""
    logging_dir = f"{cfg.out}/logs/{stage.name}"
    build_log = f"{cfg.out}/logs/build.log"
    submit_only = isinstance(executor, SlurmPipelineExecutor)  # the tasks run later, on the cluster
    t0 = time.time()
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(2.0 if is_url(cfg.out) else 0.3):  # a listing of an object store costs a request
            progress(stage.name, _completions(logging_dir), stage.tasks)

    thread = threading.Thread(target=poll, daemon=True) if progress and not submit_only else None
    if thread:
        thread.start()
    try:
        with quiet_output(build_log, cfg.quiet_logs):
            executor.run()
    except Exception as e:  # noqa: BLE001 - datatrove re-raises a task's error as is
        raise BuildError(
            f"stage {stage.name} failed: {type(e).__name__}: {e} (see {build_log} and {logging_dir + '/logs'})"
        ) from e
    finally:
        stop.set()
        if thread:
            thread.join()
    if submit_only:
        return time.time() - t0
    done = _completions(logging_dir)
    if progress:
        progress(stage.name, done, stage.tasks)
    if done < stage.tasks:
        raise BuildError(
            f"stage {stage.name}: only {done}/{stage.tasks} tasks completed "
            f"(see {logging_dir + '/logs'}); rerun to resume"
        )
    return time.time() - t0
