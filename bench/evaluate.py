"""Suite evaluation cost: lm-eval (the `offline` suite on an in-memory proxy) vs a bare forward pass over the same tokens.

Peer: a bare forward pass + log-softmax over *the batches lm-eval itself sent to the model*: a forward pre-hook
on the same model object records every input tensor of one harness call (same requests, same padding, same
batch size, same order, lm-eval's own one-token-continuation dedup included), and the peer replays exactly
those tensors. The ratio harness / bare is the harness overhead (target < 1.5x): everything lm-eval does that
is not the model (building requests, tokenizing, collating, per-request slicing, metrics, sample logs).

Fair timing on a shared machine: torch.set_num_threads(1) (one core of this machine runs another job; two
threads spin-wait on each other), one warm-up of each side excluded, then --reps (>= 5) repetitions
*interleaved* (bare, harness, bare, harness, ...) so machine load hits both sides alike; medians reported.
--profile prints cProfile's top entries of one harness call (where the overhead goes).

Also proxies per hour of `proxy search` on the bpb path (merge + held-out bpb) and on the suite path
(merge + held-out bpb + suite), on the same proxies.

Data: --db CORPUS and --components DIR, or (default) a tiny corpus and synthetic components built in a temp
folder with the tests' own writers (tests/conftest.py build_tiny_corpus, proxy.synthetic).

    .venv/bin/python bench/evaluate.py --quick
    .venv/bin/python bench/evaluate.py --quick --profile
    .venv/bin/python bench/evaluate.py --db out/demo --components runs/demo/components --limit 100 --proxies 5
"""

from __future__ import annotations

import sys
from pathlib import Path

# Running `python bench/evaluate.py` puts bench/ first on sys.path, where bench/tokenize.py would shadow the stdlib.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from proxy import (  # noqa: E402
    ProxyFactory,
    SuiteRunner,
    ValidationSet,
    evaluate_model,
    load_suite,
    load_tokenizer_for,
    prepare_suite,
)
from proxy.benchmarks import request_tokens  # noqa: E402


def capture_batches(runner: SuiteRunner) -> list[torch.Tensor]:
    """The input tensors lm-eval passes to the model during one ``runner.score()`` (copies, in call order)."""
    batches: list[torch.Tensor] = []
    model = runner.lm.model  # the same object the harness calls: a hook on it sees exactly what lm-eval sends

    def record(_module, args, kwargs):
        x = args[0] if args else kwargs["input_ids"]
        batches.append(x.detach().clone())

    handle = model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        runner.score()
    finally:
        handle.remove()
    return batches


@torch.no_grad()
def bare_forward(model: torch.nn.Module, batches: list[torch.Tensor]) -> float:
    """Seconds for the model's forward + log-softmax over ``batches`` (what HFLM._model_call + its softmax do)."""
    device = next(model.parameters()).device
    t0 = time.perf_counter()
    for x in batches:
        torch.log_softmax(model(x.to(device)).logits, dim=-1)
    if device.type == "cuda":
        torch.cuda.synchronize()  # the clock must include the queued kernels
    return time.perf_counter() - t0


def interleaved(
    runner: SuiteRunner, model: torch.nn.Module, batches: list[torch.Tensor], reps: int
) -> dict[str, list[float]]:
    """Seconds of ``reps`` alternating repetitions of each side, after one warm-up of each side.

    Sides: "bare" (the peer), "harness" (SuiteRunner as shipped) and "harness, uncached templates" (lm-eval's
    own ``apply_template``, which recompiles every Jinja template per document: SuiteRunner before the fix).
    """
    from lm_eval import utils  # noqa: PLC0415

    cached = utils.apply_template
    original = getattr(cached, "original", cached)

    def harness(template_fn) -> float:
        utils.apply_template = template_fn
        try:
            t0 = time.perf_counter()
            runner.score()
            return time.perf_counter() - t0
        finally:
            utils.apply_template = cached

    sides = {
        "bare": lambda: bare_forward(model, batches),
        "harness": lambda: harness(cached),
        "harness, uncached templates": lambda: harness(original),
    }
    for run in sides.values():  # warm-up: allocator, kernels and lm-eval's dataset build are first-call costs
        run()
    times: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(reps):  # alternating, so a burst of load on the shared core hits every side alike
        for k, run in sides.items():
            times[k].append(run())
    return times


