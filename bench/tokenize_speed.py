"""Tokenize-stage throughput: our build vs datatrove's DocumentTokenizer vs raw encode_batch_fast.

All variants see the same documents (Python stdlib files, package descriptions, generated math), the
same tokenizer and the same cores, in one process (datatrove LocalPipelineExecutor, 1 task):
  ours       datatrove pipeline [bench_reader, pipelines.shards.Tokenize, ShardWriter] -> Parquet shards
  datatrove  datatrove pipeline [bench_reader, DocumentTokenizer(shuffle off)]        -> .ds token files
  raw        tokenizers `encode_batch_fast` in datatrove's batch shape (10,000 documents a call, the
             shape where it measured fastest here), default parallelism, ids materialised
  raw_slow   the same with `encode_batch` (offsets computed), the call datatrove makes
Each repeat runs every variant once, in a rotated order so machine drift favours none. Reported: wall
seconds and CPU-seconds (user + system of this process and its children; `main` is the CPU of the
thread that runs the pipeline, the rest is the encoder's threads), best and median over repeats, and
each ratio per repeat (paired, same minutes of machine) as median [min-max]. On a shared machine
trust the paired CPU-second ratios; wall ratios move with the load. Targets (per CPU-second, medians):
ours >= 2x datatrove, ours >= 0.85x raw.

The encoder spends about half its CPU in glibc malloc/free (perf, cpu-clock samples). The allocator is
chosen at process start, for every variant alike, and printed in the header; to measure under jemalloc
(ray ships one in site-packages/ray/core/libjemalloc.so):

  LD_PRELOAD=.venv/lib/python3.11/site-packages/ray/core/libjemalloc.so python bench/tokenize_speed.py

`--profile` adds one run of ours split by section (encoder threads, the pipeline thread's reader, tokenize
hand-off, stats, writer parts); docs/scale.md ("Tokenize") has the measured table.

  python bench/tokenize_speed.py --quick
  python bench/tokenize_speed.py --mb 4 --repeat 5 --profile
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
import statistics  # noqa: E402
import sysconfig  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402


def bench_documents(max_bytes: int) -> list[str]:
    """Up to `max_bytes` of text: stdlib .py files, package descriptions, math problems (sorted, deterministic)."""
    from corpus.generators.math_problems import generate
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


class _Texts:
    """The texts behind one reference: datatrove's executor.json writes its repr, not 24 MB of text, and the
    per-rank deepcopy of the pipeline shares them (never modified)."""

    def __init__(self, texts: list[str]):
        self.texts = texts

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> str:
        return self.texts[i]

    def __deepcopy__(self, memo: dict) -> _Texts:
        return self


def bench_reader(texts: list[str]):
    """A ListReader over `texts` for every variant alike, minus the harness cost of saving the texts as JSON."""
    from pipelines.readers import ListReader

    reader = ListReader([], "bench")
    reader.texts = _Texts(texts)
    return reader


def _pipeline_time(pipeline: list, logging_dir: str) -> float:
    from datatrove.executor import LocalPipelineExecutor

    from pipelines.executors import quiet_output as _quiet

    ex = LocalPipelineExecutor(pipeline, tasks=1, workers=1, logging_dir=logging_dir, skip_completed=False)
    with _quiet(Path(logging_dir) / "run.log", True):  # datatrove's per-task log lines would drown the table
        t = time.perf_counter()
        ex.run()
        return time.perf_counter() - t


def run_ours(texts: list[str], tok_dir: str, work: str) -> tuple[float, int]:
    """Seconds and tokens for our Tokenize + ShardWriter steps."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from pipelines.shards import ShardInfo, ShardWriter, Tokenize

    out = Path(work) / "ours"
    shutil.rmtree(out, ignore_errors=True)
    (out / "tokenizer").mkdir(parents=True)
    shutil.copy(Path(tok_dir) / "tokenizer.json", out / "tokenizer" / "tokenizer.json")
    pipe = [
        bench_reader(texts),
        Tokenize(str(out / "tokenizer")),
        ShardWriter(
            str(out),
            {"bench": ShardInfo("general", "high", "general")},
            {"demix.tokenizer": "bench"},
            0.0,
            str(out / "records"),
        ),
    ]
    secs = _pipeline_time(pipe, str(out / "logs"))
    tokens = sum(
        pc.sum(pq.read_table(p, columns=["n_tokens"]).column(0)).as_py() for p in (out / "shards").rglob("*.parquet")
    )
    return secs, int(tokens)


