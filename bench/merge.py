"""Merge speed: `proxy merge` vs `mergekit-yaml` (linear) on the same checkpoints, and in-memory proxies per second.

Peer: mergekit's `linear` merge through `mergekit-yaml` (found on PATH, in --mergekit-yaml, or importable).
Where mergekit is absent the peer is a naive baseline (load every state dict, average, save_file),
labelled "naive". Checkpoints are synthetic Qwen3 components (one random base + noise) in bf16.

Measures, per (size, K):
  write  whole-process seconds to write a merged checkpoint: `python -m proxy.cli.merge` vs `mergekit-yaml`
         (both include interpreter start and imports; alternating, best of --repeats), and the merge alone
         in-process
  proxy  seconds per proxy: ProxyFactory.proxy() (weights set in memory) vs mergekit write + from_pretrained
  check  max |ours - mergekit| over all tensors (both compute in float32, write bf16)

    .venv/bin/python bench/merge.py --quick
    PATH=/tmp/mkvenv/bin:$PATH .venv/bin/python bench/merge.py --sizes 100m,500m --ks 3,7 --json
"""

from __future__ import annotations

import sys
from pathlib import Path

# Running `python bench/merge.py` puts bench/ first on sys.path, where bench/tokenize.py would shadow the stdlib.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from proxy import ProxyFactory, merge_to_folder, tiny_qwen3_config, write_synthetic_components  # noqa: E402

SIZES = {  # Qwen3 shapes, vocab 32768, tied embeddings
    "tiny": dict(
        vocab_size=4096,
        hidden_size=128,
        num_hidden_layers=4,
        intermediate_size=384,
        num_attention_heads=4,
        num_key_value_heads=2,
    ),
    "10m": dict(
        vocab_size=8192,
        hidden_size=384,
        num_hidden_layers=6,
        intermediate_size=1024,
        num_attention_heads=6,
        num_key_value_heads=2,
    ),
    "100m": dict(
        vocab_size=32768,
        hidden_size=768,
        num_hidden_layers=12,
        intermediate_size=2048,
        num_attention_heads=12,
        num_key_value_heads=4,
    ),
    "500m": dict(
        vocab_size=32768,
        hidden_size=1280,
        num_hidden_layers=24,
        intermediate_size=3840,
        num_attention_heads=16,
        num_key_value_heads=4,
    ),
}


def mergekit_command(explicit: str | None) -> list[str] | None:
    """The mergekit-yaml command line, or None when mergekit is not available."""
    if explicit:
        return explicit.split()
    if shutil.which("mergekit-yaml"):
        return [shutil.which("mergekit-yaml")]
    if importlib.util.find_spec("mergekit") is not None:
        return [sys.executable, "-m", "mergekit.scripts.run_yaml"]
    return None


def timed(cmd: list[str], env: dict | None = None) -> float:
    """Wall seconds of a subprocess; raises CalledProcessError with its stderr on failure."""
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise subprocess.CalledProcessError(res.returncode, cmd, res.stdout, res.stderr[-2000:])
    return time.perf_counter() - t0


