"""The same build on datatrove's Ray executor (local Ray) and Slurm executor (generated sbatch, not submitted)."""
from __future__ import annotations

import pytest

from pipeline_inputs import make_inputs, run_build, write_recipe


def _recipe(tmp_path):
    data = make_inputs(tmp_path)
    data["sources"] = [s for s in data["sources"] if s["name"] in ("math", "code")]
    return write_recipe(tmp_path, data)


def test_slurm_writes_chained_sbatch_scripts(tmp_path):
    out = tmp_path / "out"
    res = run_build(_recipe(tmp_path), out, executor="slurm", tasks=3, workers=2, slurm_dry_run=True,
                    slurm_partition="cpu-small", slurm_time="01:00:00")
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