def run_datatrove(texts: list[str], tok_dir: str, work: str) -> tuple[float, int]:
    """Seconds and tokens (EOS excluded) for datatrove's DocumentTokenizer."""
    from datatrove.pipeline.tokens import DocumentTokenizer

    out = Path(work) / "datatrove"
    shutil.rmtree(out, ignore_errors=True)
    step = DocumentTokenizer(
        str(out / "tokens"),
        tokenizer_name_or_path=str(Path(tok_dir) / "tokenizer.json"),
        eos_token="<|endoftext|>",
        shuffle_documents=False,
        save_final_metadata=False,
    )
    secs = _pipeline_time([bench_reader(texts), step], str(out / "logs"))
    stats = json.loads((out / "logs" / "stats" / "00000.json").read_text())
    total = next(s["stats"]["tokens"] for s in stats if "tokens" in s["stats"])
    total = total["total"] if isinstance(total, dict) else total
    return secs, int(total) - len(texts)  # datatrove appends one EOS per document


# main-thread sections of `--profile`, first match on "<file>:<function>" wins; a function that matches none
# (a builtin, a helper) counts where the caller it spent most time under counts
SECTIONS = (
    ("writer: Parquet write, zstd, sha256", ("write_shard_atomic", "_Sha256Sink", "pyarrow/parquet")),
    ("writer: Arrow table (token_lists, shard_table)", ("token_lists", "shard_table")),
    ("writer: per document (split hash, buffers)", ("ShardWriter.run", "is_validation", ":run@writer")),
    ("writer: record", ("_flush",)),
    ("tokenize: main thread (batches, hand-off)", ("batches", "_emit", "_wait", ":run@tokenize")),
    ("step stats (datatrove Stats)", ("stat_update", "pipelines/stats.py", "datatrove/utils/stats.py")),
    ("reader: Documents (bench ListReader)", ("pipelines/readers.py",)),
    ("datatrove executor, logging", ("datatrove/", "loguru/", "json/", "copy.py", "logging")),
)


def profile_ours(texts: list[str], tok_dir: str, work: str) -> dict[str, float]:
    """CPU-seconds of one run of ours by section: the encoder's threads (thread CPU inside `encode_flat`), the
    main thread split by `SECTIONS` (cProfile on thread CPU time), and the rest of the process."""
    import cProfile
    import pstats
    import threading

    import pipelines.shards as shards

    encode, lock, encoder = shards.encode_flat, threading.Lock(), [0.0]

    def timed_encode(tok, batch):
        t = time.thread_time()
        try:
            return encode(tok, batch)
        finally:
            with lock:
                encoder[0] += time.thread_time() - t

    shards.encode_flat = timed_encode  # Tokenize looks the module global up at each submit
    prof = cProfile.Profile(timer=time.thread_time)  # CPU of the profiled (main) thread, not wall
    c0, m0 = _cpu_seconds(), time.thread_time()
    try:
        prof.enable()
        run_ours(texts, tok_dir, work)
        prof.disable()
    finally:
        shards.encode_flat = encode
    total, main = _cpu_seconds() - c0, time.thread_time() - m0
    stats = pstats.Stats(prof).stats  # {(file, line, name): (calls, ncalls, tottime, cumtime, callers)}

    def label(key) -> str:
        file, _, name = key
        step = {"run": f":run@{file.rsplit('/', 1)[-1]}"}.get(name, "")
        if file.endswith("pipelines/shards.py") and name == "run":  # two run()s: which class from the callers
            step = ":run@writer" if any(c[2] == "_run_for_rank" for c in stats[key][4]) else ":run@tokenize"
        return f"{file}:{name}{step}"

    memo: dict = {}

    def section(key, depth: int = 0) -> str:
        if key not in memo:
            text = label(key)
            memo[key] = next((name for name, keys in SECTIONS if any(k in text for k in keys)), None)
            if memo[key] is None:
                callers = stats[key][4]
                top = max(callers, key=lambda c: callers[c][3], default=None)
                memo[key] = section(top, depth + 1) if top is not None and depth < 50 else None
        return memo[key] or "other (main thread)"  # None: a caller cycle still being resolved

    out = {"encoder threads (encode_batch_fast + ids to uint32)": encoder[0]}
    for key, (_, _, tottime, _, _) in stats.items():
        out[section(key)] = out.get(section(key), 0.0) + tottime
    out["other threads and processes"] = total - main - encoder[0]
    out["total (process CPU, profiler included)"] = total
    return out


