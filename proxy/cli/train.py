"""`proxy base`, `proxy components` and `proxy train`: the DeMix component models (docs/method.md steps 1-2).

Every subcommand runs under `torchrun --nproc-per-node N -m proxy ...` as DDP (gloo on CPU,
nccl on CUDA), each rank reading its own slice of the mixer's Sampler.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any

import torch.distributed as dist
from rich.console import Console
from rich.table import Table

from corpus import format_tokens, parse_tokens
from proxy.training.loop import TrainConfig, distributed_context
from proxy.training.lr_schedule import SCHEDULES
from proxy.training.run import RunOutcome, train_base, train_components, train_reference

EXAMPLES = {
    "base": """examples:
  proxy base --db out/demo/manifest.duckdb --config tiny --tokens 20M --out runs/base
  proxy base --db out/demo --config small --tokens 200M --batch-size 32 --lr 6e-4 --out runs/base-small
  proxy base --db out/demo --from runs/other-base --tokens 0 --out runs/base     # reuse a checkpoint as is
  torchrun --nproc-per-node 8 -m proxy base --db out/demo --config base --tokens 2B --out runs/base
""",
    "components": """examples:
  proxy components --base runs/base --db out/demo/manifest.duckdb --general-share 0.5 --tokens 10M \\
      --checkpoints 2M,5M,10M --out runs/components
  proxy components --base runs/base --db out/demo --candidates code_high,math_high --tokens 1M --out runs/components
""",
    "train": """examples:
  proxy train --mixture mix.json --base runs/base --db out/demo --tokens 5M --out runs/refs/mix
  proxy train --mixture mix.json --config tiny --db out/demo --tokens 5M --out runs/small-proxy/mix
