"""Suite evaluation cost: lm-eval (the `offline` suite on an in-memory proxy) vs a bare forward pass over the same tokens.

Peer: a bare forward pass (logits + log-softmax, batched, padded, longest first as lm-eval orders them) over
exactly the token sequences (context + continuation) of the suite's log-likelihood requests. The ratio
suite / bare is the harness overhead (target < 1.5x). Also proxies per hour of `proxy search` on the bpb path
(merge + held-out bpb) and on the suite path (merge + held-out bpb + suite), on the same proxies.

Data: --db CORPUS and --components DIR, or (default) a tiny corpus and synthetic components built in a temp
folder with the tests' own writers (tests/conftest.py build_tiny_corpus, proxy.synthetic).

    .venv/bin/python bench/evaluate.py --quick
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
    ProxyFactory, SuiteRunner, ValidationSet, evaluate_model, load_suite, load_tokenizer_for, prepare_suite,
)
from proxy.benchmarks import request_tokens  # noqa: E402


@torch.no_grad()
def bare_forward(model: torch.nn.Module, seqs: list[list[int]], batch_size: int, pad_id: int) -> float:
    """Seconds for one forward pass + log-softmax over every sequence (longest first, right-padded batches)."""
    device = next(model.parameters()).device
    max_len = getattr(model.config, "max_position_embeddings", 2048)
    seqs = sorted((s[-max_len:] for s in seqs), key=len, reverse=True)  # lm-eval left-truncates the same way
    t0 = time.perf_counter()
    for i in range(0, len(seqs), batch_size):
        chunk = seqs[i:i + batch_size]
        width = len(chunk[0])
        x = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        for j, s in enumerate(chunk):
            x[j, :len(s)] = torch.tensor(s, dtype=torch.long)
        torch.log_softmax(model(input_ids=x.to(device)).logits.float(), dim=-1)
    if device.type == "cuda":
        torch.cuda.synchronize()  # the clock must include the queued kernels
    return time.perf_counter() - t0


def _data(args: argparse.Namespace, tmp: Path) -> tuple[Path, Path]:
    if args.db and args.components:
        return Path(args.db), Path(args.components)
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import build_tiny_corpus  # noqa: PLC0415 - the tests' own writer of a tiny corpus
    from transformers import AutoTokenizer  # noqa: PLC0415

    from proxy import tiny_qwen3_config, write_synthetic_components  # noqa: PLC0415

    db = build_tiny_corpus(tmp / "corpus", docs_per_source=400)
    tok = AutoTokenizer.from_pretrained(str(db / "tokenizer"))
    config = tiny_qwen3_config(vocab_size=len(tok), hidden_size=128, num_hidden_layers=4, intermediate_size=384,
                               eos_id=tok.eos_token_id)
    comps = write_synthetic_components(tmp / "components", ["general", "code", "math"], config,
                                       tokenizer_dir=db / "tokenizer", db=str(db))
    return db, comps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", default=None)
    p.add_argument("--components", default=None)
    p.add_argument("--suite", default="offline")
    p.add_argument("--limit", type=int, default=None, help="samples per task (default 64; --quick 16)")
    p.add_argument("--proxies", type=int, default=None, help="proxies timed (default 4; --quick 2)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default=None)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
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
        rows = []
        runner.score()  # warm-up: first-call costs (dataset build, kernels) are not per-proxy costs
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
            suite_s = time.perf_counter() - t0
            bare_s = bare_forward(model, seqs, args.batch_size, tok.eos_token_id or 0)
            rows.append({"merge_s": merge_s, "bpb_s": bpb_s, "suite_s": suite_s, "bare_s": bare_s})
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    out = {"suite": args.suite, "limit": limit, "requests": len(seqs), "tokens": sum(len(s) for s in seqs),
           "proxies": n_proxies, "device": str(factory.device), **mean,
           "overhead_x": mean["suite_s"] / mean["bare_s"],
           "proxies_per_hour_bpb": 3600 / (mean["merge_s"] + mean["bpb_s"]),
           "proxies_per_hour_suite": 3600 / (mean["merge_s"] + mean["bpb_s"] + mean["suite_s"])}
    if args.json:
        print(json.dumps(out))
        return 0
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=f"suite {args.suite}: {out['requests']} requests, {out['tokens']} tokens per proxy "
                        f"(limit {limit}, {n_proxies} proxies, {out['device']})")
    for col in ("path", "seconds / proxy", "proxies / hour"):
        table.add_column(col, justify="left" if col == "path" else "right")
    table.add_row("merge (in memory)", f"{mean['merge_s']:.3f}", "")
    table.add_row("bpb path (merge + held-out bpb)", f"{mean['bpb_s']:.3f}", f"{out['proxies_per_hour_bpb']:.0f}")
    table.add_row("suite through lm-eval", f"{mean['suite_s']:.3f}", "")
    table.add_row("bare forward, same tokens (peer)", f"{mean['bare_s']:.3f}", "")
    table.add_row("suite path (merge + bpb + suite)", "", f"{out['proxies_per_hour_suite']:.0f}")
    Console().print(table)
    print(f"harness overhead: suite / bare forward = {out['overhead_x']:.2f}x (target < 1.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