RAW_BATCH = 10_000  # datatrove DocumentTokenizer's batch_size default


def run_raw(texts: list[str], tok_dir: str, method: str = "encode_batch_fast") -> tuple[float, int]:
    """Seconds and tokens for a bare tokenizers batch call over the same texts (ids materialised)."""
    from corpus.tokenizer import load_tokenizer

    tok = load_tokenizer(tok_dir)
    n = 0
    t = time.perf_counter()
    for i in range(0, len(texts), RAW_BATCH):
        n += sum(len(e.ids) for e in getattr(tok, method)(texts[i : i + RAW_BATCH], add_special_tokens=False))
    return time.perf_counter() - t, n


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table and ratios; exit 1 when a target is missed with --strict."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="about 4 MB of text, 1 repeat")
    p.add_argument("--mb", type=float, default=24.0, help="megabytes of text (default 24)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--tokenizer", default=None, help="tokenizer folder or tokenizer.json (default: train an 8k BPE)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--profile", action="store_true", help="also print ours' CPU-seconds by section (one extra run)")
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
        runs = run_variants(texts, tok_dir, work, repeat)
        profile = profile_ours(texts, tok_dir, work) if args.profile else None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = summarise(runs, texts, repeat)
    if profile:
        result["profile_cpu_seconds"] = {k: round(v, 3) for k, v in profile.items()}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print_table(result)
    cpu = result["ratios"]
    ok = cpu["cpu_ours_vs_datatrove"]["median"] >= 2.0 and cpu["cpu_ours_vs_raw"]["median"] >= 0.85
    return 0 if ok or not args.strict else 1


VARIANTS = ("ours", "datatrove", "raw", "raw_slow")


def run_variants(texts: list[str], tok_dir: str, work: str, repeat: int) -> dict[str, list[dict]]:
    """{variant: [{seconds, cpu_seconds, main_cpu_seconds, tokens} per repeat]}; order rotated each repeat."""
    fns = {
        "ours": lambda: run_ours(texts, tok_dir, work),
        "datatrove": lambda: run_datatrove(texts, tok_dir, work),
        "raw": lambda: run_raw(texts, tok_dir),
        "raw_slow": lambda: run_raw(texts, tok_dir, "encode_batch"),
    }
    fns["ours"]()  # warm-up: first-use imports (pyarrow pulls in pandas) would land on whichever ran first
    runs: dict[str, list[dict]] = {k: [] for k in VARIANTS}
    for r in range(repeat):
        for name in VARIANTS[r % len(VARIANTS) :] + VARIANTS[: r % len(VARIANTS)]:
            c0, m0 = _cpu_seconds(), time.thread_time()
            secs, toks = fns[name]()
            runs[name].append(
                {
                    "seconds": secs,
                    "cpu_seconds": _cpu_seconds() - c0,
                    "main_cpu_seconds": time.thread_time() - m0,
                    "tokens": toks,
                }
            )
    return runs


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


