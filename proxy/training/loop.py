"""The training loop: AdamW, warmup + cosine/WSD, grad accumulation, clipping, DDP or FSDP, exact resume.

Read top to bottom like nanoGPT: build optimizer and schedule, restore the last state if any,
then for each step pull `batch_size` sequences from the data stream (in grad_accum micro-batches),
step, log, export budget checkpoints and save the training state every `save_every` steps.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from proxy.errors import ProxyError
from proxy.training import fsdp as fsdp_lib
from proxy.training.lr_schedule import Schedule
from proxy.training.state import (
    apply_optimizer_state,
    find_training_state,
    load_training_state,
    read_optimizer_state,
    read_training_meta,
    save_training_state,
)

STATE_DIR = "training_state"
LOG_FILE = "train_log.jsonl"
# Fields that may change between a run and its resume without changing the result.
RESUME_FREE_FIELDS = ("save_every", "log_every", "checkpoints", "fsdp")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one run; tokens are integers, batch_size is sequences per step per rank."""

    tokens: int
    seq_len: int = 256
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 1e-3
    schedule: str = "cosine"
    warmup_frac: float = 0.05
    min_lr_ratio: float = 0.1
    decay_frac: float = 0.2
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0
    seed: int = 0
    save_every: int = 100
    log_every: int = 1
    checkpoints: tuple[int, ...] = field(default_factory=tuple)
    fsdp: bool = False  # shard parameters, gradients and optimizer state over ranks (training.fsdp); DDP otherwise

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.grad_accum < 1 or self.batch_size % self.grad_accum:
            raise ProxyError(
                f"batch_size {self.batch_size} must be a positive multiple of grad_accum {self.grad_accum}"
            )
        if self.seq_len < 2 or self.tokens < 0:
            raise ProxyError(f"seq_len {self.seq_len} must be >= 2 and tokens {self.tokens} >= 0")

    def tokens_per_step(self, world_size: int = 1) -> int:
        """Tokens consumed by one optimizer step over all ranks."""
        return self.batch_size * self.seq_len * world_size

    def total_steps(self, world_size: int = 1) -> int:
        """Optimizer steps = tokens // (batch_size * seq_len * world_size)."""
        return self.tokens // self.tokens_per_step(world_size)

    def schedule_for(self, world_size: int = 1) -> Schedule:
        """The LR schedule over this run's steps."""
        steps = max(1, self.total_steps(world_size))
        return Schedule(
            lr=self.lr,
            total_steps=steps,
            warmup_steps=min(steps, math.ceil(self.warmup_frac * steps)),
            kind=self.schedule,
            min_lr_ratio=self.min_lr_ratio,
            decay_frac=self.decay_frac,
        )


@dataclass(frozen=True)
class TrainResult:
    """What a run did: steps and tokens in total, where it resumed from, loss and speed of this session."""

    steps: int
    tokens: int
    resumed_from_step: int
    final_loss: float | None
    elapsed_s: float
    tokens_per_s: float
    parameters: int


