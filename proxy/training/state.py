"""Training-state checkpoints for exact resume: safetensors tensors + one JSON file, never pickle.

A state folder holds
  model.safetensors      the weights (fp32, shared/tied tensors stored once)
  optimizer.safetensors  every optimizer state tensor, flattened as "<param name>/<state key>"
  rng.safetensors        torch CPU (and CUDA) generator states
  trainer.json           step, tokens, sampler state(s), config, plan id and param names
It is written to a temporary folder and swapped in, so a kill leaves the previous state intact.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from corpus.errors import DemixError

TRAINER_FILE = "trainer.json"


class TrainingStateError(DemixError, RuntimeError):
    """A training-state folder that is unreadable or does not match the model/optimizer."""


def _param_names(model: torch.nn.Module) -> list[str]:
    # Optimizer param indices follow model.parameters() order, which named_parameters() shares.
    return [name for name, _ in model.named_parameters()]


OptimizerState = dict[str, dict[str, Any]]  # parameter name -> {state key: tensor or scalar}


def optimizer_state_by_name(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> OptimizerState:
    """The optimizer's per-parameter state keyed by parameter name (plain or DDP-wrapped models)."""
    names = _param_names(getattr(model, "module", model))
    return {names[idx]: dict(state) for idx, state in optimizer.state_dict()["state"].items()}


def apply_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: OptimizerState) -> None:
    """Load name-keyed optimizer state into `optimizer` (plain or DDP-wrapped models)."""
    index = {name: i for i, name in enumerate(_param_names(getattr(model, "module", model)))}
    current = optimizer.state_dict()
    optimizer.load_state_dict(
        {"state": {index[n]: v for n, v in state.items()}, "param_groups": current["param_groups"]}
    )


def save_training_state(
    folder: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | OptimizerState,
    meta: dict[str, Any],
) -> Path:
    """Write model, optimizer, RNG and `meta` (JSON-serialisable) to `folder`, atomically.

    `optimizer` is an optimizer of `model`'s parameters, or its state already keyed by parameter
    name (what an FSDP run gathers with `proxy.training.fsdp.full_optimizer_state`).
    """
    folder = Path(folder)
    tmp, old = folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model = getattr(model, "module", model)
    save_model(model, str(tmp / "model.safetensors"))
    names = _param_names(model)
    by_name = optimizer if isinstance(optimizer, dict) else optimizer_state_by_name(model, optimizer)
    flat: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for name, state in by_name.items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                flat[f"{name}/{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{name}/{key}"] = value
    save_file(flat, str(tmp / "optimizer.safetensors"))
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    save_file(rng, str(tmp / "rng.safetensors"))
    payload = dict(meta, param_names=names, optimizer_scalars=scalars)
    (tmp / TRAINER_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def find_training_state(folder: str | os.PathLike) -> Path | None:
    """The complete state folder at `folder` (or its `.old` twin after a kill mid-swap), else None."""
    folder = Path(folder)
    for cand in (folder, folder.with_name(folder.name + ".old")):
        if (cand / TRAINER_FILE).exists():
            return cand
    return None


def read_training_meta(folder: str | os.PathLike) -> dict[str, Any]:
    """The trainer.json of a state folder. Raises TrainingStateError when missing."""
    path = Path(folder) / TRAINER_FILE
    if not path.exists():
        raise TrainingStateError(f"{path}: no training state here")
    return json.loads(path.read_text())


def load_training_state(folder: str | os.PathLike, model: torch.nn.Module) -> dict[str, Any]:
    """Restore the model's weights and the RNG in place from `folder`; return its trainer.json meta.

    The optimizer is restored once it exists (after FSDP sharding, if any) from
    `read_optimizer_state`. Raises TrainingStateError when the saved parameter names differ from
    the model's.
    """
    folder = Path(folder)
    meta = read_training_meta(folder)
    model = getattr(model, "module", model)
    names = _param_names(model)
    if meta["param_names"] != names:
        diff = next(
            (f"{a!r} vs {b!r}" for a, b in zip(meta["param_names"], names) if a != b),
            f"{len(meta['param_names'])} vs {len(names)} parameters",
        )
        raise TrainingStateError(f"{folder}: saved parameters do not match the model ({diff})")
    load_model(model, str(folder / "model.safetensors"), strict=True)
    rng = load_file(str(folder / "rng.safetensors"))
    torch.set_rng_state(rng["cpu"])
    cuda = [rng[k] for k in sorted(k for k in rng if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    return meta


def read_optimizer_state(folder: str | os.PathLike, device: torch.device | str = "cpu") -> OptimizerState:
    """The saved optimizer state keyed by parameter name (`step` kept on CPU, as AdamW keeps it)."""
    folder = Path(folder)
    meta = read_training_meta(folder)
    flat = load_file(str(folder / "optimizer.safetensors"), device=str(device))
    state: OptimizerState = {}
    for key, value in list(flat.items()) + list(meta["optimizer_scalars"].items()):
        pname, skey = key.rsplit("/", 1)
        if skey == "step" and isinstance(value, torch.Tensor):
            value = value.cpu()  # AdamW keeps `step` on CPU unless capturable/fused
        state.setdefault(pname, {})[skey] = value
    return state