def mem_available() -> int:
    """Bytes of memory available to new allocations (MemAvailable: free + reclaimable page cache)."""
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def load_all(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def naive_merge(components: Path, names: list[str], weights: np.ndarray, out: Path) -> float:
    """Peer when mergekit is absent: load every state dict whole, average in float32, save_file; seconds."""
    from safetensors.torch import save_file

    t0 = time.perf_counter()
    states = [load_all(components / n) for n in names]
    merged = {
        k: sum(float(w) * s[k].float() for w, s in zip(weights, states)).to(states[0][k].dtype) for k in states[0]
    }
    out.mkdir(parents=True, exist_ok=True)
    save_file(merged, str(out / "model.safetensors"), metadata={"format": "pt"})
    return time.perf_counter() - t0


def bench_case(size: str, k: int, work: Path, mergekit: list[str] | None, n_proxies: int, repeats: int = 2) -> dict:
    """One (size, K) measurement; components are written under work and deleted after."""
    from transformers import AutoModelForCausalLM

    case = work / f"{size}-k{k}"
    names = [f"c{i}" for i in range(k)]
    t0 = time.perf_counter()
    write_synthetic_components(case / "components", names, tiny_qwen3_config(**SIZES[size]), dtype=torch.bfloat16)
    setup_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    weights = rng.dirichlet(np.ones(k))
    mix = case / "mix.json"
    mix.write_text(
        json.dumps(
            {"name": "bench", "level": "candidate", "ratios": dict(zip(names, weights.tolist())), "provenance": {}}
        )
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    ours_cmd = [
        sys.executable,
        "-m",
        "proxy.cli.merge",
        "--components",
        str(case / "components"),
        "--mixture",
        str(mix),
        "--json",
        "--out",
    ]
    row = {"size": size, "K": k, "setup_s": setup_s, "repeats": repeats}
    if mergekit is not None:
        config = {
            "merge_method": "linear",
            "dtype": "float32",
            "out_dtype": "bfloat16",
            "models": [
                {"model": str(case / "components" / n), "parameters": {"weight": float(w)}}
                for n, w in zip(names, weights)
            ],
        }
        (case / "mk.yaml").write_text(json.dumps(config))
        row["peer"] = "mergekit"
    else:
        row["peer"] = "naive (mergekit absent)"
    # Alternate ours and the peer, fresh output folders each time, and keep each side's best time: on a shared
    # machine the page cache and other jobs move single timings by 2x or more.
    ours_times, peer_times = [], []
    for rep in range(repeats):
        ours_times.append(timed(ours_cmd + [str(case / f"ours{rep}")], env))
        if mergekit is not None:
            peer_times.append(timed(mergekit + [str(case / "mk.yaml"), str(case / f"peer{rep}"), "--copy-tokenizer"]))
        else:
            peer_times.append(naive_merge(case / "components", names, weights, case / f"peer{rep}"))
        if rep + 1 < repeats:
            shutil.rmtree(case / f"ours{rep}")
            shutil.rmtree(case / f"peer{rep}")
    row["ours_process_s"], row["peer_process_s"] = min(ours_times), min(peer_times)
    last = repeats - 1
    if mergekit is not None:
        ours, theirs = load_all(case / f"ours{last}"), load_all(case / f"peer{last}")
        row["max_abs_diff"] = max((ours[n].float() - theirs[n].float()).abs().max().item() for n in ours)
    t0 = time.perf_counter()
    merge_to_folder(case / "components", dict(zip(names, weights.tolist())), case / "ours_inproc")
    row["ours_merge_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    AutoModelForCausalLM.from_pretrained(
        str(case / (f"peer{last}" if mergekit else f"ours{last}")), dtype=torch.float32
    )
    reload_s = time.perf_counter() - t0
    row["peer_per_proxy_s"] = row["peer_process_s"] + reload_s
    params = (case / "components" / names[0] / "model.safetensors").stat().st_size // 2  # bf16 on disk
    available = mem_available()
    # float32 stacks need K x params x 4 bytes; fall back to bf16 stacks rather than swap or OOM.
    factory_dtype = torch.float32 if (k + 1) * params * 4 < 0.6 * available else torch.bfloat16
    row["factory_dtype"] = str(factory_dtype).removeprefix("torch.")
    t0 = time.perf_counter()
    factory = ProxyFactory(case / "components", device="cpu", dtype=factory_dtype)
    row["factory_load_s"] = time.perf_counter() - t0
    row["params"] = factory.num_parameters
    factory.proxy(weights.tolist())  # warm-up
    mixes = rng.dirichlet(np.ones(k), size=n_proxies)
    t0 = time.perf_counter()
    for m in mixes:
        factory.proxy(m.tolist())
    row["ours_per_proxy_s"] = (time.perf_counter() - t0) / n_proxies
    row["write_speedup"] = row["peer_process_s"] / row["ours_process_s"]
    row["proxy_speedup"] = row["peer_per_proxy_s"] / row["ours_per_proxy_s"]
    del factory
    shutil.rmtree(case, ignore_errors=True)
    return row


def main(argv: list[str] | None = None) -> int:
    """Run the merge benchmark; exit 0 ok, 1 failed, 2 usage."""
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="small models (tiny, 10m) with K = 3, 7")
    p.add_argument("--sizes", default="100m,500m", help=f"comma-separated of {', '.join(SIZES)}")
    p.add_argument("--ks", default="3,7", help="component counts")
    p.add_argument("--proxies", type=int, default=5, help="in-memory proxies timed per case")
    p.add_argument("--repeats", type=int, default=2, help="checkpoint writes per side (alternating); best kept")
    p.add_argument("--mergekit-yaml", default=None, help="mergekit-yaml command (default: PATH or importable)")
    p.add_argument("--work", default=None, help="scratch folder (default: a temp folder)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    sizes = ["tiny", "10m"] if args.quick else args.sizes.split(",")
    if any(s not in SIZES for s in sizes):
        print(f"error: --sizes: {sizes} not all in {list(SIZES)}", file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    mergekit = mergekit_command(args.mergekit_yaml)
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-merge-"))
    rows = []
    for size in sizes:
        for k in (int(x) for x in args.ks.split(",")):
            rows.append(bench_case(size, k, work, mergekit, args.proxies, args.repeats))
            if not args.json:
                print(f"done {size} K={k}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"merge: proxy vs {rows[0]['peer']} (write: whole process; proxy: per proxy)")
    for col in (
        "model",
        "K",
        "params",
        "ours write s",
        "peer write s",
        "write x",
        "ours merge-only s",
        "ours /proxy s",
        "peer /proxy s",
        "proxy x",
        "max|diff|",
    ):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(
            r["size"],
            str(r["K"]),
            f"{r['params'] / 1e6:.1f}M",
            f"{r['ours_process_s']:.2f}",
            f"{r['peer_process_s']:.2f}",
            f"{r['write_speedup']:.1f}x",
            f"{r['ours_merge_s']:.2f}",
            f"{r['ours_per_proxy_s']:.4f}",
            f"{r['peer_per_proxy_s']:.2f}",
            f"{r['proxy_speedup']:.0f}x",
            f"{r.get('max_abs_diff', float('nan')):.2g}",
        )
    Console(width=200).print(t)
    print("targets: write >= 2x, proxy >= 20x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