def distributed_context() -> tuple[int, int, int]:
    """(rank, world_size, local_rank); initialises the process group under torchrun (gloo/nccl)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":  # collectives of Python objects (sampler states) use the current device
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
    return 0, 1, 0


def default_device(local_rank: int = 0) -> torch.device:
    """cuda:<local_rank> when CUDA is present, else CPU."""
    return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on 2-D (matrix/embedding) weights only, none on norms and biases."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2), eps=config.eps)


def _batches(stream: Iterator[torch.Tensor], n: int, seq_len: int) -> torch.Tensor:
    rows = []
    for _ in range(n):
        try:
            row = next(stream)
        except StopIteration:
            raise RuntimeError(
                f"data stream ended after fewer sequences than the run needs "
                f"(a batch of {n} could not be filled); resolve the plan for >= the run's tokens"
            ) from None
        if row.shape != (seq_len,):
            raise RuntimeError(f"data stream yielded shape {tuple(row.shape)}, expected ({seq_len},)")
        rows.append(row)
    return torch.stack(rows)


def _check_resume(meta: dict[str, Any], config: TrainConfig, world_size: int, plan_id: str | None, where: Path) -> None:
    saved, now = dict(meta["config"]), json.loads(json.dumps(asdict(config)))
    for key in RESUME_FREE_FIELDS:
        saved.pop(key, None), now.pop(key, None)
    diffs = [
        f"{k}: saved {saved.get(k)!r}, now {now.get(k)!r}"
        for k in sorted(set(saved) | set(now))
        if saved.get(k) != now.get(k)
    ]
    saved_world = meta.get("world_size")
    if saved_world != world_size:
        # Elastic resume: another world size is fine when the global batch (and so every step's
        # sequences, the step count and the LR schedule) stays the same; the sampler re-splits the rest.
        saved_global, now_global = saved.get("batch_size", 0) * (saved_world or 0), now["batch_size"] * world_size
        if saved_global == now_global:
            diffs = [d for d in diffs if not d.startswith(("batch_size:", "grad_accum:"))]
        else:
            diffs.append(
                f"world_size: saved {saved_world}, now {world_size} (an elastic resume keeps the global batch "
                f"batch_size x world_size: {saved_global} saved, {now_global} now)"
            )
    if plan_id is not None and meta.get("plan_id") not in (None, plan_id):
        diffs.append(f"plan_id: saved {meta.get('plan_id')}, now {plan_id}")
    if diffs:
        raise ProxyError(
            f"{where}: cannot resume, the run changed ({'; '.join(diffs)}); "
            "use a new --out or delete the training state"
        )


def _gather(obj: Any, world_size: int) -> list[Any]:
    if world_size == 1:
        return [obj]
    out: list[Any] = [None] * world_size
    dist.all_gather_object(out, obj)
    return out


def _trim_log(path: Path, last_step: int) -> None:
    # After a resume, drop log lines past the restored step so each step is logged once.
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= last_step]
    path.write_text("".join(ln + "\n" for ln in keep))


def train_loop(
    model: torch.nn.Module,
    data: Iterable[torch.Tensor],
    config: TrainConfig,
    out_dir: str | os.PathLike,
    *,
    export: Callable[[torch.nn.Module, int], Any] | None = None,
    plan_id: str | None = None,
    device: torch.device | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train `model` in place on `data` for config.total_steps(world) steps; resume from out_dir's state.

    `data` yields LongTensors of shape (seq_len,) for this rank; when it has state_dict() /
    load_state_dict() (mixer.Sampler does) its position is saved and restored, so a resumed run
    sees the same sequences as an uninterrupted one. `export(model, budget_tokens)` is called
    on rank 0 at every config.checkpoints budget. Writes <out_dir>/train_log.jsonl and
    <out_dir>/training_state/. Raises ValueError when a saved state belongs to a different run
    and RuntimeError when the data ends early.
    """
    out_dir = Path(out_dir)
    rank, world, local_rank = distributed_context()
    device = device or default_device(local_rank)
    is_main = rank == 0
    steps = config.total_steps(world)
    per_step = config.tokens_per_step(world)
    lr_at = config.schedule_for(world)
    fsdp = config.fsdp and world > 1
    torch.manual_seed(config.seed)
    model.train()
    if not fsdp:
        model.to(device)  # FSDP keeps `model` whole on CPU and puts only shards on the device
    start_step = 0
    state_dir = out_dir / STATE_DIR
    found = find_training_state(state_dir)
    meta = None
    if found is not None:
        _check_resume(read_training_meta(found), config, world, plan_id, found)
        meta = load_training_state(found, model)  # weights and RNG; the optimizer once it exists
    net = fsdp_lib.shard_model(model, device) if fsdp else model
    optimizer = make_optimizer(net, config)
    if meta is not None:
        saved = read_optimizer_state(found, "cpu" if fsdp else device)
        if fsdp:
            fsdp_lib.restore_optimizer_state(net, optimizer, saved)
        else:
            apply_optimizer_state(model, optimizer, saved)
        start_step = int(meta["step"])
        if hasattr(data, "load_state_dict") and meta.get("data_state") is not None:
            states = meta["data_state"]
            # Same world: each rank its own state. Another world: any rank's state, resumed elastically.
            data.load_state_dict(states[rank] if len(states) == world else states[0])
    if is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        _trim_log(out_dir / LOG_FILE, start_step)
    ddp = (
        torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if world > 1 and not fsdp
        else net
    )
    # A budget is exported at the first step whose tokens reach it (the last step if it never does,
    # e.g. 10M at 4096 tokens/step ends at 9,998,336); folders keep the nominal budget in their name.
    budgets = {int(b): min(steps, math.ceil(int(b) / per_step)) for b in config.checkpoints if int(b) > 0}
    micro = config.batch_size // config.grad_accum
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    stream = iter(data)
    loss_value: float | None = None
    bar = tqdm(
        total=steps,
        initial=start_step,
        disable=not (is_main and progress),
        unit="step",
        dynamic_ncols=True,
        desc=out_dir.name,
        file=sys.stderr,
    )
    t0 = time.perf_counter()
    log = open(out_dir / LOG_FILE, "a") if is_main else None
    try:
        for step in range(start_step, steps):
            lr = lr_at(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = _batches(stream, config.batch_size, config.seq_len).to(device)
            total = torch.zeros((), device=device)
            for i in range(config.grad_accum):
                x = batch[i * micro : (i + 1) * micro]
                sync = i == config.grad_accum - 1 or world == 1
                if fsdp:
                    net.set_requires_gradient_sync(sync)
                with contextlib.nullcontext() if sync or fsdp else ddp.no_sync(), autocast:
                    loss = ddp(input_ids=x, labels=x).loss / config.grad_accum
                loss.backward()
                total += loss.detach()
            grad_norm = (
                fsdp_lib.full_norm(torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip))
                if config.grad_clip > 0
                else torch.zeros(())
            )
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if world > 1:
                dist.all_reduce(total, op=dist.ReduceOp.AVG if device.type == "cuda" else dist.ReduceOp.SUM)
                if device.type != "cuda":
                    total /= world
            loss_value = float(total)
            done = (step + 1) * per_step
            elapsed = time.perf_counter() - t0
            tps = (step + 1 - start_step) * per_step / max(elapsed, 1e-9)
            if log is not None and ((step + 1) % config.log_every == 0 or step + 1 == steps):
                log.write(
                    json.dumps(
                        {
                            "step": step + 1,
                            "tokens": done,
                            "loss": round(loss_value, 6),
                            "lr": lr,
                            "grad_norm": round(float(grad_norm), 6),
                            "tokens_per_s": round(tps, 1),
                        }
                    )
                    + "\n"
                )
                log.flush()
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{tps:,.0f}", lr=f"{lr:.2e}")
            if export is not None and any(at == step + 1 for at in budgets.values()):
                if fsdp:
                    fsdp_lib.gather_into(net, model)
                if is_main:
                    for b, at in sorted(budgets.items()):
                        if at == step + 1:
                            export(model, b)
            if (step + 1) % config.save_every == 0 and step + 1 < steps:
                data_state = _gather(data.state_dict() if hasattr(data, "state_dict") else None, world)
                opt_state: Any = optimizer
                if fsdp:
                    opt_state = fsdp_lib.full_optimizer_state(net, optimizer)
                    fsdp_lib.gather_into(net, model)
                if is_main:
                    save_training_state(
                        state_dir,
                        model,
                        opt_state,
                        {
                            "step": step + 1,
                            "tokens": done,
                            "config": asdict(config),
                            "world_size": world,
                            "plan_id": plan_id,
                            "data_state": data_state,
                            "seed": config.seed,
                        },
                    )
                if world > 1:
                    dist.barrier()
    finally:
        if hasattr(stream, "close"):
            stream.close()  # stops the sampler's reader threads now rather than at garbage collection
        bar.close()
        if log is not None:
            log.close()
    if fsdp:
        fsdp_lib.gather_into(net, model)  # the caller's model (on rank 0) ends with the trained weights
    elapsed = time.perf_counter() - t0
    return TrainResult(
        steps=steps,
        tokens=steps * per_step,
        resumed_from_step=start_step,
        final_loss=loss_value,
        elapsed_s=elapsed,
        tokens_per_s=(steps - start_step) * per_step / max(elapsed, 1e-9),
        parameters=sum(p.numel() for p in model.parameters()),
    )


def clear_training_state(out_dir: str | os.PathLike) -> None:
    """Remove the training state of a finished run (the final model folder replaces it)."""
    for suffix in ("", ".tmp", ".old"):
        shutil.rmtree(Path(out_dir) / (STATE_DIR + suffix), ignore_errors=True)
