"""The deterministic low-discrepancy schedule that decides which source fills each slot of the stream.

Source ``s`` must fill ``n_s`` of the ``N = sum(n)`` slots. Its ``j``-th sequence (0-based) is a
unit job released at slot ``floor(j N / n_s)`` with deadline ``ceil((j + 1) N / n_s)``; each slot
runs the released job with the earliest deadline (ties to the lower source index). This is
proportionate-fair (Pfair) scheduling on one processor at full utilisation, where earliest-deadline
-first meets every window, so after any prefix of ``t`` slots every source's count ``c_s`` satisfies
``|c_s - t n_s / N| < 1``: the mixture holds at every step, not only on average.

The state of the schedule at slot ``t`` is the vector of per-source counts: O(sources). Any slot can
be resumed from (t, counts) without replaying the stream; ``counts_at`` replays only the schedule
(about half a million slots per second here) for states that carry a position alone.
"""
from __future__ import annotations

import heapq
from typing import Iterator, Sequence


class Schedule:
    """EDF-Pfair interleaving of sources with exact integer sequence counts ``n`` (one per source)."""

    def __init__(self, counts: Sequence[int]):
        if any(c < 0 for c in counts):
            raise ValueError(f"sequence counts must be >= 0, got {list(counts)!r}")
        self.n = [int(c) for c in counts]
        self.total = sum(self.n)

    def window(self, s: int, j: int) -> tuple[int, int]:
        """(release slot, deadline slot) of source ``s``'s ``j``-th sequence (0-based), exact integers."""
        n_s, total = self.n[s], self.total
        return j * total // n_s, -((-(j + 1) * total) // n_s)

    def iter_slots(self, start: int = 0, counts: Sequence[int] | None = None) -> Iterator[tuple[int, int]]:
        """Yield ``(source, k)`` for slots ``start, start+1, ...``: ``k`` is that source's sequence index.

        ``counts`` are the per-source counts over slots ``[0, start)`` (zeros when start is 0);
        raises ValueError when they do not sum to ``start``.
        """
        counts = [0] * len(self.n) if counts is None else [int(c) for c in counts]
        if len(counts) != len(self.n) or sum(counts) != start or any(c > n for c, n in zip(counts, self.n)):
            raise ValueError(f"counts {counts!r} are not a schedule state at slot {start}")
        ready: list[tuple[int, int]] = []
        pending: list[tuple[int, int]] = []
        for s, n_s in enumerate(self.n):
            if counts[s] < n_s:
                release, deadline = self.window(s, counts[s])
                heapq.heappush(ready if release <= start else pending, (deadline, s) if release <= start else (release, s))
        for t in range(start, self.total):
            while pending and pending[0][0] <= t:
                _, s = heapq.heappop(pending)
                heapq.heappush(ready, (self.window(s, counts[s])[1], s))
            if not ready:  # cannot happen at full utilisation; guard against a corrupted state
                raise RuntimeError(f"schedule has no released sequence at slot {t} (counts {counts!r})")
            _, s = heapq.heappop(ready)
            k = counts[s]
            counts[s] = k + 1
            if k + 1 < self.n[s]:
                release, deadline = self.window(s, k + 1)
                if release <= t + 1:
                    heapq.heappush(ready, (deadline, s))
                else:
                    heapq.heappush(pending, (release, s))
            yield s, k

    def counts_at(self, slot: int) -> list[int]:
        """Per-source counts over slots ``[0, slot)`` by replaying the schedule (not the data): O(slot log S)."""
        counts = [0] * len(self.n)
        if slot <= 0:
            return counts
        for t, (s, _) in enumerate(self.iter_slots()):
            counts[s] += 1
            if t + 1 >= slot:
                break
        return counts
