"""Training throughput (tokens/s) of the model presets through proxy's training loop.

Peer: a bare PyTorch step (forward, backward, AdamW) on the same model and batches; the ratio
shows what the loop adds (scheduling, clipping, logging, data stacking). fp32 on CPU, bf16
autocast on CUDA.

    .venv/bin/python bench/train.py --quick
    .venv/bin/python bench/train.py --presets tiny,small --steps 20 --seq-len 256 --batch-size 16 --json
"""

from __future__ import annotations

import os
import sys

# Run as a script, bench/ comes first on sys.path and its sibling scripts (any of them may share a name with a module)
# would shadow stdlib modules of the same name.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import argparse
import contextlib
import json
import tempfile
import time

import torch

from proxy import TrainConfig, build_model, count_parameters, model_config, train_loop
from proxy.training.loop import default_device, make_optimizer

VOCAB = 8192


class RandomTokens:
    """Uniform random sequences of (seq_len,) token ids; seeded."""

    def __init__(self, seq_len: int, seed: int = 0) -> None:
        self.seq_len, self.g = seq_len, torch.Generator().manual_seed(seed)

    def __iter__(self):
        while True:
            yield torch.randint(0, VOCAB, (self.seq_len,), generator=self.g)


def bare_tokens_per_s(preset: str, steps: int, seq_len: int, batch: int, device: torch.device) -> float:
    """Tokens/s of a plain fwd/bwd/AdamW loop over steps + 1 steps (first step included, as in the loop's figure)."""
    model = build_model(model_config(preset, VOCAB, 0), seed=0).to(device)
    opt = make_optimizer(model, TrainConfig(tokens=0))
    data = iter(RandomTokens(seq_len))
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    t0 = time.perf_counter()
    for _ in range(steps + 1):
        x = torch.stack([next(data) for _ in range(batch)]).to(device)
        with autocast:
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (steps + 1) * batch * seq_len / (time.perf_counter() - t0)


def loop_tokens_per_s(preset: str, steps: int, seq_len: int, batch: int, device: torch.device) -> tuple[float, int]:
    """Tokens/s of proxy.training.loop.train_loop (steps + 1; the first step is amortised in), and params."""
    model = build_model(model_config(preset, VOCAB, 0), seed=0)
    cfg = TrainConfig(tokens=(steps + 1) * batch * seq_len, seq_len=seq_len, batch_size=batch, save_every=10**9)
    with tempfile.TemporaryDirectory() as tmp:
        res = train_loop(model, RandomTokens(seq_len), cfg, tmp, device=device, progress=False)
    return res.tokens_per_s, count_parameters(model)


def main(argv: list[str] | None = None) -> int:
    """Print a table of tokens/s per preset; exit 0."""
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--presets", default="tiny,small")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--quick", action="store_true", help="3 steps per preset")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    steps = 3 if args.quick else args.steps
    if args.threads:
        torch.set_num_threads(args.threads)
    device = default_device()
    rows = []
    for preset in [x.strip() for x in args.presets.split(",") if x.strip()]:
        loop, params = loop_tokens_per_s(preset, steps, args.seq_len, args.batch_size, device)
        bare = bare_tokens_per_s(preset, steps, args.seq_len, args.batch_size, device)
        rows.append(
            {
                "preset": preset,
                "params": params,
                "device": str(device),
                "dtype": "bf16-autocast" if device.type == "cuda" else "fp32",
                "threads": torch.get_num_threads(),
                "seq_len": args.seq_len,
                "batch_size": args.batch_size,
                "steps": steps,
                "loop_tokens_per_s": round(loop, 1),
                "bare_tokens_per_s": round(bare, 1),
                "loop_vs_bare": round(loop / bare, 3),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"training throughput ({device}, seq {args.seq_len} x batch {args.batch_size}, {steps} steps)")
    for col in ("preset", "params", "dtype", "proxy loop tok/s", "bare torch tok/s", "loop / bare"):
        table.add_column(col, justify="left" if col in ("preset", "dtype") else "right")
    for r in rows:
        table.add_row(
            r["preset"],
            f"{r['params'] / 1e6:.2f}M",
            r["dtype"],
            f"{r['loop_tokens_per_s']:,.0f}",
            f"{r['bare_tokens_per_s']:,.0f}",
            f"{r['loop_vs_bare']:.2f}",
        )
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