""",
}


def _tokens(value: str) -> int:
    try:
        return parse_tokens(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _budgets(value: str) -> tuple[int, ...]:
    return tuple(sorted({_tokens(v.strip()) for v in value.split(",") if v.strip()}))


def _add_common(p: argparse.ArgumentParser, lr: float) -> None:
    p.add_argument("--db", required=True, help="corpus folder or its manifest.duckdb")
    p.add_argument("--tokens", required=True, type=_tokens, help="training tokens, e.g. 20M (all ranks together)")
    p.add_argument("--out", required=True, help="output model folder")
    p.add_argument(
        "--checkpoints", type=_budgets, default=(), help="token budgets to save as HF folders, e.g. 2M,5M,10M"
    )
    g = p.add_argument_group("optimisation")
    g.add_argument("--seq-len", type=int, default=256, help="sequence length (default 256)")
    g.add_argument("--batch-size", type=int, default=16, help="sequences per optimizer step per rank (default 16)")
    g.add_argument("--grad-accum", type=int, default=1, help="micro-batches per step (default 1)")
    g.add_argument(
        "--lr", type=float, default=lr, help=f"peak learning rate (default {lr:g}; the paper used 3e-4 at 1.7B)"
    )
    g.add_argument("--schedule", choices=SCHEDULES, default="cosine", help="LR schedule after warmup (default cosine)")
    g.add_argument("--warmup", type=float, default=0.05, help="warmup as a fraction of steps (default 0.05)")
    g.add_argument(
        "--min-lr-ratio", type=float, default=0.1, help="final LR / peak LR (default 0.1; the paper used 0.2)"
    )
    g.add_argument(
        "--decay-frac", type=float, default=0.2, help="WSD: fraction of steps in the final decay (default 0.2)"
    )
    g.add_argument("--weight-decay", type=float, default=0.1, help="AdamW weight decay on 2-D weights (default 0.1)")
    g.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm, 0 = off (default 1.0)")
    g.add_argument("--seed", type=int, default=0, help="model init and data order seed (default 0)")
    g.add_argument(
        "--fsdp",
        action="store_true",
        help="under torchrun: shard parameters, gradients and optimizer state over ranks (FSDP2) "
        "instead of DDP, for models that do not fit one device",
    )
    g.add_argument("--save-every", type=int, default=100, help="training-state save interval in steps (default 100)")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _config(args: argparse.Namespace) -> TrainConfig:
    try:
        config = TrainConfig(
            tokens=args.tokens,
            seq_len=args.seq_len,
            batch_size=args.batch_size,
            grad_accum=args.grad_accum,
            lr=args.lr,
            schedule=args.schedule,
            warmup_frac=args.warmup,
            min_lr_ratio=args.min_lr_ratio,
            decay_frac=args.decay_frac,
            weight_decay=args.weight_decay,
            grad_clip=args.grad_clip,
            seed=args.seed,
            save_every=max(1, args.save_every),
            checkpoints=args.checkpoints,
            fsdp=args.fsdp,
        )
        _, world, _ = distributed_context()
        config.schedule_for(world)
    except ValueError as e:
        raise SystemExit(_usage(args, str(e)))
    per_step = config.tokens_per_step(world)
    if args.tokens and config.total_steps(world) == 0:
        raise SystemExit(
            _usage(
                args,
                f"--tokens {args.tokens} is less than one step ({per_step} tokens = batch-size x seq-len x world-size)",
            )
        )
    too_big = [b for b in config.checkpoints if b > args.tokens]
    if too_big:
        raise SystemExit(
            _usage(args, f"--checkpoints {format_tokens(too_big[0])} exceeds --tokens {format_tokens(args.tokens)}")
        )
    return config


def _usage(args: argparse.Namespace, message: str) -> int:
    print(f"proxy {args.command}: error: {message}", file=sys.stderr)
    return 2


def _report(args: argparse.Namespace, outcomes: list[RunOutcome]) -> int:
    rank = distributed_context()[0]
    if dist.is_initialized():
        dist.destroy_process_group()
    if rank != 0:
        return 0
    if args.json:
        print(json.dumps([asdict(o) for o in outcomes], indent=2))
        return 0
    table = Table(title=f"proxy {args.command}")
    for col in ("model", "status", "tokens", "steps", "params", "loss", "tok/s", "time", "checkpoints"):
        table.add_column(col, justify="left" if col in ("model", "status", "checkpoints") else "right")
    for o in outcomes:
        table.add_row(
            o.name,
            o.status,
            format_tokens(o.tokens),
            str(o.steps),
            format_tokens(o.parameters) if o.parameters else "-",
            f"{o.final_loss:.3f}" if o.final_loss is not None else "-",
            f"{o.tokens_per_s:,.0f}" if o.tokens_per_s else "-",
            f"{o.elapsed_s:.0f}s",
            ",".join(format_tokens(int(k)) for k in o.checkpoints) or "-",
        )
    console = Console(width=None if sys.stdout.isatty() else 120)
    console.print(table)
    console.print("\n".join(f"{o.name}: {o.out}" for o in outcomes), soft_wrap=True)
    return 0


def run_base(args: argparse.Namespace) -> int:
    """`proxy base`: pretrain (or adopt, with --from) the common base on the general domain."""
    config = _config(args)
    outcome = train_base(
        args.db,
        args.out,
        config,
        init=args.from_ or args.config,
        domain=args.domain,
        from_pretrained=bool(args.from_),
        progress=not args.no_progress,
    )
    return _report(args, [outcome])


def run_components(args: argparse.Namespace) -> int:
    """`proxy components`: one component per candidate, all from the same base."""
    config = _config(args)
    candidates = [c.strip() for c in args.candidates.split(",") if c.strip()] if args.candidates else None
    outcomes = train_components(
        args.base,
        args.db,
        args.out,
        config,
        candidates=candidates,
        general_share=args.general_share,
        progress=not args.no_progress,
    )
    return _report(args, outcomes)


def run_train(args: argparse.Namespace) -> int:
    """`proxy train`: a model trained on a mixture (references, small-proxy baselines)."""
    config = _config(args)
    outcome = train_reference(
        args.mixture, args.db, args.out, config, base=args.base, init=args.config, progress=not args.no_progress
    )
    return _report(args, [outcome])


def add_cli(subparsers: Any) -> None:
    """Add the base, components and train subcommands."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser(
        "base",
        help="pretrain the common base model on general data",
        epilog=EXAMPLES["base"],
        formatter_class=fmt,
        description=run_base.__doc__,
    )
    _add_common(p, lr=1e-3)
    p.add_argument(
        "--config", default="tiny", help="model preset (tiny, small, base) or HF config.json/folder (default tiny)"
    )
    p.add_argument("--from", dest="from_", default=None, help="start from an HF checkpoint folder or hub id instead")
    p.add_argument("--domain", default="general", help="domain the base is trained on (default general)")
    p.set_defaults(func=run_base)

    p = subparsers.add_parser(
        "components",
        help="train one component per candidate from the base",
        epilog=EXAMPLES["components"],
        formatter_class=fmt,
        description=run_components.__doc__,
    )
    _add_common(p, lr=1e-3)
    p.add_argument("--base", required=True, help="the base model folder (from `proxy base`)")
    p.add_argument("--candidates", default=None, help="comma-separated candidates (default: all in the manifest)")
    p.add_argument(
        "--general-share", type=float, default=0.5, help="share of general data in each component (default 0.5)"
    )
    p.set_defaults(func=run_components)

    p = subparsers.add_parser(
        "train",
        help="train a model on a mixture (references, small proxies)",
        epilog=EXAMPLES["train"],
        formatter_class=fmt,
        description=run_train.__doc__,
    )
    _add_common(p, lr=1e-3)
    p.add_argument("--mixture", required=True, help="mixture JSON (mixer.Mixture)")
    p.add_argument("--base", default=None, help="start from this model folder (default: from scratch with --config)")
    p.add_argument("--config", default="tiny", help="model preset or HF config when there is no --base (default tiny)")
    p.set_defaults(func=run_train)