def profile_harness(runner: SuiteRunner, top: int = 25) -> str:
    """cProfile's top entries (cumulative time) of one harness call."""
    import cProfile  # noqa: PLC0415
    import io  # noqa: PLC0415
    import pstats  # noqa: PLC0415

    prof = cProfile.Profile()
    prof.runcall(runner.score)
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(top)
    return buf.getvalue()


def _data(args: argparse.Namespace, tmp: Path) -> tuple[Path, Path | list[Path]]:
    if args.db and args.components:
        comps = Path(args.components)
        if not (comps / "components.json").is_file():  # a folder of model folders (bench/reproduce_runner.py's)
            return Path(args.db), sorted(d for d in comps.iterdir() if (d / "config.json").is_file())
        return Path(args.db), comps
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import build_tiny_corpus  # noqa: PLC0415 - the tests' own writer of a tiny corpus
    from transformers import AutoTokenizer  # noqa: PLC0415

    from proxy import tiny_qwen3_config, write_synthetic_components  # noqa: PLC0415

    db = build_tiny_corpus(tmp / "corpus", docs_per_source=400)
    tok = AutoTokenizer.from_pretrained(str(db / "tokenizer"))
    config = tiny_qwen3_config(
        vocab_size=len(tok), hidden_size=128, num_hidden_layers=4, intermediate_size=384, eos_id=tok.eos_token_id
    )
    comps = write_synthetic_components(
        tmp / "components", ["general", "code", "math"], config, tokenizer_dir=db / "tokenizer", db=str(db)
    )
    return db, comps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", default=None)
    p.add_argument("--components", default=None)
    p.add_argument("--suite", default="offline")
    p.add_argument("--limit", type=int, default=None, help="samples per task (default 64; --quick 16)")
    p.add_argument("--proxies", type=int, default=None, help="proxies timed for proxies/hour (default 4; --quick 2)")
    p.add_argument("--reps", type=int, default=7, help="interleaved repetitions of the overhead timing (>= 5)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: fair on a shared machine)")
    p.add_argument("--device", default=None)
    p.add_argument("--profile", action="store_true", help="print cProfile's top entries of one harness call")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.reps < 5:
        p.error("--reps: at least 5 (a median of fewer is not a measurement)")
    torch.set_num_threads(args.threads)
    limit = args.limit or (16 if args.quick else 64)
    n_proxies = args.proxies or (2 if args.quick else 4)
    with tempfile.TemporaryDirectory() as tmp:
        db, comps = _data(args, Path(tmp))
        suite = load_suite(args.suite)
        prepared = prepare_suite(suite, Path(tmp) / "suite", db)
        factory = ProxyFactory(comps, device=args.device)
        tok = load_tokenizer_for(factory.components.paths[0], db)
        runner = SuiteRunner(prepared, factory.model, tok, batch_size=args.batch_size, limit=limit)
        seqs = request_tokens(prepared, tok, limit=limit)
        vset = ValidationSet.from_manifest(db)
        rng = np.random.default_rng(0)
        model = factory.proxy(rng.dirichlet(np.ones(len(factory.names))).tolist())
        batches = capture_batches(runner)
        times = interleaved(runner, model, batches, args.reps)
        profile = profile_harness(runner) if args.profile else None
        rows = []
        for _ in range(n_proxies):
            ratios = rng.dirichlet(np.ones(len(factory.names))).tolist()
            t0 = time.perf_counter()
            model = factory.proxy(ratios)
            merge_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            evaluate_model(model, vset, batch_size=args.batch_size)
            bpb_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            runner.score()
            rows.append({"merge_s": merge_s, "bpb_s": bpb_s, "suite_s": time.perf_counter() - t0})
    med = {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
    median = {k: float(np.median(v)) for k, v in times.items()}
    bare = np.array(times["bare"])
    out = {
        "suite": args.suite,
        "limit": limit,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "device": str(factory.device),
        "reps": args.reps,
        "requests": len(seqs),
        "request_tokens": sum(len(s) for s in seqs),
        "forward_batches": len(batches),
        "forward_rows": sum(int(x.shape[0]) for x in batches),
        "forward_tokens": sum(int(x.numel()) for x in batches),
        "times_s": times,
        "median_s": median,
        "overhead_x": median["harness"] / median["bare"],
        "overhead_x_pairs_median": float(np.median(np.array(times["harness"]) / bare)),
        "overhead_x_uncached_templates": median["harness, uncached templates"] / median["bare"],
        "overhead_x_uncached_templates_pairs_median": float(
            np.median(np.array(times["harness, uncached templates"]) / bare)
        ),
        "proxies": n_proxies,
        **{f"{k}_median": v for k, v in med.items()},
        "proxies_per_hour_bpb": 3600 / (med["merge_s"] + med["bpb_s"]),
        "proxies_per_hour_suite": 3600 / (med["merge_s"] + med["bpb_s"] + med["suite_s"]),
    }
    if args.json:
        print(json.dumps(out))
        return 0
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    console = Console()
    if profile:
        console.print(profile, markup=False, highlight=False)
    table = Table(
        title=f"harness overhead, suite {args.suite} (limit {limit}, batch {args.batch_size}, "
        f"{args.threads} thread(s), {out['device']}, median of {args.reps} interleaved reps)"
    )
    for col in ("side", "tokens scored", "median s", "min s", "max s"):
        table.add_column(col, justify="left" if col == "side" else "right")
    labels = {
        "bare": "bare forward + log-softmax (peer)",
        "harness": "lm-eval evaluate() via SuiteRunner",
        "harness, uncached templates": "same, lm-eval's uncached templates (before)",
    }
    for k, v in times.items():
        table.add_row(
            labels[k],
            f"{out['forward_tokens']:,} in {len(batches)} batches",
            f"{median[k]:.3f}",
            f"{min(v):.3f}",
            f"{max(v):.3f}",
        )
    console.print(table)
    print(
        f"lm-eval's requests: {out['requests']} (context + continuation: {out['request_tokens']:,} tokens); "
        f"the model saw {out['forward_rows']} rows ({out['forward_tokens']:,} tokens with right-padding), "
        "recorded by a forward hook and replayed as they were by the peer"
    )
    print(
        f"harness overhead: harness / bare = {out['overhead_x']:.2f}x (median of per-pair ratios "
        f"{out['overhead_x_pairs_median']:.2f}x; target < 1.5x); before the template cache "
        f"{out['overhead_x_uncached_templates']:.2f}x (pairs {out['overhead_x_uncached_templates_pairs_median']:.2f}x)."
        " Single-thread and interleaved: fair on a shared machine (one core busy with another job)"
    )
    cost = Table(title=f"seconds per proxy (median of {n_proxies} proxies)")
    for col in ("path", "seconds / proxy", "proxies / hour"):
        cost.add_column(col, justify="left" if col == "path" else "right")
    cost.add_row("merge (in memory)", f"{med['merge_s']:.3f}", "")
    cost.add_row("held-out bpb", f"{med['bpb_s']:.3f}", "")
    cost.add_row("suite through lm-eval", f"{med['suite_s']:.3f}", "")
    cost.add_row("bpb path (merge + held-out bpb)", "", f"{out['proxies_per_hour_bpb']:.0f}")
    cost.add_row("suite path (merge + bpb + suite)", "", f"{out['proxies_per_hour_suite']:.0f}")
    console.print(cost)
    return 0


if __name__ == "__main__":
    sys.exit(main())
