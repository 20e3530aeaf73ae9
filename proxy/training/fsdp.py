"""FSDP for models that do not fit one device: torch's `fully_shard` (FSDP2) around the training loop.

`proxy.training.loop.train_loop(..., config.fsdp=True)` under `torchrun` keeps the caller's model
as the full, unsharded copy (on CPU) and trains a sharded deep copy: each decoder block (the
model's `_no_split_modules` classes) and then the root are wrapped with `fully_shard`, which moves
each rank's shard to the device one block at a time, so the full model never sits on a device.
Whenever a full view is needed (a budget checkpoint, the training state, the end of the run) the
ranks gather the full weights and optimizer state onto rank 0's CPU; the training-state files are
the same as a DDP or single-process run's, so a run can move between DDP and FSDP on resume.
Every function here except `shard_model` is a collective: all ranks call it.
"""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist

from proxy.training.state import OptimizerState


def shard_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """A deep copy of `model` sharded over every rank (decoder blocks first, then the root)."""
    # torch's FSDP and distributed-checkpoint modules are imported in the functions: only FSDP runs load them
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    work = copy.deepcopy(model)
    blocks = set(getattr(work, "_no_split_modules", None) or ())
    for module in work.modules():
        if type(module).__name__ in blocks:
            fully_shard(module, mesh=mesh)
    fully_shard(work, mesh=mesh)
    work.train(model.training)
    return work


def _full():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def gather_into(work: torch.nn.Module, model: torch.nn.Module) -> None:
    """Copy the sharded `work`'s full weights into `model` on rank 0 (other ranks' `model` is untouched)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    full = get_model_state_dict(work, options=_full())  # rank 0 gets the tensors, the others {}
    if dist.get_rank() == 0:
        missing, unexpected = model.load_state_dict(full, strict=False)
        tied = {name for name, p in model.named_parameters(remove_duplicate=False)} - {
            name for name, _ in model.named_parameters()
        }
        if unexpected or set(missing) - tied:
            raise RuntimeError(f"FSDP gather: missing {sorted(set(missing) - tied)}, unexpected {sorted(unexpected)}")


def full_optimizer_state(work: torch.nn.Module, optimizer: torch.optim.Optimizer) -> OptimizerState:
    """The sharded optimizer's full state keyed by parameter name, on rank 0 (empty elsewhere)."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return dict(get_optimizer_state_dict(work, optimizer, options=_full()).get("state", {}))


def restore_optimizer_state(work: torch.nn.Module, optimizer: torch.optim.Optimizer, state: OptimizerState) -> None:
    """Load a full, name-keyed optimizer state (every rank passes the same) into the sharded optimizer."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    names = {id(p): name for name, p in work.named_parameters()}
    groups = [
        dict({k: v for k, v in g.items() if k != "params"}, params=[names[id(p)] for p in g["params"]])
        for g in optimizer.param_groups
    ]
    set_optimizer_state_dict(
        work, optimizer, {"state": state, "param_groups": groups}, options=StateDictOptions(full_state_dict=True)
    )


def full_norm(value: torch.Tensor) -> torch.Tensor:
    """A gradient norm as a plain tensor (clip_grad_norm_ returns a DTensor for sharded parameters)."""
    return value.full_tensor() if hasattr(value, "full_tensor") else value
