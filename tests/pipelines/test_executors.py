"""The same build on datatrove's Ray executor (local Ray) and Slurm executor (generated sbatch, not submitted)."""

from __future__ import annotations

import os
import re

import pytest
from pipeline_inputs import make_inputs, run_build, write_recipe


def _recipe(tmp_path):
    data = make_inputs(tmp_path)
    data["sources"] = [s for s in data["sources"] if s["name"] in ("math", "code")]
    return write_recipe(tmp_path, data)


def test_slurm_writes_chained_sbatch_scripts(tmp_path):
    out = tmp_path / "out"
    res = run_build(
        _recipe(tmp_path),
        out,
        executor="slurm",
        tasks=3,
        workers=2,
        slurm_dry_run=True,
        slurm_partition="cpu-small",
        slurm_time="01:00:00",
    )
    assert res["executor"] == "slurm" and res["dry_run"]
    jobs: dict = {}
    for j in res["submitted"]:  # the first job of a name is the array; the second merges its stats
        jobs.setdefault(j["job_name"], j)
    # each stage waits for the one before it (datatrove passes --dependency to sbatch)
    for stage, before in (("dedup", "prepare"), ("shard", "dedup"), ("register", "shard")):
        dep = next(a for a in jobs[f"demix-{stage}"]["args"] if a.startswith("--dependency="))
        assert jobs[f"demix-{before}"]["job_id"] in dep
    prepare = (out / "logs" / "prepare" / "launch_script.slurm").read_text()
    assert "#SBATCH --partition=cpu-small" in prepare and "#SBATCH --array=0-2%2" in prepare
    assert "#SBATCH --time=01:00:00" in prepare and "launch_pickled_pipeline" in prepare
    assert (out / "logs" / "prepare" / "executor.pik").exists()
    shard = (out / "logs" / "shard" / "launch_script.slurm").read_text()
    assert "#SBATCH --array=0-2%2" in shard and "#SBATCH --job-name=demix-shard" in shard
    register = (out / "logs" / "register" / "launch_script.slurm").read_text()
    assert "#SBATCH --array=0-0" in register
    assert not (out / "shards").exists()  # nothing ran locally


def test_ray_build_matches_local(tmp_path):
    ray = pytest.importorskip("ray")
    recipe = _recipe(tmp_path)
    local = run_build(recipe, tmp_path / "local")
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        remote = run_build(recipe, tmp_path / "ray", executor="ray", workers=2)
    finally:
        ray.shutdown()
    assert remote["sources"] == local["sources"]
    assert remote["steps"] == local["steps"]


def test_slurm_dry_run_writes_what_a_submission_writes(tmp_path, monkeypatch):
    """The dry run's scripts and sbatch calls equal datatrove's own submission (a stub sbatch records it)."""
    recipe = _recipe(tmp_path)
    bin_dir, calls = tmp_path / "bin", tmp_path / "sbatch.calls"
    bin_dir.mkdir()
    stub = bin_dir / "sbatch"  # prints what real sbatch prints; the script file (last arg) is a temp file
    stub.write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho "Submitted batch job $((1000 + $(wc -l < {calls})))"\n')
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    kw = {"executor": "slurm", "tasks": 3, "workers": 2}
    real = run_build(recipe, tmp_path / "real", **kw)
    dry = run_build(recipe, tmp_path / "dry", slurm_dry_run=True, **kw)
    assert real["submitted"] is None and real["job_id"] == "1007"  # per stage an array + a stats merge: 7th = register
    for stage in ("prepare", "dedup", "shard", "register"):
        script = (tmp_path / "real" / "logs" / stage / "launch_script.slurm").read_text()
        assert (tmp_path / "dry" / "logs" / stage / "launch_script.slurm").read_text() == script.replace(
            str(tmp_path / "real"), str(tmp_path / "dry")
        )
    ids = {j["job_id"]: str(1001 + i) for i, j in enumerate(dry["submitted"])}  # dry-run ids in submission order
    sbatch_args = [" ".join(line.split()[:-1]) for line in calls.read_text().splitlines()]
    assert [
        re.sub(r"dry-run-[\w-]+", lambda m: ids[m.group(0)], " ".join(j["args"])) for j in dry["submitted"]
    ] == sbatch_args
