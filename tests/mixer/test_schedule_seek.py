"""Slot schedule: counts at any slot without a replay equal the replayed schedule; every prefix within one sequence."""

from __future__ import annotations

import random

import pytest

from mixer.slot_schedule import Schedule


def _random_plan(rng: random.Random) -> list[int]:
    kind = rng.choice(["few", "mixed", "skewed", "zeros"])
    if kind == "few":
        return [rng.randint(1, 3000) for _ in range(rng.randint(1, 2))]
    if kind == "skewed":  # one source dwarfs the rest (shares down to ~1e-4)
        return [rng.randint(20_000, 60_000)] + [rng.randint(1, 30) for _ in range(rng.randint(1, 6))]
    sizes = [(1, 9), (10, 200), (300, 1500)]
    n = [rng.randint(*rng.choice(sizes)) for _ in range(rng.randint(3, 40))]
    if kind == "zeros":
        n[rng.randrange(len(n))] = 0
    return n


def _check(
    n: list[int], block: int | None, probes: int = 25, rng: random.Random | None = None, seek: bool = True
) -> Schedule:
    """Replay the whole schedule: lag < 1 at every prefix, k is the source's count, and at probe slots
    (random ones and both sides of every kind of boundary) counts_at and a seek equal the replay."""
    sch = Schedule(n, block=block)
    total = sch.total
    rng = rng or random.Random(0)
    b = sch.block
    probe = {0, 1, total - 1, total, *(rng.randrange(total + 1) for _ in range(probes))}
    edges = range(1, total // b + 1)
    for k in rng.sample(edges, min(6, len(edges))):
        probe |= {x for x in (k * b - 1, k * b, k * b + 1) if 0 <= x <= total}
    probe = sorted(probe)
    order = list(sch.iter_slots())
    assert len(order) == total
    counts, at = [0] * len(n), {}
    for t in range(total + 1):
        if t in probe:
            at[t] = list(counts)
        if t == total:
            break
        s, k = order[t]
        assert k == counts[s]
        counts[s] += 1
        # every sequence inside its window is the same as |c_s - t n_s / N| < 1 for every source at every t
        release, deadline = sch.window(s, k)
        assert release <= t < deadline, f"source {s} sequence {k} at slot {t}, window [{release}, {deadline})"
    assert counts == n
    span = min(2 * b + 3, 3000)  # across the next boundary when blocks are small
    for m in probe:
        assert max(abs(c * total - m * x) for c, x in zip(at[m], n)) < total  # the lag, spelled out
        assert sch.counts_at(m) == at[m], f"counts_at({m})"
        if seek:
            got = [x for _, x in zip(range(span), sch.iter_slots(m))]  # a seek with no counts given
            assert got == order[m : m + span], f"stream seeked to {m}"
        assert [x for _, x in zip(range(5), sch.iter_slots(m, at[m]))] == order[m : m + 5]
    return sch


@pytest.mark.parametrize("seed", range(40))
def test_counts_at_equals_the_replayed_schedule_on_random_plans(seed):
    rng = random.Random(seed)
    n = _random_plan(rng)
    # the smallest block (the longest window) makes the most boundaries; the default one block here
    sch = _check(n, block=rng.choice([1, 1, 97]), rng=rng)
    assert sch.block >= max(-(-sch.total // m) for m in n if m)


def test_three_hundred_sources():
    rng = random.Random(300)
    n = [rng.randint(20, 120) for _ in range(300)]
    sch = _check(n, block=1, probes=10, rng=rng)
    assert sch.total // sch.block >= 10  # the test crosses many boundaries


def test_a_share_of_one_in_a_million():
    """Shares 1e-6 against 1: the slow source's window is the whole stream, a single block."""
    _check([1, 2, 999_997], block=None, probes=1, seek=False)


def test_skewed_plan_across_blocks():
    n = [7, 13, 200_000]  # shares 3.5e-5 and 6.5e-5: windows of ~29K slots, seven blocks
    sch = _check(n, block=1, probes=5)
    assert sch.total // sch.block >= 6


def test_counts_at_the_end_of_a_22t_sized_plan_are_a_closed_form():
    # 10.7 billion slots, as the 22T plan at seq_len 2048: a replay would take hours
    n = [2_863_719_466, 1_727_734_218, 939_215_518, 583_590_225, 4_609_517_591, 9_598_523, 8_789_959]
    sch = Schedule(n)
    total = sch.total
    for m in (total - 1, total - sch.block - 7, total // 2 + 12_345):
        counts = sch.counts_at(m)
        assert sum(counts) == m and all(abs(c * total - m * x) < total for c, x in zip(counts, n))
        nxt = sch.counts_at(m + 1)
        s, k = next(sch.iter_slots(m, counts))
        assert k == counts[s] and nxt == [c + (i == s) for i, c in enumerate(counts)]


def test_states_that_cannot_be_the_schedule_are_refused():
    sch = Schedule([5, 3, 2], block=1)
    good = sch.counts_at(4)
    with pytest.raises(ValueError, match="slot 4"):
        list(sch.iter_slots(4, [4, 0, 0]))  # sums to 4, but outside the block's bounds
    with pytest.raises(ValueError, match="not a schedule state"):
        sch.check_state(4, good[:2])
    with pytest.raises(ValueError, match="count 4 of source math"):  # math holds 1 at slot 5
        sch.check_state(4, [0, 0, 4], names=["web", "code", "math"])
    assert sch.check_state(4, good) == good
    with pytest.raises(ValueError, match=">= 0"):
        Schedule([3, -1])
