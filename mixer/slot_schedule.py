"""The deterministic low-discrepancy schedule that decides which source fills each slot of the stream.

Source ``s`` must fill ``n_s`` of the ``N = sum(n)`` slots. Its ``j``-th sequence (0-based) is a
unit job with the Pfair window ``[floor(j N / n_s), ceil((j + 1) N / n_s))``. A schedule that runs
every job inside its window keeps every source's count ``c_s`` after any prefix of ``t`` slots within
one sequence of its share: ``|c_s - t n_s / N| < 1``, so ``c_s`` is ``floor(t n_s / N)`` or the ceiling.

Seeking without a replay. The stream is cut into blocks of ``K`` slots (``Schedule.block``). At a
block boundary ``b`` the counts are a closed form, ``boundary_counts(b)``: every source has
``floor(b n_s / N)``, and the ``r = b - sum floor(...)`` sources still owed a sequence get one more,
chosen by earliest deadline among those whose extra sequence keeps the prefix ``[0, b)`` feasible
(Hall's condition on the windows, checked over the last window length only). Inside a block the
slots run earliest-deadline-first over the block's own sequences. Why this keeps every window:

- The state at ``b`` is *reachable* (its sequences fit in ``[0, b)``) by the check, and
  *completable* (the rest fit in ``[b, N)``): the earliest-deadline choice is the greedy basis of
  the laminar matroid that the reachability bounds define, so its deadlines are, one by one, no
  later than those of any reachable choice, among them the EDF schedule's own state at ``b``,
  which is completable; completability bounds only how many chosen deadlines lie late.
- ``K`` is at least every window length, so from one boundary to the next every source has moved
  past the sequence it was owed: the boundary counts never decrease.
- Given two such boundary states, Hall's condition holds on every interval of the block, and EDF
  (optimal for unit jobs with release times on one machine) meets every window in it.

So ``counts_at(m)`` costs one closed form plus a replay of at most ``K`` slots, whatever ``m``, and a
state is O(sources): ``(t, counts)``. The order is not the one of a single EDF run over the whole
stream (that has no closed form); it is deterministic in ``n`` alone.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence

import numpy as np

# slots per block (at least): the most a seek replays, ~0.1 s at ~0.3M slots/s; a boundary costs ~0.5 ms
BLOCK = 1 << 15


class Schedule:
    """Block-wise EDF-Pfair interleaving of sources with exact integer sequence counts ``n`` (one per source).

    ``block`` overrides the slots per block (default BLOCK; raised to the longest window, which the proof needs).
    """

    def __init__(self, counts: Sequence[int], block: int | None = None):
        if any(c < 0 for c in counts):
            raise ValueError(f"sequence counts must be >= 0, got {list(counts)!r}")
        self.n = [int(c) for c in counts]
        self.total = sum(self.n)
        longest = max((-(-self.total // n_s) for n_s in self.n if n_s), default=1)
        # a shorter block could leave a slow source owed the same sequence at two boundaries, owing it
        # at the first and not at the second: counts would go down
        self.block = max(int(BLOCK if block is None else block), longest, 1)

    def window(self, s: int, j: int) -> tuple[int, int]:
        """(release slot, deadline slot) of source ``s``'s ``j``-th sequence (0-based), exact integers."""
        n_s, total = self.n[s], self.total
        return j * total // n_s, -((-(j + 1) * total) // n_s)

    # -- closed form at block boundaries --------------------------------------------------------
    def boundary_counts(self, t: int) -> list[int]:
        """Per-source counts over slots ``[0, t)`` of a reachable and completable state (module docstring).

        Arithmetic on the last window of slots before ``t`` (O(sources + longest window)); at a block
        boundary these are the schedule's own counts.
        """
        n, total = self.n, self.total
        if t <= 0:
            return [0] * len(n)
        if t >= total:
            return list(n)
        counts = [t * n_s // total for n_s in n]
        owed = t - sum(counts)  # sources that must already hold floor + 1
        if owed == 0:
            return counts
        # the candidates: sources whose share at t is fractional, owed their sequence j = floor
        cands = [s for s, n_s in enumerate(n) if n_s and (t * n_s) % total]
        release = {s: self.window(s, counts[s])[0] for s in cands}
        deadline = {s: self.window(s, counts[s])[1] for s in cands}
        x0 = min(release.values()) + 1  # for x at or before every candidate's release no bound can bind
        # need[i]: sequences j < counts[s] (all sources) released at or after slot x0 + i, which must
        # run in [x0 + i, t); slack[i] is what is left there for the candidates' extra sequences
        width = t - x0
        released = np.zeros(width + 1, dtype=np.int64)
        for s, n_s in enumerate(n):
            if n_s:
                for j in range(-((-x0 * n_s) // total), counts[s]):
                    released[j * total // n_s - x0] += 1
        need = np.cumsum(released[::-1])[::-1][:width]
        slack = (t - x0 - np.arange(width, dtype=np.int64)) - need
        chosen = 0
        for s in sorted(cands, key=lambda s: (deadline[s], s)):
            hi = release[s] - x0 + 1  # the bounds at x <= release[s] count this candidate
            if hi > 0:
                if slack[:hi].min() < 1:
                    continue  # its extra sequence would not fit before t
                slack[:hi] -= 1
            counts[s] += 1
            chosen += 1
            if chosen == owed:
                return counts
        raise RuntimeError(f"schedule {n!r}: no feasible state at slot {t}")  # the proof says never

    def block_end(self, t: int) -> int:
        """The first block boundary after slot ``t`` (the stream's end for the last block)."""
        return min(self.total, (t // self.block + 1) * self.block)

    # -- iteration ------------------------------------------------------------------------------
    def iter_slots(self, start: int = 0, counts: Sequence[int] | None = None) -> Iterator[tuple[int, int]]:
        """Yield ``(source, k)`` for slots ``start, start+1, ...``: ``k`` is that source's sequence index.

        ``counts`` are the per-source counts over slots ``[0, start)`` (``counts_at(start)`` when None);
        raises ValueError when they cannot be this schedule's state at ``start``.
        """
        counts = self.counts_at(start) if counts is None else self.check_state(start, counts)
        t = int(start)
        while t < self.total:
            end = self.block_end(t)
            limit = self.boundary_counts(end)
            yield from self._run_block(t, end, counts, limit)
            t = end

    def check_state(self, t: int, counts: Sequence[int], names: Sequence[str] | None = None) -> list[int]:
        """``counts`` as a list when they can be this schedule's counts over ``[0, t)``; else ValueError.

        Checks what costs no replay: one count per source, their sum, and the bounds of ``t``'s block;
        ``names`` (one per source) name the source in the message.
        """
        counts = [int(c) for c in counts]
        if not 0 <= t <= self.total or len(counts) != len(self.n) or sum(counts) != t:
            raise ValueError(f"counts {counts!r} are not a schedule state at slot {t}")
        lower = self.boundary_counts(t - t % self.block)
        upper = self.boundary_counts(self.block_end(t)) if t < self.total else list(self.n)
        bad = [s for s, (lo, c, hi) in enumerate(zip(lower, counts, upper)) if not lo <= c <= hi]
        if bad:
            s = bad[0]
            raise ValueError(
                f"count {counts[s]} of source {names[s] if names else s} at slot {t} is outside "
                f"[{lower[s]}, {upper[s]}], the counts of the block's ends"
            )
        return counts

    def _run_block(self, start: int, end: int, counts: list[int], limit: list[int]) -> Iterator[tuple[int, int]]:
        """EDF over slots ``[start, end)`` for sequences ``counts[s] .. limit[s] - 1``; updates ``counts``."""
        ready: list[tuple[int, int]] = []  # (deadline, source): released, earliest deadline first
        pending: list[tuple[int, int]] = []  # (release, source): not released yet
        for s in range(len(self.n)):
            if counts[s] < limit[s]:
                release, deadline = self.window(s, counts[s])
                heapq.heappush(ready, (deadline, s)) if release <= start else heapq.heappush(pending, (release, s))
        for t in range(start, end):
            while pending and pending[0][0] <= t:
                _, s = heapq.heappop(pending)
                heapq.heappush(ready, (self.window(s, counts[s])[1], s))
            if not ready:  # cannot happen between feasible boundary states; guards a corrupted state
                raise RuntimeError(f"schedule has no released sequence at slot {t} (counts {counts!r})")
            _, s = heapq.heappop(ready)
            k = counts[s]
            counts[s] = k + 1
            if k + 1 < limit[s]:
                release, deadline = self.window(s, k + 1)
                if release <= t + 1:
                    heapq.heappush(ready, (deadline, s))
                else:
                    heapq.heappush(pending, (release, s))
            yield s, k

    def counts_at(self, slot: int) -> list[int]:
        """Per-source counts over slots ``[0, slot)``: the closed form at the block start, then <= K slots of EDF."""
        slot = max(0, min(int(slot), self.total))
        b = slot - slot % self.block
        counts = self.boundary_counts(b)
        if slot > b:
            run = self._run_block(b, slot, counts, self.boundary_counts(self.block_end(b)))
            for _ in run:
                pass
        return counts
