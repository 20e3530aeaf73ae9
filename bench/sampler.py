"""Benchmark the mixer Sampler against a raw pyarrow read (upper bound) and HF `interleave_datasets`.

Writes its own corpus of random-token documents (4 sources, a few hundred MB at full size) in the
DESIGN.md shard layout, resolves a source-level mixture over it, then measures sequences/s at
seq_len 2048 and the largest proportion error over stream prefixes (in sequences):
  ours     mixer.Sampler (seeded per-epoch shuffle, EOS packing per source, EDF-Pfair schedule)
  pyarrow  the same shards' tokens columns read in order and cut into sequences (no mixing at all)
  hf       datasets.interleave_datasets over streaming parquet datasets with the same probabilities,
           packed into sequences of 2048
Targets: ours >= 0.8x pyarrow, ours >= 3x hf.

    .venv/bin/python bench/sampler.py --quick
    .venv/bin/python bench/sampler.py --tokens 120M --out /tmp/bench-corpus --json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

# Run from a checkout without installing; drop bench/ itself from the path, where a module could
# shadow an installed module.
sys.path = [str(Path(__file__).resolve().parents[1])] + [p for p in sys.path[1:] if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402

from corpus import parse_recipe, parse_tokens  # noqa: E402
from manifests import (  # noqa: E402
    SHARD_SCHEMA, open_manifest, read_shard_record, register_shards, register_sources, set_meta, shard_path,
)
from mixer import Mixture, Sampler, resolve_mixture  # noqa: E402

SHARES = {"web": 0.45, "code": 0.25, "math": 0.2, "books": 0.1}
VOCAB, EOS, SEQ_LEN = 50_000, 0, 2048


def build_corpus(root: Path, total_tokens: int, seed: int = 0) -> Path:
    """Random-token documents (lognormal lengths, mean ~600) for each source, 2 shards each, plus a manifest."""
    if (root / "manifest.duckdb").exists():
        return root
    rng = np.random.default_rng(seed)
    recipe = parse_recipe({"name": "bench", "tokenizer": {"train": {"vocab_size": 512}}, "sources": [
        {"name": n, "domain": n, "tier": "high", "location": "builtin:math", "format": "builtin"} for n in SHARES]},
        file="bench.yaml")
    records = []
    for name in SHARES:
        per_source = total_tokens // len(SHARES)
        for seq in range(2):
            lengths = np.clip(rng.lognormal(6.0, 0.8, size=per_source // 2 // 550 + 1), 8, 16_000).astype(np.int64)
            offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
            values = rng.integers(1, VOCAB, size=int(offsets[-1]), dtype=np.uint32)
            n = len(lengths)
            table = pa.Table.from_arrays([
                pa.array([f"{name}/{seq}/{i}" for i in range(n)]), pa.array([""] * n),
                pa.ListArray.from_arrays(pa.array(offsets), pa.array(values)), pa.array(lengths.astype(np.int32)),
            ], schema=SHARD_SCHEMA).replace_schema_metadata({"demix.source": name, "demix.split": "train"})
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
                    _ = torch.from_numpy(flat[j * SEQ_LEN:(j + 1) * SEQ_LEN].astype(np.int64))
                    made += 1
                    if made >= n:
                        return made / (time.perf_counter() - t0)
                carry = flat[whole * SEQ_LEN:]
    return made / (time.perf_counter() - t0)


def run_hf(plan, n: int, shares: list[float]) -> tuple[float, float]:
    import datasets

    datasets.disable_progress_bars()
    parts = []
    for src in plan.sources:
        files = [f"{plan.corpus_root}/{sh['path']}" for sh in src.shards]
        ds = datasets.load_dataset("parquet", data_files=files, split="train", streaming=True).select_columns(["tokens"])
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
    result = {"tokens": total, "sequences": n, "seq_len": SEQ_LEN, "build_s": round(build_s, 1),
              "ours_seq_per_s": round(ours, 1), "pyarrow_seq_per_s": round(raw, 1), "hf_seq_per_s": round(hf, 1),
              "ours_vs_pyarrow": round(ours / raw, 3), "ours_vs_hf": round(ours / hf, 2),
              "ours_max_prefix_error_seq": round(ours_err, 3), "hf_max_prefix_error_seq": round(hf_err, 3)}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"corpus: {total:,} tokens, {len(SHARES)} sources, {n:,} sequences of {SEQ_LEN} (built in {build_s:.1f}s)")
        print(f"{'method':<10}{'seq/s':>12}{'vs ours':>10}{'max prefix error (seq)':>26}")
        print(f"{'ours':<10}{ours:>12,.0f}{1.0:>10.2f}{ours_err:>26.3f}")
        print(f"{'pyarrow':<10}{raw:>12,.0f}{raw / ours:>10.2f}{'(no mixing)':>26}")
        print(f"{'hf':<10}{hf:>12,.0f}{hf / ours:>10.2f}{hf_err:>26.3f}")
        print(f"ours / pyarrow = {ours / raw:.2f} (target >= 0.8); ours / hf = {ours / hf:.1f} (target >= 3)")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
