"""Tokenize-stage throughput: our build vs datatrove's DocumentTokenizer vs raw encode_batch_fast.

All three see the same documents (Python stdlib files, package descriptions, generated math), the
same tokenizer and the same cores, in one process (datatrove LocalPipelineExecutor, 1 task):
  ours       datatrove pipeline [ListReader, pipelines.shards.Tokenize, ShardWriter] -> Parquet shards
  datatrove  datatrove pipeline [ListReader, DocumentTokenizer(shuffle off)]        -> .ds token files
  raw        tokenizers `encode_batch_fast` over the same texts in the same batches (ids materialised)
  raw_slow   the same with `encode_batch` (offsets computed), the path datatrove uses: bounds any speedup
Each variant runs --repeat times, the best time counts. Targets: ours >= 2x datatrove, >= 0.85x raw.

  python bench/tokenize_speed.py --quick
  python bench/tokenize_speed.py --mb 40 --tokenizer out/demo/tokenizer --json
"""
from __future__ import annotations

import os
import sys

# keep bench/ off sys.path so sibling scripts never shadow a stdlib or installed module
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

import argparse  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sysconfig  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402


def bench_documents(max_bytes: int) -> list[str]:
    """Up to `max_bytes` of text: stdlib .py files, package descriptions, math problems (sorted, deterministic)."""
    from pipelines.math_problems import generate
    from pipelines.readers import metadata_description

    paths = sysconfig.get_paths()
    texts: list[str] = []
    budget = {"code": max_bytes // 2, "prose": max_bytes // 4, "math": max_bytes // 4}
    for f in sorted(glob.glob(f"{paths['stdlib']}/*.py")) + sorted(glob.glob(f"{paths['stdlib']}/*/*.py")):
        if budget["code"] <= 0:
            break
        t = Path(f).read_text(encoding="utf-8", errors="replace")
        texts.append(t)
        budget["code"] -= len(t)
    for f in sorted(glob.glob(f"{paths['purelib']}/*.dist-info/METADATA")):
        if budget["prose"] <= 0:
            break
        t = metadata_description(Path(f).read_text(encoding="utf-8", errors="replace"))
        if t.strip():
            texts.append(t)
            budget["prose"] -= len(t)
    for _, p in generate(11, 0, 10**7, check=False):
        if budget["math"] <= 0:
            break
        texts.append(p.text)
        budget["math"] -= len(p.text)
    return texts


def _pipeline_time(pipeline: list, logging_dir: str) -> float:
    from datatrove.executor import LocalPipelineExecutor

    from pipelines.build import _quiet

    ex = LocalPipelineExecutor(pipeline, tasks=1, workers=1, logging_dir=logging_dir, skip_completed=False)
    with _quiet(Path(logging_dir) / "run.log", True):  # datatrove's per-task log lines would drown the table
        t = time.perf_counter()
        ex.run()
        return time.perf_counter() - t


def run_ours(texts: list[str], tok_dir: str, work: str) -> tuple[float, int]:
    """Seconds and tokens for our Tokenize + ShardWriter steps."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from pipelines.readers import ListReader
    from pipelines.shards import ShardInfo, ShardWriter, Tokenize

    out = Path(work) / "ours"
    shutil.rmtree(out, ignore_errors=True)
    (out / "tokenizer").mkdir(parents=True)
    shutil.copy(Path(tok_dir) / "tokenizer.json", out / "tokenizer" / "tokenizer.json")
    pipe = [ListReader(texts, "bench"), Tokenize(str(out / "tokenizer")),
            ShardWriter(str(out), {"bench": ShardInfo("general", "high", "general")}, {"demix.tokenizer": "bench"},
                        0.0, str(out / "records"))]
    secs = _pipeline_time(pipe, str(out / "logs"))
    tokens = sum(pc.sum(pq.read_table(p, columns=["n_tokens"]).column(0)).as_py() for p in (out / "shards").rglob("*.parquet"))
    return secs, int(tokens)


def run_datatrove(texts: list[str], tok_dir: str, work: str) -> tuple[float, int]:
    """Seconds and tokens (EOS excluded) for datatrove's DocumentTokenizer."""
    from datatrove.pipeline.tokens import DocumentTokenizer

    from pipelines.readers import ListReader

    out = Path(work) / "datatrove"
    shutil.rmtree(out, ignore_errors=True)
    step = DocumentTokenizer(str(out / "tokens"), tokenizer_name_or_path=str(Path(tok_dir) / "tokenizer.json"),
                             eos_token="<|endoftext|>", shuffle_documents=False, save_final_metadata=False)
    secs = _pipeline_time([ListReader(texts, "bench"), step], str(out / "logs"))
    stats = json.loads((out / "logs" / "stats" / "00000.json").read_text())
    total = next(s["stats"]["tokens"] for s in stats if "tokens" in s["stats"])
    total = total["total"] if isinstance(total, dict) else total
    return secs, int(total) - len(texts)  # datatrove appends one EOS per document


def run_raw(texts: list[str], tok_dir: str, method: str = "encode_batch_fast") -> tuple[float, int]:
    """Seconds and tokens for a bare tokenizers batch call over the same texts and batch bounds (ids materialised)."""
    from corpus.tokenizer import load_tokenizer
    from pipelines.shards import BATCH_CHARS, BATCH_DOCS

    tok = load_tokenizer(tok_dir)
    n, batch, chars = 0, [], 0
    t = time.perf_counter()
    for text in texts + [None]:
        if text is not None:
            batch.append(text)
            chars += len(text)
        if batch and (text is None or len(batch) >= BATCH_DOCS or chars >= BATCH_CHARS):
            n += sum(len(e.ids) for e in getattr(tok, method)(batch, add_special_tokens=False))
            batch, chars = [], 0
    return time.perf_counter() - t, n


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table and ratios; exit 1 when a target is missed with --strict."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="about 4 MB of text, 1 repeat")
    p.add_argument("--mb", type=float, default=24.0, help="megabytes of text (default 24)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--tokenizer", default=None, help="tokenizer folder or tokenizer.json (default: train an 8k BPE)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = p.parse_args(argv)
    mb, repeat = (4.0, 1) if args.quick else (args.mb, args.repeat)
    texts = bench_documents(int(mb * 1e6))
    work = tempfile.mkdtemp(prefix="demix-bench-tok-")
    try:
        if args.tokenizer:
            tok_dir = args.tokenizer if os.path.isdir(args.tokenizer) else os.path.dirname(args.tokenizer)
        else:
            from corpus.tokenizer import save_tokenizer, train_bpe

            tok_dir = str(Path(work) / "tok")
            save_tokenizer(train_bpe(texts[::7], 8192), tok_dir)
        best: dict[str, tuple[float, int]] = {}
        cpu: dict[str, float] = {}
        for _ in range(repeat):
            for name, fn in (("raw", lambda: run_raw(texts, tok_dir)), ("ours", lambda: run_ours(texts, tok_dir, work)),
                             ("datatrove", lambda: run_datatrove(texts, tok_dir, work)),
                             ("raw_slow", lambda: run_raw(texts, tok_dir, "encode_batch"))):
                c0 = _cpu_seconds()
                secs, toks = fn()
                used = _cpu_seconds() - c0
                if name not in best or secs < best[name][0]:
                    best[name] = (secs, toks)
                cpu[name] = min(cpu.get(name, float("inf")), used)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rate = {k: v[1] / v[0] for k, v in best.items()}
    per_cpu = {k: best[k][1] / cpu[k] for k in best}
    result = {"docs": len(texts), "megabytes": round(sum(map(len, texts)) / 1e6, 2), "cores": os.cpu_count(),
              "load_avg_1m": round(os.getloadavg()[0], 2),
              "variants": {k: {"seconds": round(v[0], 3), "cpu_seconds": round(cpu[k], 3), "tokens": v[1],
                               "tokens_per_s": round(rate[k]), "tokens_per_cpu_s": round(per_cpu[k])} for k, v in best.items()},
              "ours_vs_datatrove": round(rate["ours"] / rate["datatrove"], 3), "ours_vs_raw": round(rate["ours"] / rate["raw"], 3),
              "cpu_ours_vs_datatrove": round(per_cpu["ours"] / per_cpu["datatrove"], 3),
              "cpu_ours_vs_raw": round(per_cpu["ours"] / per_cpu["raw"], 3)}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"{result['docs']:,} documents, {result['megabytes']} MB, {result['cores']} cores, best of {repeat}, "
              f"load average {result['load_avg_1m']}")
        print(f"{'variant':<10} {'seconds':>9} {'cpu s':>8} {'tokens':>12} {'tokens/s':>12} {'tokens/cpu-s':>13}")
        for k in ("ours", "datatrove", "raw", "raw_slow"):
            v = result["variants"][k]
            print(f"{k:<10} {v['seconds']:>9.3f} {v['cpu_seconds']:>8.2f} {v['tokens']:>12,} {v['tokens_per_s']:>12,} "
                  f"{v['tokens_per_cpu_s']:>13,}")
        print(f"ours / datatrove = {result['ours_vs_datatrove']:.2f}x wall, {result['cpu_ours_vs_datatrove']:.2f}x per CPU-second (target >= 2x)")
        print(f"ours / raw       = {result['ours_vs_raw']:.2f}x wall, {result['cpu_ours_vs_raw']:.2f}x per CPU-second (target >= 0.85x)")
        print(f"ceiling: raw encode_batch_fast / datatrove = {rate['raw'] / rate['datatrove']:.2f}x, "
              f"encode_batch_fast / encode_batch = {rate['raw'] / rate['raw_slow']:.2f}x")
    ok = result["ours_vs_datatrove"] >= 2.0 and result["ours_vs_raw"] >= 0.85
    return 0 if ok or not args.strict else 1


def _cpu_seconds() -> float:
    """User + system CPU of this process and its finished children (datatrove's manager process)."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


if __name__ == "__main__":
    sys.exit(main())
