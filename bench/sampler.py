"""Benchmark the mixer Sampler against a raw pyarrow read (upper bound) and HF `interleave_datasets`.

Writes its own corpus of random-token documents (4 sources, a few hundred MB at full size) in the
docs/design.md shard layout, resolves a source-level mixture over it, then measures sequences/s at
seq_len 2048 and the largest proportion error over stream prefixes (in sequences):
  ours     mixer.Sampler (seeded per-epoch shuffle, EOS packing per source, EDF-Pfair schedule)
  pyarrow  the same shards' tokens columns read in order and cut into sequences (no mixing at all)
  hf       datasets.interleave_datasets over streaming parquet datasets with the same probabilities,
           packed into sequences of 2048
Targets: ours >= 0.8x pyarrow, ours >= 3x hf.

Then seeks at 22T scale: the DeMix Corpora recipe resolved to 22T (no corpus needed for the schedule,
10.7 billion slots at seq_len 2048) and timed (target < 1 s each):
  seek     Schedule.counts_at(m) plus the first slot, for slots m near the end of the stream
  resume   a Sampler over that schedule (its sources read the bench shards, round robin) loading a
           state near the end: position-only on the same world size, and elastic (saved by rank 3 of 8,
           loaded by rank 1 of 6), timed to the first sequence in hand
  replay   what a replay of the schedule from slot 0 would cost there (its slots/s, projected)

    .venv/bin/python bench/sampler.py --quick
    .venv/bin/python bench/sampler.py --tokens 120M --out /tmp/bench-corpus --json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

# Run from a checkout without installing; drop bench/ itself from the path, where a module could
# shadow an installed module.
sys.path = [str(Path(__file__).resolve().parents[1])] + [
    p for p in sys.path[1:] if Path(p or ".").resolve() != Path(__file__).resolve().parent
]

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402

from corpus import parse_recipe, parse_tokens  # noqa: E402
from manifests import (  # noqa: E402
    SHARD_SCHEMA,
    open_manifest,
    read_shard_record,
    register_shards,
    register_sources,
    set_meta,
    shard_path,
)
from mixer import Mixture, Sampler, resolve_mixture, resolve_recipe  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARES = {"web": 0.45, "code": 0.25, "math": 0.2, "books": 0.1}
VOCAB, EOS, SEQ_LEN = 50_000, 0, 2048


def build_corpus(root: Path, total_tokens: int, seed: int = 0) -> Path:
    """Random-token documents (lognormal lengths, mean ~600) for each source, 2 shards each, plus a manifest."""
    if (root / "manifest.duckdb").exists():
        return root
    rng = np.random.default_rng(seed)
    recipe = parse_recipe(
        {
            "name": "bench",
            "tokenizer": {"train": {"vocab_size": 512}},
            "sources": [
                {"name": n, "domain": n, "tier": "high", "location": "builtin:math", "format": "builtin"}
                for n in SHARES
            ],
        },
        file="bench.yaml",
    )
    records = []
    for name in SHARES:
        per_source = total_tokens // len(SHARES)
        for seq in range(2):
            lengths = np.clip(rng.lognormal(6.0, 0.8, size=per_source // 2 // 550 + 1), 8, 16_000).astype(np.int64)
            offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
            values = rng.integers(1, VOCAB, size=int(offsets[-1]), dtype=np.uint32)
            n = len(lengths)
            table = pa.Table.from_arrays(
                [
                    pa.array([f"{name}/{seq}/{i}" for i in range(n)]),
                    pa.array([""] * n),
                    pa.ListArray.from_arrays(pa.array(offsets), pa.array(values)),
                    pa.array(lengths.astype(np.int32)),
                ],
                schema=SHARD_SCHEMA,
            ).replace_schema_metadata({"demix.source": name, "demix.split": "train"})
            path = shard_path(root, name, "train", 0, seq)
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path, compression="zstd", row_group_size=max(1, n // 4))
            records.append(read_shard_record(path, root))
    with open_manifest(root) as con:
        register_sources(con, recipe)
        register_shards(con, records)
        set_meta(con, {"eos_id": EOS, "vocab_size": VOCAB, "recipe_name": "bench"})
    return root


def max_prefix_error(sources: list[int], tokens: list[np.ndarray] | None, shares: list[float]) -> float:
    """Largest |tokens of s in first n sequences / L - share_s * n| over all prefixes n and sources s."""
    per_seq = np.zeros((len(sources), len(shares)))
    for i, s in enumerate(sources):
        if tokens is None:
            per_seq[i, s] = 1.0
        else:
            per_seq[i] = tokens[i]
    cum = np.cumsum(per_seq, axis=0)
    n = np.arange(1, len(sources) + 1)[:, None]
    return float(np.abs(cum - n * np.asarray(shares)[None, :]).max())


def run_ours(plan, n: int) -> tuple[float, float]:
    sampler = Sampler(plan)
    names = sampler.source_names
    sources, t0 = [], time.perf_counter()
    for i, (_, name, _, seq) in enumerate(sampler.items()):
        sources.append(names.index(name))
        if i + 1 >= n:
            break
    dt = time.perf_counter() - t0
    return len(sources) / dt, max_prefix_error(sources, None, sampler.shares)


def run_pyarrow(plan, n: int) -> float:
    t0, made, carry = time.perf_counter(), 0, np.empty(0, dtype=np.uint32)
    for src in plan.sources:
        for sh in src.shards:
            pf = pq.ParquetFile(f"{plan.corpus_root}/{sh['path']}")
            for g in range(pf.num_row_groups):
                col = pf.read_row_group(g, columns=["tokens"]).column("tokens").combine_chunks()
                flat = np.concatenate([carry, np.asarray(col.values)])
                whole = len(flat) // SEQ_LEN
                for j in range(whole):
                    _ = torch.from_numpy(flat[j * SEQ_LEN : (j + 1) * SEQ_LEN].astype(np.int64))
                    made += 1
                    if made >= n:
                        return made / (time.perf_counter() - t0)
                carry = flat[whole * SEQ_LEN :]
    return made / (time.perf_counter() - t0)


def run_hf(plan, n: int, shares: list[float]) -> tuple[float, float]:
    import datasets

    datasets.disable_progress_bars()
    parts = []
    for src in plan.sources:
        files = [f"{plan.corpus_root}/{sh['path']}" for sh in src.shards]
        ds = datasets.load_dataset("parquet", data_files=files, split="train", streaming=True).select_columns(
            ["tokens"]
        )
        parts.append(ds.map(lambda ex, i=len(parts): {"src": i}))
    mixed = datasets.interleave_datasets(parts, probabilities=shares, seed=0, stopping_strategy="all_exhausted")
    t0, buf, src_buf, made = time.perf_counter(), [], [], 0
    rows, counts = [], []
    for ex in mixed:
        toks = ex["tokens"] + [EOS]
        buf.extend(toks)
        src_buf.extend([ex["src"]] * len(toks))
        while len(buf) >= SEQ_LEN:
            _ = torch.tensor(buf[:SEQ_LEN], dtype=torch.long)
            counts.append(np.bincount(src_buf[:SEQ_LEN], minlength=len(shares)) / SEQ_LEN)
            del buf[:SEQ_LEN], src_buf[:SEQ_LEN]
            made += 1
        if made >= n:
            break
    dt = time.perf_counter() - t0
    rows = list(range(made))
    return made / dt, max_prefix_error(rows, counts, shares)


def seek_22t(bench_plan) -> dict[str, float]:
    """Seek and resume near the end of the 22T schedule; seconds (module docstring)."""
    plan = resolve_recipe(ROOT / "corpus/recipes/demix_corpora.yaml", parse_tokens("22T"), seq_len=SEQ_LEN)
    # the schedule needs no corpus; to time a resume to real tokens, every source reads bench shards
    shards = [src.shards for src in bench_plan.sources]
    plan = dataclasses.replace(
        plan,
        corpus_root=bench_plan.corpus_root,
        eos_id=EOS,
        sources=tuple(dataclasses.replace(src, shards=shards[i % len(shards)]) for i, src in enumerate(plan.sources)),
    )
    t0 = time.perf_counter()
    probe = Sampler(plan, prefetch=0)
    n, schedule = probe.num_sequences, probe.schedule
    setup = time.perf_counter() - t0
    seeks = []
    for m in (n - 1, n - 2, n - schedule.block // 2 - 1, n - 10_000_019, n - 123_456_789):
        t0 = time.perf_counter()
        next(schedule.iter_slots(m, schedule.counts_at(m)))
        seeks.append(time.perf_counter() - t0)
    t0, k = time.perf_counter(), 0
    for _ in schedule.iter_slots(n // 2):  # the slots/s of a replay, on the same schedule
        k += 1
        if k >= 300_000:
            break
    replay_rate = k / (time.perf_counter() - t0)

    def first_item(sampler: Sampler, state: dict) -> float:
        t0 = time.perf_counter()
        sampler.load_state_dict(state)
        next(iter(sampler))
        return time.perf_counter() - t0

    pos = len(Sampler(plan, rank=0, world_size=1, prefetch=0)) - 1000
    position_s = first_item(Sampler(plan, prefetch=0), {"position": pos})
    saver = Sampler(plan, rank=3, world_size=8, prefetch=0)
    saver.load_state_dict({"position": len(saver) - 1000})
    next(iter(saver))
    state = json.loads(json.dumps(saver.state_dict()))
    elastic_s = first_item(Sampler(plan, rank=1, world_size=6, prefetch=0), state)
    return {
        "slots_22t": n,
        "sources_22t": len(plan.sources),
        "block": schedule.block,
        "sampler_init_s": setup,
        "seek_max_s": max(seeks),
        "seek_mean_s": sum(seeks) / len(seeks),
        "position_resume_s": position_s,
        "elastic_resume_s": elastic_s,
        "replay_slots_per_s": replay_rate,
        "replay_to_end_s": n / replay_rate,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; prints a table (or --json) and the ratios against the targets."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small corpus (~16M tokens), fewer HF sequences")
    p.add_argument("--tokens", default="96M", help="corpus size in tokens (default 96M, ~400 MB of uint32)")
    p.add_argument("--out", help="corpus folder (reused when present); default a temp folder")
    p.add_argument("--hf-sequences", type=int, help="sequences to time for HF (it is slow)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    total = parse_tokens("16M" if args.quick else args.tokens)
    tmp = None if args.out else tempfile.TemporaryDirectory(prefix="mixer-bench-")
    root = Path(args.out or tmp.name)
    t0 = time.perf_counter()
    build_corpus(root, total)
    build_s = time.perf_counter() - t0
    mix = Mixture("bench", "source", SHARES)
    plan = resolve_mixture(mix, root, total, seq_len=SEQ_LEN, seed=0)
    n = total // SEQ_LEN
    shares = [s.share for s in plan.sources]
    raw = max(run_pyarrow(plan, n), run_pyarrow(plan, n))  # best of two: the machine may be shared
    ours, ours_err = max(run_ours(plan, n), run_ours(plan, n))
    hf, hf_err = run_hf(plan, args.hf_sequences or (300 if args.quick else 1000), shares)
    seek = seek_22t(plan)
    result = {
        "tokens": total,
        "sequences": n,
        "seq_len": SEQ_LEN,
        "build_s": round(build_s, 1),
        "ours_seq_per_s": round(ours, 1),
        "pyarrow_seq_per_s": round(raw, 1),
        "hf_seq_per_s": round(hf, 1),
        "ours_vs_pyarrow": round(ours / raw, 3),
        "ours_vs_hf": round(ours / hf, 2),
        "ours_max_prefix_error_seq": round(ours_err, 3),
        "hf_max_prefix_error_seq": round(hf_err, 3),
        **{f"seek22t_{k}": (round(v, 4) if isinstance(v, float) else v) for k, v in seek.items()},
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"corpus: {total:,} tokens, {len(SHARES)} sources, {n:,} sequences of {SEQ_LEN} (built in {build_s:.1f}s)"
        )
        print(f"{'method':<10}{'seq/s':>12}{'vs ours':>10}{'max prefix error (seq)':>26}")
        print(f"{'ours':<10}{ours:>12,.0f}{1.0:>10.2f}{ours_err:>26.3f}")
        print(f"{'pyarrow':<10}{raw:>12,.0f}{raw / ours:>10.2f}{'(no mixing)':>26}")
        print(f"{'hf':<10}{hf:>12,.0f}{hf / ours:>10.2f}{hf_err:>26.3f}")
        print(f"ours / pyarrow = {ours / raw:.2f} (target >= 0.8); ours / hf = {ours / hf:.1f} (target >= 3)")
        print(
            f"\n22T plan: {seek['slots_22t']:,} slots, {seek['sources_22t']} sources, schedule block "
            f"{seek['block']:,} slots (Sampler built in {seek['sampler_init_s']:.2f}s)"
        )
        print(f"{'near the end of the stream':<44}{'seconds':>10}{'target':>10}")
        print(f"{'seek the schedule (worst of 5)':<44}{seek['seek_max_s']:>10.3f}{'< 1':>10}")
        print(f"{'resume a position-only state, 1st sequence':<44}{seek['position_resume_s']:>10.3f}{'< 1':>10}")
        print(f"{'elastic resume 8 -> 6 ranks, 1st sequence':<44}{seek['elastic_resume_s']:>10.3f}{'< 1':>10}")
        print(
            f"{'a replay from slot 0 instead (projected)':<44}{seek['replay_to_end_s']:>10,.0f}"
            f"{'':>10}  ({seek['replay_slots_per_s']:,.0f} slots/s)"
        )
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
