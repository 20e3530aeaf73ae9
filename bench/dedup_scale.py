"""Dedup at scale: recall/precision on planted duplicates, and per-task peak RSS and time from 1M to 4M documents.

  python bench/dedup_scale.py            # quality at 100K real texts; scale at 1M and 4M documents
  python bench/dedup_scale.py --quick    # 5K texts; 100K and 400K documents

Quality: random-word texts, 10% of them planted copies of another text: exact copies and edited
copies (words replaced) at known Jaccard similarities of their 5-gram shingle sets, through the real
stages (signatures, prepare parts with runs, bucket tasks, cluster). Recall: planted pairs with
Jaccard >= 0.9 found; precision: dropped documents whose planted partner has Jaccard >= 0.9.
Scale: synthetic band hashes (1% exact and 1% near copies), the runs, bucket and cluster stages
each task in a fresh process (spawn), peak RSS and CPU seconds per task; bucket shards grow with
the corpus (one per 500K documents) and every task has the same `max_memory_mb`.
The peer is the same stages at the smaller size: targets RSS ratio <= 1.2, time/doc ratio <= 1.3;
and the bucket tasks beside the cluster task: its RSS within 1.2x theirs at each size.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.data import Document

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from corpus.recipe import DedupConfig  # noqa: E402
from pipelines.dedup import (
    PART_DOCS,
    PREPARED_SCHEMA,
    DedupPlan,
    DedupSignature,
    DuplicateFinder,  # noqa: E402
    MinHasher,
    PreparedWriter,
    jaccard,
)
from pipelines.dedup_buckets import bucket_shard  # noqa: E402
from pipelines.dedup_cluster import cluster  # noqa: E402
from pipelines.dedup_runs import write_runs  # noqa: E402

CFG = DedupConfig()
TARGETS = (0.80, 0.85, 0.88, 0.90, 0.92, 0.95, 0.98)


VOCAB = [f"w{i}" for i in range(30_000)]


def _words(rng: np.random.Generator, n: int) -> list[str]:
    return [VOCAB[i] for i in rng.zipf(1.2, n) % len(VOCAB)]


def _edit(rng: np.random.Generator, words: list[str], target: float) -> list[str]:
    """Replace spread-out words so that about (S - 5m) / (S + 5m) = target of S shingles stay shared."""
    s = len(words) - CFG.ngram + 1
    m = max(1, round(s * (1 - target) / (CFG.ngram * (1 + target))))
    out = list(words)
    for p in rng.choice(len(words), m, replace=False):
        out[p] = f"edit{rng.integers(1 << 40)}"
    return out


def quality(n_docs: int, tmp: str) -> dict:
    rng = np.random.default_rng(7)
    n_base = int(n_docs * 0.9)
    texts = [" ".join(_words(rng, int(rng.integers(150, 300)))) for _ in range(n_base)]
    partner: dict[int, int] = {}
    for j in range(n_docs - n_base):
        base = int(rng.integers(n_base))
        target = 1.0 if j % 5 == 0 else TARGETS[j % len(TARGETS)]
        texts.append(texts[base] if target == 1.0 else " ".join(_edit(rng, texts[base].split(), target)))
        partner[len(texts) - 1] = base
    plan = DedupPlan(f"{tmp}/q/dedup", shards=2)
    t0 = time.time()
    docs = [
        Document(text=t, id=f"s/{i:08d}", metadata={"source": "s", "unit": 0, "row": i}) for i, t in enumerate(texts)
    ]
    for rank in range(2):
        part = docs[rank::2]
        list(PreparedWriter(f"{tmp}/q/prepared", plan=plan).run(DedupSignature(CFG).run(iter(part), rank, 2), rank, 2))
    t_sig = time.time() - t0
    step = DuplicateFinder(f"{tmp}/q/prepared", f"{tmp}/q/dedup.parquet", CFG, plan)
    for rank in range(2):
        list(step.run(None, rank, 2))
    t_find = time.time() - t0 - t_sig
    dropped = {
        int(i.split("/")[1].split("#")[0])
        for i, r in zip(*pq.read_table(f"{tmp}/q/dedup.parquet", columns=["id", "reason"]).to_pydict().values())
        if r
    }
    h = MinHasher(CFG)
    true_j = {
        c: jaccard(set(h.shingles(texts[c]).tolist()), set(h.shingles(texts[b]).tolist())) for c, b in partner.items()
    }
    wanted = [c for c, j in true_j.items() if j >= CFG.threshold]
    found = [c for c in wanted if c in dropped or partner[c] in dropped]
    best: dict[int, float] = {}  # a dropped document is right when some planted partner is within the threshold
    for c, b in partner.items():
        best[c] = max(best.get(c, 0.0), true_j[c])
        best[b] = max(best.get(b, 0.0), true_j[c])
    good = sum(1 for d in dropped if best.get(d, 0.0) >= CFG.threshold)
    return {
        "docs": n_docs,
        "pairs_j>=0.9": len(wanted),
        "recall": len(found) / max(1, len(wanted)),
        "dropped": len(dropped),
        "precision": good / max(1, len(dropped)),
        "signature_docs_per_s": n_docs / t_sig,
        "find_docs_per_s": n_docs / t_find,
    }


def _peak_rss_kb() -> int:
    """This process's peak RSS (VmHWM): unlike ru_maxrss it is not inherited from the parent over fork + exec."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def _synthetic_part(args) -> tuple[int, float]:
    """One prepare part of synthetic signatures plus its runs (the measured work is `write_runs`)."""
    plan, folder, rank, part, start, n, total = args
    rng = np.random.default_rng(start)
    bands = rng.integers(0, 2**63, (n, CFG.num_buckets), dtype=np.uint64)
    hashes = [f"{x:032x}" for x in rng.integers(0, 2**63, n, dtype=np.uint64)]
    texts = [f"u{start + i}" for i in range(n)]
    for i in range(0, n - 1, 50):  # every 50th doc: an exact copy of the next, and a near copy (5 shared bands)
        bands[i] = bands[i + 1]
        hashes[i] = hashes[i + 1]
        base = " ".join(f"t{start + i}_{k}" for k in range(150))
        texts[i] = texts[i + 1] = base
        if i + 2 < n:
            bands[i + 2, :5] = bands[i + 1, :5]
            texts[i + 2] = base.replace(f"t{start + i}_7 ", "edited ")
    table = pa.table(
        {
            "source": ["s"] * n,
            "id": [f"s/{start + i:010d}" for i in range(n)],
            "text": texts,
            "hash": hashes,
            "bands": pa.ListArray.from_arrays(np.arange(0, n * CFG.num_buckets + 1, CFG.num_buckets), bands.ravel()),
            "unit": np.zeros(n, np.int32),
            "row": np.arange(start, start + n),
        },
        schema=PREPARED_SCHEMA,
    )
    Path(folder).mkdir(parents=True, exist_ok=True)
    pq.write_table(table, f"{folder}/{rank:05d}_{part:05d}.parquet")
    t = time.process_time()
    write_runs(plan, rank, part, table)
    return _peak_rss_kb(), time.process_time() - t


