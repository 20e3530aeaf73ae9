"""The demo build on a local multi-process Ray cluster: every stage's tasks, dedup included, run as Ray tasks.

  python bench/ray_build.py              # demo recipe, 300 documents per source, 4 tasks, 2 Ray worker CPUs
  python bench/ray_build.py --limit 2000 --tasks 8 --cpus 2

Starts a local Ray instance (`ray.init(num_cpus=...)`: a raylet and one worker process per actor), builds
the demo recipe with `--executor ray`, then asks Ray's state API which tasks ran: datatrove's Ray executor
runs each rank of each stage as `RankWorker.run_for_rank` in an actor of its own. The peer is the same build
with the local executor: the shards' sha256 must be the same set.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from corpus import load_recipe  # noqa: E402
from manifests import list_shards  # noqa: E402
from pipelines.build import build, make_pipelines  # noqa: E402
from pipelines.build_config import BuildConfig  # noqa: E402


def checksums(out: Path) -> set[str]:
    return {s["sha256"] for s in list_shards(out)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default=str(ROOT / "corpus" / "recipes" / "demo.yaml"))
    p.add_argument("--limit", type=int, default=300, help="documents per source")
    p.add_argument("--tasks", type=int, default=4)
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance (tasks run at once)")
    args = p.parse_args(argv)
    import ray  # noqa: PLC0415 - optional, heavy
    from ray.util.state import list_tasks  # noqa: PLC0415

    recipe = load_recipe(args.recipe)
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=True, log_to_driver=False)  # the state API needs it
        t_init = time.perf_counter() - t0
        cfg = BuildConfig(out=f"{tmp}/ray", executor="ray", tasks=args.tasks, workers=args.cpus, limit=args.limit)
        stages, _ = make_pipelines(recipe, cfg)
        t0 = time.perf_counter()
        build(recipe, cfg)
        t_ray = time.perf_counter() - t0
        ranks = [t for t in list_tasks(limit=10_000, detail=True, raise_on_missing_output=False)
                 if t.name.endswith("run_for_rank")]  # fmt: skip
        ray.shutdown()
        t0 = time.perf_counter()
        build(recipe, BuildConfig(out=f"{tmp}/local", tasks=args.tasks, workers=args.cpus, limit=args.limit))
        t_local = time.perf_counter() - t0
        same = checksums(Path(f"{tmp}/ray")) == checksums(Path(f"{tmp}/local"))
        n_shards = len(checksums(Path(f"{tmp}/ray")))

    table = Table(title=f"demo build under Ray ({args.cpus} worker CPUs, {args.tasks} tasks, limit {args.limit})")
    for col in ("stage", "tasks in the build table"):
        table.add_column(col)
    for s in stages:
        table.add_row(s.name, str(s.tasks))
    console.print(table)
    expected = sum(s.tasks for s in stages)
    pids = {t.worker_pid for t in ranks}
    states = collections.Counter(t.state for t in ranks)
    console.print(
        f"Ray ran {len(ranks)} RankWorker.run_for_rank tasks (the build table has {expected}) in {len(pids)} "
        f"worker processes; states {dict(states)}"
    )
    console.print(
        f"wall: ray.init {t_init:.1f} s, Ray build {t_ray:.1f} s, local build {t_local:.1f} s "
        f"(ratio {t_ray / t_local:.2f}x); {n_shards} shards, same sha256 as the local build: {same}"
    )
    return 0 if same and len(ranks) == expected and len(pids) > 1 else 1


if __name__ == "__main__":
    sys.exit(main())
