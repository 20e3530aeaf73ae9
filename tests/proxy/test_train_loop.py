"""The training loop on synthetic data: learning, exact resume after a kill, DDP on 2 CPU processes."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from proxy.model import build_model, model_config
from proxy.training.loop import STATE_DIR, TrainConfig, train_loop
from proxy.training.lr_schedule import Schedule

VOCAB, SEQ = 64, 16


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads; one thread avoids spin-waiting on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class SyntheticStream:
    """A deterministic, resumable stream of (SEQ,) LongTensors; optionally dies after `fail_after` rows."""

    def __init__(
        self, seed: int = 0, rank: int = 0, world_size: int = 1, fail_after: int | None = None, repeat: bool = False
    ) -> None:
        self.seed, self.rank, self.world, self.fail_after, self.repeat = seed, rank, world_size, fail_after, repeat
        self.position = 0

        self.origin = 0  # global index this rank's share starts from (moved by an elastic resume)

    def state_dict(self) -> dict:
        return {
            "position": self.position,
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world,
            "origin": self.origin,
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("world_size", self.world) != self.world:  # elastic, as mixer.Sampler does it
            self.origin, self.position = state["origin"] + state["position"] * state["world_size"], 0
        else:
            self.origin, self.position = state.get("origin", 0), state["position"]

    def __iter__(self):
        while True:
            if self.fail_after is not None and self.position >= self.fail_after:
                raise RuntimeError("simulated kill")
            index = 0 if self.repeat else self.origin + self.position * self.world + self.rank
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
            start = torch.randint(0, VOCAB, (1,), generator=g)
            row = (start + torch.arange(SEQ) * 3) % VOCAB  # learnable: arithmetic progressions mod VOCAB
            self.position += 1
            yield row.long()


def tiny_model(seed: int = 0) -> torch.nn.Module:
    return build_model(model_config("tiny", VOCAB, 0), seed)


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_schedule_shapes():
    cos = Schedule(lr=1.0, total_steps=100, warmup_steps=10, kind="cosine", min_lr_ratio=0.2)
    assert cos(0) == pytest.approx(0.1) and cos(9) == pytest.approx(1.0)
    assert cos(99) == pytest.approx(0.2) and all(cos(i) >= cos(i + 1) for i in range(10, 99))
    wsd = Schedule(lr=1.0, total_steps=100, warmup_steps=5, kind="wsd", min_lr_ratio=0.1, decay_frac=0.2)
    assert wsd(50) == 1.0 and wsd(79) == 1.0 and wsd(99) == pytest.approx(0.1)


def test_steps_lower_loss_on_repeated_batch(tmp_path):
    cfg = TrainConfig(tokens=30 * 4 * SEQ, seq_len=SEQ, batch_size=4, lr=3e-3, warmup_frac=0.0, save_every=1000)
    model = tiny_model()
    x = next(iter(SyntheticStream(repeat=True))).unsqueeze(0)
    with torch.no_grad():
        before = float(model(input_ids=x, labels=x).loss)
    res = train_loop(model, SyntheticStream(repeat=True), cfg, tmp_path, progress=False)
    with torch.no_grad():
        after = float(model(input_ids=x, labels=x).loss)
    assert res.steps == 30 and res.tokens == 30 * 4 * SEQ
    assert after < 0.5 * before
    log = (tmp_path / "train_log.jsonl").read_text().splitlines()
    assert len(log) == 30


def test_kill_then_resume_equals_uninterrupted(tmp_path):
    cfg = TrainConfig(
        tokens=12 * 4 * SEQ, seq_len=SEQ, batch_size=4, grad_accum=2, lr=2e-3, save_every=5, checkpoints=(6 * 4 * SEQ,)
    )
    ref = tiny_model()
    train_loop(ref, SyntheticStream(), cfg, tmp_path / "ref", progress=False)

    killed = tiny_model()
    with pytest.raises(RuntimeError, match="simulated kill"):  # dies during step 8, after the step-5 state
        train_loop(killed, SyntheticStream(fail_after=7 * 4 + 2), cfg, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / STATE_DIR / "trainer.json").exists()
    exported: list[int] = []
    resumed = tiny_model(seed=123)  # different init: everything must come from the state
    res = train_loop(
        resumed,
        SyntheticStream(),
        cfg,
        tmp_path / "run",
        progress=False,
        export=lambda m, budget: exported.append(budget),
    )
    assert res.resumed_from_step == 5 and res.steps == 12
    assert exported == [6 * 4 * SEQ]  # the 6-step budget comes after the step-5 state: exported once
    a, b = weights(ref), weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [
        int(line.split('"step": ')[1].split(",")[0])
        for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()
    ]
    assert steps == list(range(1, 13))


def test_resume_refuses_changed_run(tmp_path):
    cfg = TrainConfig(tokens=4 * 2 * SEQ, seq_len=SEQ, batch_size=2, save_every=2)
    with pytest.raises(RuntimeError):
        train_loop(tiny_model(), SyntheticStream(fail_after=5), cfg, tmp_path, progress=False)
    other = TrainConfig(tokens=4 * 2 * SEQ, seq_len=SEQ, batch_size=2, save_every=2, lr=0.5)
    with pytest.raises(ValueError, match="lr: saved"):
        train_loop(tiny_model(), SyntheticStream(), other, tmp_path, progress=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _join_cpu_group(rank: int, world: int, port: int) -> None:
    """The torchrun environment for a spawned CPU rank (train_loop then initialises gloo), one thread."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    _join_cpu_group(rank, world, port)
    cfg = TrainConfig(tokens=6 * 2 * SEQ * world, seq_len=SEQ, batch_size=2, lr=2e-3, save_every=1000)
    model = tiny_model()
    res = train_loop(model, SyntheticStream(rank=rank, world_size=world), cfg, Path(out) / "run", progress=False)
    assert res.steps == 6
    save_file(
        {k: v.contiguous() for k, v in model.model.state_dict().items()}, str(Path(out) / f"rank{rank}.safetensors")
    )
    torch.distributed.destroy_process_group()