def _bucket(args) -> tuple[int, float]:
    plan, prepared, shard = args
    t = time.process_time()
    bucket_shard(plan, shard, prepared, CFG)
    return _peak_rss_kb(), time.process_time() - t


def _cluster(args) -> tuple[int, float, int]:
    plan, prepared = args
    t = time.process_time()
    rows = cluster(plan, prepared, f"{plan.folder}/../dedup.parquet").rows
    return _peak_rss_kb(), time.process_time() - t, rows


def scale(n_docs: int, tmp: str, memory_mb: int, workers: int) -> dict:
    root = f"{tmp}/scale{n_docs}"
    plan = DedupPlan(f"{root}/dedup", shards=max(1, n_docs // 500_000), max_memory_mb=memory_mb)
    prepared = f"{root}/prepared"
    parts = [
        (plan, prepared, p % 2, p // 2, p * PART_DOCS, min(PART_DOCS, n_docs - p * PART_DOCS), n_docs)
        for p in range(math.ceil(n_docs / PART_DOCS))
    ]
    out = {"docs": n_docs, "shards": plan.shards}
    stages = (
        ("runs", _synthetic_part, parts),
        ("buckets", _bucket, [(plan, prepared, s) for s in range(plan.shards)]),
        ("cluster", _cluster, [(plan, prepared)]),
    )
    for name, fn, jobs in stages:
        # a fresh process per task: its peak RSS is that task's alone
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
            res = list(pool.map(fn, jobs))
        out[f"{name}_rss_mb"] = max(r[0] for r in res) / 1024
        out[f"{name}_us_per_doc"] = sum(r[1] for r in res) / n_docs * 1e6
    out["dropped"] = res[0][2]  # the last stage is the cluster task: its drop list rows (no repeated ids planted)
    out["docs_per_s_per_core"] = n_docs / sum(out[f"{s}_us_per_doc"] * n_docs / 1e6 for s, _, _ in stages)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    p.add_argument("--quality-docs", type=int, help="documents of real text (default 100K, quick 5K; 0 skips)")
    p.add_argument("--sizes", type=int, nargs=2, help="the two scale sizes (default 1M 4M, quick 100K 400K)")
    p.add_argument("--memory-mb", type=int, default=256, help="dedup max_memory_mb of every bucket task")
    p.add_argument("--workers", type=int, default=2, help="processes running tasks at once")
    a = p.parse_args(argv)
    small, large = a.sizes or ((100_000, 400_000) if a.quick else (1_000_000, 4_000_000))
    with tempfile.TemporaryDirectory(prefix="demix-dedup-bench-") as tmp:
        q = quality(a.quality_docs or (5_000 if a.quick else 100_000), tmp) if a.quality_docs != 0 else None
        if q:
            print(
                f"quality ({q['docs']} docs, {q['pairs_j>=0.9']} planted pairs with J >= 0.9): recall {q['recall']:.4f} "
                f"(target >= 0.95), precision {q['precision']:.4f} (target >= 0.99), {q['dropped']} dropped; "
                f"signatures {q['signature_docs_per_s']:.0f} docs/s, runs+buckets+cluster {q['find_docs_per_s']:.0f} docs/s"
            )
        rows = [scale(n, tmp, a.memory_mb, a.workers) for n in (small, large)]
    for r in rows:
        r["cluster_over_buckets_rss"] = r["cluster_rss_mb"] / r["buckets_rss_mb"]
    keys = (
        ["shards"]
        + [f"{s}_{m}" for s in ("runs", "buckets", "cluster") for m in ("rss_mb", "us_per_doc")]
        + ["cluster_over_buckets_rss", "docs_per_s_per_core", "dropped"]
    )
    print(f"\n| metric | {small:,} docs | {large:,} docs | ratio |\n| --- | --- | --- | --- |")
    for k in keys:
        v0, v1 = rows[0][k], rows[1][k]
        print(
            f"| {k} | {v0:.{2 if k.endswith('_rss') else 1}f} | {v1:.{2 if k.endswith('_rss') else 1}f} | "
            f"{v1 / v0:.2f} |"
        )
    rss = max(rows[1][f"{s}_rss_mb"] for s in ("runs", "buckets", "cluster")) / max(
        rows[0][f"{s}_rss_mb"] for s in ("runs", "buckets", "cluster")
    )
    per_doc = rows[0]["docs_per_s_per_core"] / rows[1]["docs_per_s_per_core"]
    print(
        f"\npeak RSS per task ratio {rss:.2f} (target <= 1.2); time per document ratio {per_doc:.2f} (target <= 1.3); "
        f"cluster / bucket task RSS {rows[0]['cluster_over_buckets_rss']:.2f} and "
        f"{rows[1]['cluster_over_buckets_rss']:.2f} (target <= 1.2)"
    )


if __name__ == "__main__":
    main()
