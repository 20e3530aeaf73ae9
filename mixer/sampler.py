"""The training sampler: a deterministic, resumable torch IterableDataset of packed sequences from a Plan.

The global stream has ``N = target_tokens // seq_len`` slots. Source ``s`` fills ``n_s`` of them
(its allotted tokens in sequences, largest-remainder rounded so the ``n_s`` sum to ``N``), in the
order of the slot schedule (``mixer.slot_schedule``): after any prefix every source is within one
sequence of its share, and the per-source counts at any slot are a closed form plus a replay of at
most one block (32,768 slots for the 22T plan: about 0.1 s), so that is what every resume
below costs, at any position. The ``k``-th sequence of source ``s`` is tokens ``[k L, (k+1) L)`` of that source's
stream (``mixer.stream``: seeded document order per epoch, EOS-joined), so a document cut at a
sequence end continues in the source's next sequence. Rank ``r`` of ``world_size`` takes slots
``origin + r, origin + r + world_size, ...`` (``origin`` is 0 until an elastic resume, below);
DataLoader workers split a rank's slots the same way, and a DataLoader that reads workers
round-robin (the default) yields the rank's slots in order.

State (``state_dict``, documented key by key in ``Sampler``) is O(sources): the position, the next
schedule slot and the per-source counts at that slot; resuming seeks each source's stream
arithmetically, never replaying data. The live state is exact when the training loop iterates in its
own process. With DataLoader workers, count the sequences consumed and restore ``{"position": n}``
before building the loader: each worker seeks the schedule to its own first slot.
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
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from corpus.errors import DemixError, UsageError
from mixer.plan import Plan
from mixer.resolve import largest_remainder
from mixer.slot_schedule import Schedule
from mixer.stream import SourceStream

STATE_VERSION = 3
# Version 2 states hold counts of the previous schedule (one EDF run over the whole stream); they
# resume by position, with the counts recomputed: at most one sequence per source differs.


class SamplerError(DemixError, ValueError):
    """A plan the sampler cannot stream, or a state that does not belong to this sampler; names the field."""


class SamplerSizeError(SamplerError, UsageError):
    """A sequence length the plan cannot fill even once (a usage error: pick a smaller --seq-len or a larger plan)."""


class Sampler(IterableDataset):
    """Packed sequences (LongTensor of shape (seq_len,)) of a plan, deterministic for (plan, seed).

    ``verify=True`` checks each shard's sha256 against the plan when it is first opened;
    ``prefetch`` is the number of background reader threads (0 reads synchronously).
    Raises SamplerError for plans without eos_id or shards, or too small for one sequence.

    ``state_dict()`` returns, for rank 1 of 2 after 1,200 sequences::

        {
            "version": 3,
            "plan_id": "5f0c2a9e41d7b3c8",
            "seed": 0,
            "seq_len": 2048,
            "rank": 1,
            "world_size": 2,
            "origin": 0,
            "position": 1200,
            "consumed": 2400,
            "slot": 2400,
            "counts": {"web": 1320, "code": 720, "math": 360}
        }

    - ``version``: layout of this dict (3). A version-2 state resumes by position; its counts, of
      the previous schedule, are recomputed (at most one sequence per source differs).
    - ``plan_id``, ``seed``, ``seq_len``: the stream this state belongs to; a mismatch is refused.
    - ``rank``, ``world_size``: who saved it. Another rank or world size resumes elastically.
    - ``origin``: first global slot of this sampler's share (0 until an elastic resume moves it).
    - ``position``: sequences this sampler has yielded since ``origin``; the only key
      ``load_state_dict`` needs (``{"position": n}``), the rest is seeked from it.
    - ``consumed``: global slot that all ranks have reached when they advance in lockstep,
      ``origin + position * world_size`` (at most the stream length); an elastic resume starts there.
    - ``slot``: the global schedule slot after the last one this iterator stepped (before any
      iteration: this sampler's next slot, ``origin + rank + position * world_size``).
    - ``counts``: per source, every plan source by name, its sequences in the slots ``[0, slot)``;
      they sum to ``slot``, and let a resume skip even the schedule's one-block replay.
    """

    def __init__(
        self,
        plan: Plan | str | os.PathLike,
        seq_len: int | None = None,
        seed: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        *,
        verify: bool = False,
        prefetch: int = 2,
    ):
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
        if self.seq_len < 1:
            raise SamplerSizeError(f"seq_len: {self.seq_len} is not a positive number of tokens")
        self.num_sequences = self.plan.target_tokens // self.seq_len
        if self.num_sequences < 1:  # an empty stream would train on nothing and say nothing
            raise SamplerSizeError(
                f"plan {self.plan.plan_id}: target_tokens {self.plan.target_tokens:,} is less than one "
                f"sequence of seq_len {self.seq_len:,}; resolve at least {self.seq_len:,} tokens"
            )
        self.sequence_counts = largest_remainder(self.num_sequences, [s.allotted_tokens for s in self.plan.sources])
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
        return [
            SourceStream(
                s.source,
                s.shards,
                self.plan.corpus_root,
                self.seed,
                self.plan.eos_id,
                verify=self.verify,
                executor=executor,
            )
            if n
            else None
            for s, n in zip(self.plan.sources, self.sequence_counts)
        ]

    # -- iteration ------------------------------------------------------------------------------
    def items(self) -> Iterator[tuple[int, str, int, torch.Tensor]]:
        """Yield ``(global slot, source, k, sequence)`` for this iterator's slots; ``k`` is the source's index."""
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        state, self._resume = self._resume, None
        q0 = int(state["position"]) if state is not None else 0
        stride = self.world_size * n_workers
        origin = self._origin
        first = min(origin + self.rank + (q0 + worker) * self.world_size, self.num_sequences)
        if state is not None and "counts" in state and int(state["slot"]) <= first:
            # the state's counts: step the schedule from there (at most stride slots)
            slot0, counts0 = int(state["slot"]), [int(state["counts"][n]) for n in self.source_names]
        else:  # seek: closed form plus at most one block of the schedule
            slot0, counts0 = first, self.schedule.counts_at(first)
        self._position = q0
        L = self.seq_len
        executor = ThreadPoolExecutor(self.prefetch, thread_name_prefix="mixer-prefetch") if self.prefetch else None
        try:
            streams = self.streams(executor)
            limits = [n * L for n in self.sequence_counts]
            slots = self.schedule.iter_slots(slot0, counts0)
            self._counts = counts = list(counts0)
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
        if self._counts is not None:
            counts, slot = self._counts, self._slot
        else:  # not iterated since construction or a position-only load: seek the counts at the next slot
            slot = min(self.num_sequences, self._origin + self.rank + self._position * self.world_size)
            counts = self.schedule.counts_at(slot)
        consumed = min(self.num_sequences, self._origin + self._position * self.world_size)
        return {
            "version": STATE_VERSION,
            "plan_id": self.plan.plan_id,
            "seed": self.seed,
            "seq_len": self.seq_len,
            "rank": self.rank,
            "world_size": self.world_size,
            "origin": self._origin,
            "position": self._position,
            "consumed": consumed,
            "slot": slot,
            "counts": dict(zip(self.source_names, (int(c) for c in counts))),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Make the next iteration continue right after ``state['position']`` sequences, bit-identically.

        A state without ``counts`` seeks the schedule (closed form, <= one block). A state saved under another
        world_size or rank resumes elastically from its ``consumed`` slot (module docstring). Raises
        SamplerError naming the field that does not fit (plan_id, seed, seq_len, position, counts).
        """
        if not isinstance(state, dict) or "position" not in state:
            raise SamplerError(f"state: expected a dict with 'position', got {state!r}")
        version = state.get("version", STATE_VERSION)
        if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= STATE_VERSION:
            raise SamplerError(f"state: version: {version!r} is not a sampler state version (1..{STATE_VERSION})")
        if version < STATE_VERSION:  # counts of the previous schedule (above)
            state = {k: v for k, v in state.items() if k not in ("counts", "slot")}
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
                raise SamplerError(
                    f"state: counts: expected one count per plan source ({', '.join(self.source_names)})"
                )
            if any(isinstance(c, bool) or not isinstance(c, int) for c in counts.values()):
                raise SamplerError(f"state: counts: expected integers, got {counts!r}")
            if sum(counts.values()) != state.get("slot"):
                raise SamplerError(f"state: counts: they sum to {sum(counts.values())}, not slot {state.get('slot')!r}")
            try:
                self.schedule.check_state(state["slot"], [counts[n] for n in self.source_names], self.source_names)
            except ValueError as e:
                raise SamplerError(f"state: counts: {e}") from None
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