def test_ddp_two_cpu_processes_end_equal(tmp_path):
    port = _free_port()
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    a, b = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    init = tiny_model().model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], init[k]) for k in a)  # they trained, and stayed in sync


def _killed_ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    _join_cpu_group(rank, world, port)
    cfg = TrainConfig(tokens=8 * 4 * SEQ, seq_len=SEQ, batch_size=4 // world, lr=2e-3, save_every=3)
    try:  # both ranks die in step 5, after the step-3 state
        train_loop(
            tiny_model(),
            SyntheticStream(rank=rank, world_size=world, fail_after=4 * 4 // world + 1),
            cfg,
            Path(out) / "run",
            progress=False,
        )
    except RuntimeError as err:
        assert "simulated kill" in str(err)
    finally:
        torch.distributed.destroy_process_group()


def test_elastic_resume_on_another_world_size_keeps_the_global_batch(tmp_path, monkeypatch):
    cfg = TrainConfig(tokens=8 * 4 * SEQ, seq_len=SEQ, batch_size=4, lr=2e-3, save_every=3)
    ref = tiny_model()
    train_loop(ref, SyntheticStream(), cfg, tmp_path / "ref", progress=False)
    port = _free_port()
    mp.spawn(_killed_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    half = TrainConfig(tokens=8 * 4 * SEQ, seq_len=SEQ, batch_size=3, lr=2e-3, save_every=3)
    with pytest.raises(ValueError, match="elastic resume keeps the global batch"):
        train_loop(tiny_model(), SyntheticStream(), half, tmp_path / "run", progress=False)
    resumed = tiny_model(seed=5)
    res = train_loop(resumed, SyntheticStream(), cfg, tmp_path / "run", progress=False)  # 2 ranks x 2 -> 1 rank x 4
    assert res.resumed_from_step == 3 and res.steps == 8
    a, b = weights(ref), weights(resumed)
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)  # the same sequences in every step


def _fsdp_worker(rank: int, world: int, port: int, out: str, fail_after: int | None) -> None:
    _join_cpu_group(rank, world, port)
    cfg = TrainConfig(
        tokens=8 * 4 * SEQ,
        seq_len=SEQ,
        batch_size=2,
        grad_accum=2,
        lr=2e-3,
        save_every=3,
        checkpoints=(6 * 4 * SEQ,),
        fsdp=True,
    )
    model = tiny_model(seed=0 if fail_after else 9)  # the resumed run's init must not matter
    try:
        res = train_loop(
            model,
            SyntheticStream(rank=rank, world_size=world, fail_after=fail_after),
            cfg,
            Path(out) / "run",
            progress=False,
            export=lambda m, budget: save_file(
                {k: v.contiguous() for k, v in m.state_dict().items() if k != "lm_head.weight"},
                str(Path(out) / "budget.safetensors"),
            ),
        )
        assert res.steps == 8 and res.resumed_from_step == 3
        if rank == 0:
            save_file(
                {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"},
                str(Path(out) / "final.safetensors"),
            )
    except RuntimeError as err:
        assert "simulated kill" in str(err)
    finally:
        torch.distributed.destroy_process_group()


def test_fsdp_kill_resume_matches_single_process(tmp_path):
    cfg = TrainConfig(tokens=8 * 4 * SEQ, seq_len=SEQ, batch_size=4, lr=2e-3, save_every=100)
    ref = tiny_model()
    train_loop(ref, SyntheticStream(), cfg, tmp_path / "ref", progress=False)
    for fail_after in (4 * 2 + 1, None):  # killed in step 5 (after the step-3 state), then resumed
        port = _free_port()
        mp.spawn(_fsdp_worker, args=(2, port, str(tmp_path), fail_after), nprocs=2, join=True)
    assert (tmp_path / "run" / STATE_DIR / "trainer.json").exists()
    got, want = load_file(str(tmp_path / "final.safetensors")), weights(ref)
    assert got.keys() <= want.keys() and len(got) > 5
    assert all(torch.allclose(got[k], want[k], atol=1e-5) for k in got)  # sharded = whole, same sequences
    assert load_file(str(tmp_path / "budget.safetensors")).keys() == got.keys()
