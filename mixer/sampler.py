"""The training sampler: a deterministic, resumable torch IterableDataset of packed sequences from a Plan.

The global stream has ``N = target_tokens // seq_len`` slots. Source ``s`` fills ``n_s`` of them
(its allotted tokens in sequences, largest-remainder rounded so the ``n_s`` sum to ``N``), in the
order of the EDF-Pfair schedule (``mixer.schedule``): after any prefix every source is within one
sequence of its share. The ``k``-th sequence of source ``s`` is tokens ``[k L, (k+1) L)`` of that
source's stream (``mixer.stream``: seeded document order per epoch, EOS-joined), so a document cut
at a sequence end continues in the source's next sequence. Rank ``r`` of ``world_size`` takes slots
``origin + r, origin + r + world_size, ...`` (``origin`` is 0 until an elastic resume, below);
DataLoader workers split a rank's slots the same way, and a DataLoader that reads workers
round-robin (the default) yields the rank's slots in order.

State (``state_dict``) is O(sources): the position, the next schedule slot and the per-source
counts at that slot; resuming seeks each source's stream arithmetically, never replaying data.
The live state is exact when the training loop iterates in its own process. With DataLoader
workers, count the sequences consumed and restore ``{"position": n}`` before building the loader:
each worker resumes from it (replaying the schedule only, about half a million slots per second here).
A state resumes under the same plan, seed and seq_len (other values are refused).

Elastic resume: a state saved by any rank under another world_size (or by another rank) resumes
at the global slot ``consumed = origin + position * world_size`` it records, which is where every
rank stands when ranks advance in lockstep (DDP does: one batch per rank per step). The loading
sampler sets ``origin = consumed`` and splits the remaining slots over its own world_size, so the
union of the new ranks' streams is exactly the rest of the single-rank stream: nothing is read
twice or skipped, and a global batch of the same size holds the same sequences as before.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from mixer.plan import Plan
from mixer.resolve import largest_remainder
from mixer.schedule import Schedule
from mixer.stream import SourceStream
from corpus.errors import DemixError

STATE_VERSION = 2


class SamplerError(DemixError, ValueError):
    """A plan the sampler cannot stream, or a state that does not belong to this sampler; names the field."""


class Sampler(IterableDataset):
    """Packed sequences (LongTensor of shape (seq_len,)) of a plan, deterministic for (plan, seed).

    ``verify=True`` checks each shard's sha256 against the plan when it is first opened;
    ``prefetch`` is the number of background reader threads (0 reads synchronously).
    Raises SamplerError for plans without eos_id or shards.
    """

    def __init__(self, plan: Plan | str | os.PathLike, seq_len: int | None = None, seed: int | None = None,
                 rank: int = 0, world_size: int = 1, *, verify: bool = False, prefetch: int = 2):
        super().__init__()
        self.plan = plan if isinstance(plan, Plan) else Plan.load(plan)
        self.seq_len = int(seq_len or self.plan.seq_len)
        self.seed = int(self.plan.seed if seed is None else seed)
        if not 0 <= rank < world_size:
            raise SamplerError(f"rank: {rank} is not in [0, world_size={world_size})")
        self.rank, self.world_size = int(rank), int(world_size)
        if self.plan.eos_id is None:
            raise SamplerError("plan: eos_id is null; resolve the mixture over a built corpus (mixer resolve --db)")
        self.verify, self.prefetch = verify, int(prefetch)
        self.source_names = [s.source for s in self.plan.sources]
        self.num_sequences = self.plan.target_tokens // self.seq_len
        self.sequence_counts = largest_remainder(self.num_sequences, [s.allotted_tokens for s in self.plan.sources]) \
            if self.num_sequences else [0] * len(self.plan.sources)
        for s, n in zip(self.plan.sources, self.sequence_counts):
            if n and not s.shards:
                raise SamplerError(f"plan: sources.{s.source}.shards: empty, but the source is allotted {n} sequences")
        self.schedule = Schedule(self.sequence_counts)
        self._resume: dict[str, Any] | None = None
        self._origin = 0  # first global slot of this sampler's share (moved by an elastic resume)
        self._position = 0
        self._slot = self.rank
        self._counts: list[int] | None = None

    @property
    def shares(self) -> list[float]:
        """Each source's realised share of the stream's sequences (n_s / N)."""
        return [n / self.num_sequences if self.num_sequences else 0.0 for n in self.sequence_counts]

    def __len__(self) -> int:
        return len(range(self._origin + self.rank, self.num_sequences, self.world_size))

    def streams(self, executor: ThreadPoolExecutor | None = None) -> list[SourceStream | None]:
        """A fresh SourceStream per plan source (None for sources given no sequences)."""
        return [SourceStream(s.source, s.shards, self.plan.corpus_root, self.seed, self.plan.eos_id,
                             verify=self.verify, executor=executor) if n else None
                for s, n in zip(self.plan.sources, self.sequence_counts)]

    # -- iteration ------------------------------------------------------------------------------
    def items(self) -> Iterator[tuple[int, str, int, torch.Tensor]]:
        """Yield ``(global slot, source, k, sequence)`` for this iterator's slots; ``k`` is the source's index."""
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        state, self._resume = self._resume, None
        if state is None:
            q0, slot0, counts0 = 0, 0, None
        else:
            q0, slot0 = int(state["position"]), int(state.get("slot", 0))
            counts0 = [int(state["counts"][n]) for n in self.source_names] if "counts" in state else None
            if counts0 is None:
                slot0 = 0
        stride = self.world_size * n_workers
        origin = self._origin
        first = origin + self.rank + (q0 + worker) * self.world_size
        self._position = q0
        L = self.seq_len
        executor = ThreadPoolExecutor(self.prefetch, thread_name_prefix="mixer-prefetch") if self.prefetch else None
        try:
            streams = self.streams(executor)
            limits = [n * L for n in self.sequence_counts]
            slots = self.schedule.iter_slots(slot0, counts0)
            self._counts = counts = list(counts0 or [0] * len(self.source_names))
            for slot, (s, k) in enumerate(slots, start=slot0):
                counts[s] += 1
                if slot < first or (slot - first) % stride:
                    continue
                tokens = streams[s].read(k * L, L, limits[s])
                self._position = (slot - origin - self.rank) // self.world_size + 1
                self._slot = slot + 1
                yield slot, self.source_names[s], k, torch.from_numpy(tokens.astype(np.int64))
            self._slot = self.num_sequences  # exhausted: the counts now cover every slot
        finally:
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)

    def __iter__(self) -> Iterator[torch.Tensor]:
        for _, _, _, seq in self.items():
            yield seq

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state: position (sequences yielded), next slot, per-source counts, identity.

        ``consumed`` is the global slot every rank has reached when all advanced in lockstep; it is
        what an elastic resume (another world_size or rank) continues from.
        """
        counts = self._counts if self._counts is not None else [0] * len(self.source_names)
        slot = self._slot if self._counts is not None else 0
        consumed = min(self.num_sequences, self._origin + self._position * self.world_size)
        return {
            "version": STATE_VERSION, "plan_id": self.plan.plan_id, "seed": self.seed, "seq_len": self.seq_len,
            "rank": self.rank, "world_size": self.world_size, "origin": self._origin, "position": self._position,
            "consumed": consumed, "slot": slot, "counts": dict(zip(self.source_names, (int(c) for c in counts))),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Make the next iteration continue right after ``state['position']`` sequences, bit-identically.

        A state without ``counts`` replays the schedule (not the data). A state saved under another
        world_size or rank resumes elastically from its ``consumed`` slot (module docstring). Raises
        SamplerError naming the field that does not fit (plan_id, seed, seq_len, position, counts).
        """
        if not isinstance(state, dict) or "position" not in state:
            raise SamplerError(f"state: expected a dict with 'position', got {state!r}")
        for key, mine in (("plan_id", self.plan.plan_id), ("seed", self.seed), ("seq_len", self.seq_len)):
            if key in state and state[key] != mine:
                raise SamplerError(f"state: {key}: {state[key]!r} does not match this sampler's {mine!r}")
        if state.get("world_size", self.world_size) != self.world_size or state.get("rank", self.rank) != self.rank:
            self._load_elastic(state)
            return
        origin = state.get("origin", self._origin)
        if isinstance(origin, bool) or not isinstance(origin, int) or not 0 <= origin <= self.num_sequences:
            raise SamplerError(f"state: origin: expected an integer in [0, {self.num_sequences}], got {origin!r}")
        self._origin = origin
        position = state["position"]
        if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position <= len(self):
            raise SamplerError(f"state: position: expected an integer in [0, {len(self)}], got {position!r}")
        if "counts" in state:
            counts = state["counts"]
            if not isinstance(counts, dict) or set(counts) != set(self.source_names):
                raise SamplerError(f"state: counts: expected one count per plan source ({', '.join(self.source_names)})")
            if sum(counts.values()) != state.get("slot"):
                raise SamplerError(f"state: counts: they sum to {sum(counts.values())}, not slot {state.get('slot')!r}")
        self._resume = dict(state)
        self._position = position
        self._slot = int(state.get("slot", 0))
        self._counts = [int(state["counts"][n]) for n in self.source_names] if "counts" in state else None

    def _load_elastic(self, state: dict[str, Any]) -> None:
        # Continue from the global slot the saving run reached; this sampler's share starts there.
        consumed = state.get("consumed")
        if consumed is None:  # a version-1 state: position counted from slot 0
            consumed = int(state["position"]) * int(state.get("world_size", 1))
        if isinstance(consumed, bool) or not isinstance(consumed, int) or not 0 <= consumed <= self.num_sequences:
            raise SamplerError(f"state: consumed: expected an integer in [0, {self.num_sequences}], got {consumed!r}")
        counts = self.schedule.counts_at(consumed)
        self._origin = consumed
        self._position = 0
        self._slot = consumed
        self._counts = counts
        self._resume = {"position": 0, "slot": consumed, "counts": dict(zip(self.source_names, counts))}