def summarise(runs: dict[str, list[dict]], texts: list[str], repeat: int) -> dict:
    """Best and median per variant, and paired per-repeat ratios (rate of ours over the peer's)."""
    variants = {}
    for k, rs in runs.items():
        toks = rs[0]["tokens"]
        variants[k] = {
            "tokens": toks,
            "seconds": _spread([r["seconds"] for r in rs]),
            "cpu_seconds": _spread([r["cpu_seconds"] for r in rs]),
            "main_cpu_seconds": _spread([r["main_cpu_seconds"] for r in rs]),
            "tokens_per_s_best": round(toks / min(r["seconds"] for r in rs)),
            "tokens_per_cpu_s_best": round(toks / min(r["cpu_seconds"] for r in rs)),
            "per_repeat": [{k2: round(v2, 3) if isinstance(v2, float) else v2 for k2, v2 in r.items()} for r in rs],
        }
    ratios = {}
    for peer in ("datatrove", "raw"):
        for kind, key in (("wall", "seconds"), ("cpu", "cpu_seconds")):
            # same documents, same tokens: a rate ratio is the peer's seconds over ours, repeat by repeat
            ratios[f"{kind}_ours_vs_{peer}"] = _spread([p[key] / o[key] for o, p in zip(runs["ours"], runs[peer])])
    for kind, key in (("wall", "seconds"), ("cpu", "cpu_seconds")):
        ratios[f"{kind}_raw_vs_datatrove"] = _spread([d[key] / r[key] for r, d in zip(runs["raw"], runs["datatrove"])])
        ratios[f"{kind}_fast_vs_slow"] = _spread([s[key] / r[key] for r, s in zip(runs["raw"], runs["raw_slow"])])
    return {
        "docs": len(texts),
        "megabytes": round(sum(map(len, texts)) / 1e6, 2),
        "cores": os.cpu_count(),
        "repeat": repeat,
        "allocator": allocator(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "variants": variants,
        "ratios": ratios,
    }


def print_table(result: dict) -> None:
    """The variant table (best and median), then the paired ratios against each target."""
    print(
        f"{result['docs']:,} documents, {result['megabytes']} MB, {result['cores']} cores, {result['repeat']} repeats, "
        f"allocator {result['allocator']}, load average {result['load_avg_1m']} at the end"
    )
    print(
        f"{'variant':<10} {'tokens':>11} {'wall s best':>12} {'median':>7} {'cpu s best':>11} {'median':>7} "
        f"{'main cpu':>9} {'tokens/s':>10} {'tokens/cpu-s':>13}"
    )
    for k in VARIANTS:
        v = result["variants"][k]
        print(
            f"{k:<10} {v['tokens']:>11,} {v['seconds']['min']:>12.2f} {v['seconds']['median']:>7.2f} "
            f"{v['cpu_seconds']['min']:>11.2f} {v['cpu_seconds']['median']:>7.2f} {v['main_cpu_seconds']['median']:>9.2f} "
            f"{v['tokens_per_s_best']:>10,} {v['tokens_per_cpu_s_best']:>13,}"
        )
    r = result["ratios"]

    def show(key: str) -> str:
        return f"{r[key]['median']:.2f}x [{r[key]['min']:.2f}-{r[key]['max']:.2f}]"

    print("paired ratios, median [min-max] over repeats:")
    print(
        f"  ours / datatrove  per CPU-second {show('cpu_ours_vs_datatrove')}  wall {show('wall_ours_vs_datatrove')}"
        "  (target >= 2x)"
    )
    print(
        f"  ours / raw        per CPU-second {show('cpu_ours_vs_raw')}  wall {show('wall_ours_vs_raw')}  (target >= 0.85x)"
    )
    print(f"  raw / datatrove   per CPU-second {show('cpu_raw_vs_datatrove')}  wall {show('wall_raw_vs_datatrove')}")
    print(
        f"  encode_batch_fast / encode_batch per CPU-second {show('cpu_fast_vs_slow')}  wall {show('wall_fast_vs_slow')}"
    )
    if "profile_cpu_seconds" in result:
        prof = result["profile_cpu_seconds"]
        total = prof["total (process CPU, profiler included)"]
        print("ours, one profiled run, CPU-seconds by section (cProfile inflates the Python sections):")
        for k, v in sorted(prof.items(), key=lambda kv: -kv[1]):
            print(f"  {k:<52} {v:7.3f}  {100 * v / total:5.1f}%")


def allocator() -> str:
    """'jemalloc', 'tcmalloc' or 'mimalloc' when one is mapped into this process (LD_PRELOAD), else 'glibc'."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "unknown"
    return next((name for name in ("jemalloc", "tcmalloc", "mimalloc") if name in maps), "glibc")


def _cpu_seconds() -> float:
    """User + system CPU of this process and its finished children (datatrove's manager process)."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


if __name__ == "__main__":
    sys.exit(main())
