"""Sampler: determinism, resume identity, prefix proportions, rank/worker slices, epochs, bounded state, seeks.

Every test here runs with the smallest schedule blocks (the longest window, ~40 slots for the tiny
plan), so resumes, elastic splits and DataLoader workers all cross many block boundaries.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter

import fsspec
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import mixer.slot_schedule
from manifests import list_shards
from mixer import Sampler, SamplerError, Schedule
from mixer.stream import StreamError


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    monkeypatch.setattr(mixer.slot_schedule, "BLOCK", 1)  # raised to the longest window by Schedule


def _all(sampler) -> list[torch.Tensor]:
    return list(sampler)


def test_shape_dtype_count_and_determinism(tiny_plan):
    a = _all(Sampler(tiny_plan))
    b = _all(Sampler(tiny_plan, prefetch=0))
    assert len(a) == Sampler(tiny_plan).num_sequences == tiny_plan.target_tokens // 32
    assert all(x.dtype == torch.long and x.shape == (32,) for x in a)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    c = _all(Sampler(tiny_plan, seed=8))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_resume_is_bit_identical_at_random_positions(tiny_plan):
    full = _all(Sampler(tiny_plan))
    rng = random.Random(0)
    for p in [0, 1, *rng.sample(range(2, len(full)), 3), len(full)]:
        s = Sampler(tiny_plan)
        it = iter(s)
        for _ in range(p):
            next(it)
        state = json.loads(json.dumps(s.state_dict()))
        assert state["position"] == p
        fresh = Sampler(tiny_plan)
        fresh.load_state_dict(state)
        rest = _all(fresh)
        assert len(rest) == len(full) - p
        assert all(torch.equal(x, y) for x, y in zip(rest, full[p:]))
    done = Sampler(tiny_plan)
    _all(done)
    finished = Sampler(tiny_plan)
    finished.load_state_dict(done.state_dict())
    assert _all(finished) == []
    # a state that carries only the position replays the schedule, not the data
    pos_only = Sampler(tiny_plan)
    pos_only.load_state_dict({"position": 777})
    assert all(torch.equal(x, y) for x, y in zip(_all(pos_only), full[777:]))


def test_state_is_small_and_checked(tiny_plan):
    s = Sampler(tiny_plan)
    it = iter(s)
    for _ in range(1000):
        next(it)
    state = s.state_dict()
    assert set(state["counts"]) == {src.source for src in tiny_plan.sources}
    assert len(json.dumps(state)) < 400  # O(sources), whatever the position
    other = Sampler(tiny_plan, seed=1)
    with pytest.raises(ValueError, match="seed"):
        other.load_state_dict(state)


def test_prefix_proportions_within_one_sequence(tiny_plan):
    s = Sampler(tiny_plan)
    shares, counts = s.shares, [0] * len(s.shares)
    worst = 0.0
    for n, (src, _) in enumerate(s.schedule.iter_slots(), start=1):
        counts[src] += 1
        worst = max(worst, max(abs(c - sh * n) for c, sh in zip(counts, shares)))
    assert worst < 1
    assert counts == s.sequence_counts
    for src, n_seq in zip(tiny_plan.sources, s.sequence_counts):
        assert abs(n_seq * 32 - src.allotted_tokens) <= 32  # each source gives its tokens, +- one sequence


@pytest.mark.parametrize("seed", range(6))
def test_schedule_discrepancy_below_one_for_skewed_mixtures(seed):
    rng = random.Random(seed)
    n = [rng.randint(300, 900)] + [rng.randint(1, 40) for _ in range(rng.randint(3, 30))]
    sch, counts, total = Schedule(n), [0] * len(n), sum(n)
    for t, (s, k) in enumerate(sch.iter_slots(), start=1):
        assert k == counts[s]
        counts[s] += 1
        assert max(abs(c - t * m / total) for c, m in zip(counts, n)) < 1
    assert counts == n
    mid = total // 2
    resumed = list(sch.iter_slots(mid, sch.counts_at(mid)))
    assert resumed == list(sch.iter_slots())[mid:]


def test_ranks_are_disjoint_and_cover_the_stream(tiny_plan):
    full = list(Sampler(tiny_plan).items())
    ws = 3
    seen = {}
    for r in range(ws):
        for slot, src, k, seq in Sampler(tiny_plan, rank=r, world_size=ws).items():
            assert slot % ws == r and slot not in seen
            seen[slot] = seq
    assert sorted(seen) == list(range(len(full)))
    assert all(torch.equal(seen[slot], seq) for slot, _, _, seq in full)


def test_dataloader_workers_reproduce_the_rank_stream(tiny_plan):
    rank_stream = _all(Sampler(tiny_plan, rank=1, world_size=2))
    loader = DataLoader(Sampler(tiny_plan, rank=1, world_size=2), batch_size=None, num_workers=2)
    got = list(loader)
    assert len(got) == len(rank_stream)
    assert all(torch.equal(x, y) for x, y in zip(got, rank_stream))
    resumed = Sampler(tiny_plan, rank=1, world_size=2)
    resumed.load_state_dict({"position": 51})  # workers pick the resume point up from the pickled dataset
    got = list(DataLoader(resumed, batch_size=None, num_workers=2))
    assert all(torch.equal(x, y) for x, y in zip(got, rank_stream[51:], strict=True))


def _docs(shards_root, source):
    import pyarrow.parquet as pq

    rows = list_shards(shards_root, "train", [source])
    return Counter(
        tuple(t) for r in rows for t in pq.read_table(r["abs_path"], columns=["tokens"]).column("tokens").to_pylist()
    )


def test_epoch_accounting_and_fresh_order_each_epoch(epoch_plan, tiny_corpus):
    s = Sampler(epoch_plan)
    src = next(x for x in epoch_plan.sources if x.source == "math_a")
    idx = s.source_names.index("math_a")
    seqs = sorted((k, seq) for _, name, k, seq in s.items() if name == "math_a")
    assert [k for k, _ in seqs] == list(range(s.sequence_counts[idx]))
    stream = torch.cat([seq for _, seq in seqs]).numpy()
    assert len(stream) == s.sequence_counts[idx] * 64 and abs(len(stream) - src.allotted_tokens) <= 64
    cuts = np.flatnonzero(stream == epoch_plan.eos_id)
    docs = [tuple(x.tolist()) for x in np.split(stream, cuts + 1)[:-1]]
    docs = [d[:-1] for d in docs]  # drop the EOS
    shard_docs = _docs(tiny_corpus, "math_a")
    n_docs = sum(shard_docs.values())
    epochs = len(stream) / (src.available_tokens + n_docs)  # the stream counts one EOS per document
    assert 2 < epochs < 3
    seen = Counter(docs[1:])  # the first document is whole; a cut one can only be the last
    for doc, times in shard_docs.items():
        got = seen[doc] + (docs[0] == doc)
        assert int(epochs) * times <= got <= (int(epochs) + 1) * times
    first, second = docs[:n_docs], docs[n_docs : 2 * n_docs]
    assert Counter(first) == Counter(second) == shard_docs  # each epoch is every document once...
    assert first != second  # ...in a fresh order


def test_verify_checks_sha256_and_validation_is_refused(tiny_plan):
    src = tiny_plan.sources[0]
    bad_shards = tuple({**sh, "sha256": "0" * 64} for sh in src.shards)
    bad = dataclasses.replace(tiny_plan, sources=(dataclasses.replace(src, shards=bad_shards),) + tiny_plan.sources[1:])
    assert len(_all(Sampler(bad))) > 0  # lazily: no check unless asked
    with pytest.raises(StreamError, match="sha256"):
        _all(Sampler(bad, verify=True))
    val = ({**src.shards[0], "path": "validation/" + src.shards[0]["path"].split("/", 1)[1]},)
    sneaky = dataclasses.replace(tiny_plan, sources=(dataclasses.replace(src, shards=val),) + tiny_plan.sources[1:])
    with pytest.raises(StreamError, match="validation"):
        _all(Sampler(sneaky))


def test_rank_resume_continues_its_slice(tiny_plan):
    full = _all(Sampler(tiny_plan, rank=2, world_size=3))
    s = Sampler(tiny_plan, rank=2, world_size=3)
    it = iter(s)
    for _ in range(101):
        next(it)
    state = json.loads(json.dumps(s.state_dict()))
    fresh = Sampler(tiny_plan, rank=2, world_size=3)
    fresh.load_state_dict(state)
    assert all(torch.equal(x, y) for x, y in zip(_all(fresh), full[101:], strict=True))


def _lockstep_states(plan, world_size, steps):
    """Advance every rank of `world_size` by `steps` sequences (as DDP does); their states."""
    states = []
    for r in range(world_size):
        s = Sampler(plan, rank=r, world_size=world_size)
        it = s.items()
        for _ in range(steps):
            next(it)
        states.append(json.loads(json.dumps(s.state_dict())))
    return states


@pytest.mark.parametrize("old,new,steps", [(2, 3, 57), (1, 2, 200), (3, 1, 41), (3, 3, 10)])
def test_elastic_resume_splits_the_rest_of_the_stream(tiny_plan, old, new, steps):
    full = list(Sampler(tiny_plan).items())
    states = _lockstep_states(tiny_plan, old, steps)
    consumed = steps * old
    assert {st["consumed"] for st in states} == {consumed}
    seen = {}
    for r in range(new):
        s = Sampler(tiny_plan, rank=r, world_size=new)
        s.load_state_dict(states[(r + 1) % old])  # any rank's state will do: another rank's is elastic too
        assert len(s) == len(range(consumed + r, len(full), new))
        for slot, _, _, seq in s.items():
            assert (slot - consumed) % new == r and slot not in seen
            seen[slot] = seq
    # the new ranks cover exactly the slots the old ones had not read, with the same sequences
    assert sorted(seen) == list(range(consumed, len(full)))
    assert all(torch.equal(seen[slot], seq) for slot, _, _, seq in full[consumed:])


def test_elastic_state_resumes_again_bit_identically(tiny_plan):
    moved = Sampler(tiny_plan, rank=1, world_size=2)
    moved.load_state_dict(_lockstep_states(tiny_plan, 3, 30)[0])
    rest = list(moved.items())
    s = Sampler(tiny_plan, rank=1, world_size=2)
    s.load_state_dict(_lockstep_states(tiny_plan, 3, 30)[2])
    it = s.items()
    for _ in range(25):
        next(it)
    state = json.loads(json.dumps(s.state_dict()))
    assert state["origin"] == 90 and state["position"] == 25 and state["consumed"] == 90 + 25 * 2
    again = Sampler(tiny_plan, rank=1, world_size=2)
    again.load_state_dict(state)  # same rank and world: an ordinary, origin-keeping resume
    assert [slot for slot, *_ in again.items()] == [slot for slot, *_ in rest[25:]]
    with pytest.raises(ValueError, match="consumed"):
        Sampler(tiny_plan, world_size=2).load_state_dict({**state, "rank": 0, "world_size": 5, "consumed": -1})


def test_reads_shards_through_fsspec_urls(tiny_plan):
    fs = fsspec.filesystem("memory")
    for src in tiny_plan.sources:
        for sh in src.shards:
            with open(f"{tiny_plan.corpus_root}/{sh['path']}", "rb") as f:
                fs.pipe(f"/corpus-copy/{sh['path']}", f.read())
    remote = dataclasses.replace(tiny_plan, corpus_root="memory://corpus-copy")
    try:
        got = _all(Sampler(remote, verify=True))
    finally:
        fs.rm("/corpus-copy", recursive=True)
    assert all(torch.equal(x, y) for x, y in zip(got, _all(Sampler(tiny_plan)), strict=True))


def test_small_blocks_are_in_use(tiny_plan):
    s = Sampler(tiny_plan)
    assert s.num_sequences // s.schedule.block >= 10


def test_a_seek_steps_at_most_one_block_of_the_schedule(tiny_plan, monkeypatch):
    full = list(Sampler(tiny_plan).items())
    stepped = []
    run_block = Schedule._run_block

    def counting(self, start, end, counts, limit):
        for x in run_block(self, start, end, counts, limit):
            stepped.append(start)
            yield x

    monkeypatch.setattr(Schedule, "_run_block", counting)
    for p in (1777, 1001, len(full) - 1):
        s = Sampler(tiny_plan)
        s.load_state_dict({"position": p})  # what DataLoader workers and `mixer sample --start` give
        stepped.clear()
        first = next(s.items())
        assert len(stepped) <= s.schedule.block  # not p slots: no replay from slot 0
        assert first[:3] == full[p][:3] and torch.equal(first[3], full[p][3])
        state = s.state_dict()
        assert state["slot"] == p + 1 and sum(state["counts"].values()) == p + 1
    # elastic: another world size near the end of the stream
    st = {**Sampler(tiny_plan, world_size=4).state_dict(), "position": 490, "consumed": 1960}
    s = Sampler(tiny_plan, rank=1, world_size=3)
    stepped.clear()
    s.load_state_dict(st)
    got = list(s.items())
    assert len(stepped) <= s.schedule.block + len(full) - 1960
    assert [x[:3] for x in got] == [x[:3] for x in full[1961::3]]


def test_a_plan_too_small_for_one_sequence_is_refused(tiny_plan):
    with pytest.raises(
        SamplerError,
        match=rf"plan {tiny_plan.plan_id}: target_tokens 64,000 is less than one "
        r"sequence of seq_len 100,000",
    ):
        Sampler(tiny_plan, seq_len=100_000)
    small = dataclasses.replace(tiny_plan, target_tokens=31)
    with pytest.raises(SamplerError, match="target_tokens 31 is less than one sequence of seq_len 32"):
        Sampler(small)


def test_a_version_2_state_resumes_by_position(tiny_plan):
    full = _all(Sampler(tiny_plan))
    s = Sampler(tiny_plan)
    it = iter(s)
    for _ in range(600):
        next(it)
    state = s.state_dict()
    old = {**state, "version": 2, "counts": {n: 0 for n in state["counts"]}, "slot": 0}  # the old schedule's
    fresh = Sampler(tiny_plan)
    fresh.load_state_dict(old)
    assert all(torch.equal(x, y) for x, y in zip(_all(fresh), full[600:], strict=True))
    a, b = s.source_names[:2]
    moved = {**state["counts"], a: state["counts"][a] + 5, b: state["counts"][b] - 5}  # same sum, wrong counts
    for bad, field in (({**state, "version": 9}, "version"), ({**state, "counts": moved}, "outside")):
        with pytest.raises(SamplerError, match=field):
            Sampler(tiny_plan).load_state_dict(bad)


def test_docstring_state_block_is_the_state_layout(tiny_plan):
    """The Sampler docstring's literal JSON block documents exactly the keys state_dict() writes, in order."""
    doc = Sampler.__doc__
    example, _ = json.JSONDecoder().raw_decode(doc, doc.index("{", doc.index("state_dict()")))
    sampler = Sampler(tiny_plan, rank=1, world_size=2, prefetch=0)
    it = iter(sampler)
    for _ in range(30):
        next(it)
    state = sampler.state_dict()
    assert list(example) == list(state)
    assert [type(v) for v in example.values()] == [type(v) for v in state.values()]
    assert example["slot"] == example["consumed"] == example["position"] * example["world_size"]
    assert sum(example["counts"].values()) == example["slot"]  # the documented invariant holds in the example
    for key in example:
        assert f"``{key}``" in doc, f"{key} has no line of its own in the docstring"
