"""Per-stage build throughput per core, measured here, and what building 15T tokens costs from it.

Documents: the demo recipe's own sources read by its own readers (`list_units` + `SourceReader`: package
descriptions, system docs, the standard library and its tests, generated math), a fixed number per source.
Each step class runs standalone, as in the build, on the output of the step before it, in this process:

  read         SourceReader over the demo's work units (files from the page cache, the math generator)
  normalize    Normalize (NFC, ftfy)
  filter       DomainFilter with the demo's per-source filter sets
  signature    DedupSignature (content hash, 20 MinHash bands of 13)
  buckets      find_duplicates on the prepared parts: runs, bucket merge, exact-Jaccard check, clustering
  decontam     Decontaminate (13-gram index of HumanEval; the index is built outside the timing)
  tokenize     Tokenize with one encoder thread (the demo's 8k BPE trained outside the timing)
  write        ShardWriter (Parquet token shards, zstd, atomic)

Each stage is timed `--repeat` times; CPU seconds (time.process_time: every thread of this process)
and wall seconds (perf_counter), median. Rates are per CPU-second, i.e. per core: docs/s, MB/s (UTF-8
bytes of the stage's input) and tokens/s (tokens of the stage's input under the demo BPE).

The cost model takes the DeMix Corpora recipe's 15T original tokens and charges every stage for all of them
(an upper bound: filters and dedup shrink what later stages see): CPU-hours = tokens / (tokens/s/core) / 3600.
Beside it the same from bytes (15T x --bytes-per-token) and from documents (15T / --tokens-per-doc), since a
rate per token depends on the tokenizer and a rate per document on document length.

  python bench/build_cost.py             # about 6,000 documents, 3 repeats (a few minutes on 2 cores)
  python bench/build_cost.py --quick     # 600 documents, 1 repeat (< 1 minute)
  python bench/build_cost.py --markdown  # the tables of docs/scale.md
"""

from __future__ import annotations

import os
import sys

# keep bench/ off sys.path so sibling scripts never shadow a stdlib or installed module
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

from datatrove.data import Document  # noqa: E402

from corpus import Recipe, load_recipe  # noqa: E402
from corpus.tokenizer import load_tokenizer, save_tokenizer, train_bpe  # noqa: E402
from pipelines.decontaminate import Decontaminate  # noqa: E402
from pipelines.dedup import DedupSignature, PreparedWriter, find_duplicates  # noqa: E402
from pipelines.filters import DomainFilter, Normalize  # noqa: E402
from pipelines.readers import SourceFormat, SourceReader, list_units  # noqa: E402
from pipelines.shards import ShardInfo, ShardWriter, Tokenize, encode_texts  # noqa: E402

STAGES = ("read", "normalize", "filter", "signature", "buckets", "decontam", "tokenize", "write")
DEMIX_TOKENS = 15 * 10**12  # the DeMix Corpora's original tokens, before curation (docs/method.md)
BYTES_PER_TOKEN = 4.0  # assumed: a Qwen-class BPE on English web text
TOKENS_PER_DOC = 1_000  # assumed: web documents of a few KB
# published figures to set beside the model (docs/scale.md cites them)
PEERS = (
    (
        "datatrove MinHash signatures (a user's Slurm run)",
        "8 TB in 61 min on 2,400 tasks",
        8e12 / (2400 * 61 * 60) / 1e6,
        "https://github.com/huggingface/datatrove/issues/298",
    ),
    (
        "datatrove MinHash buckets (same run)",
        "8 TB in 18 min on 300 tasks",
        8e12 / (300 * 18 * 60) / 1e6,
        "https://github.com/huggingface/datatrove/issues/298",
    ),
)


@dataclass(frozen=True)
class StageRate:
    """One stage's measured throughput: its input, median seconds, and rates per CPU-second."""

    stage: str
    docs: int
    megabytes: float
    tokens: int
    cpu_s: float
    wall_s: float

    @property
    def docs_per_s_core(self) -> float:
        return self.docs / self.cpu_s

    @property
    def mb_per_s_core(self) -> float:
        return self.megabytes / self.cpu_s

    @property
    def tokens_per_s_core(self) -> float:
        return self.tokens / self.cpu_s


def demo_documents(recipe: Recipe, per_source: int) -> tuple[Callable[[], list[Document]], list[Document]]:
    """A function that reads up to `per_source` documents of each demo source, and its result."""
    units, _ = list_units(recipe, limit=per_source)
    formats = {s.name: SourceFormat.of(s) for s in recipe.sources}

    def read() -> list[Document]:
        # a limit counts per source over all units, as the build's --limit does
        return list(SourceReader(units, formats, limit=per_source).run())

    return read, read()


def _copies(docs: list[Document]) -> list[Document]:
    return [Document(text=d.text, id=d.id, metadata=dict(d.metadata)) for d in docs]


def _timed(fn: Callable[[], object], repeat: int) -> tuple[float, float, object]:
    cpu, wall, out = [], [], None
    for _ in range(repeat):
        c, w = time.process_time(), time.perf_counter()
        out = fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return statistics.median(cpu), statistics.median(wall), out


def measure(
    per_source: int = 1000, repeat: int = 3, vocab_size: int = 8192, work: str | None = None
) -> list[StageRate]:
    """Time every stage on the demo's documents; a StageRate per stage in STAGES order."""
    recipe = load_recipe("demo")
    read, raw = demo_documents(recipe, per_source)
    with tempfile.TemporaryDirectory(prefix="demix-build-cost-", dir=work) as tmp:
        tok_dir = Path(tmp) / "out" / "tokenizer"
        save_tokenizer(train_bpe([d.text for d in raw[::3]], vocab_size), tok_dir)
        tok = load_tokenizer(tok_dir)
        n_tokens = dict(zip((d.id for d in raw), map(len, encode_texts(tok, [d.text for d in raw]))))
        filters = DomainFilter(
            {s.name: s.filters for s in recipe.sources},
            {s.name: s.params.get("filter_params") or {} for s in recipe.sources},
        )
        decontaminate = Decontaminate(recipe.decontamination)
        sources = {s.name: ShardInfo(s.domain, s.tier, s.candidate or "") for s in recipe.sources}
        rates: list[StageRate] = []

        def stage(
            name: str, inputs: list[Document], fn: Callable[[list[Document]], list[Document]], fresh: bool = True
        ) -> list[Document]:
            batches = [_copies(inputs) if fresh else inputs for _ in range(repeat)]
            cpu, wall, out = _timed(lambda: fn(batches.pop()), repeat)
            rates.append(
                StageRate(
                    name,
                    len(inputs),
                    sum(len(d.text.encode("utf-8")) for d in inputs) / 1e6,
                    sum(n_tokens.get(d.id, 0) for d in inputs),
                    cpu,
                    wall,
                )
            )
            return out

        cpu, wall, _ = _timed(read, repeat)
        rates.append(
            StageRate(
                "read", len(raw), sum(len(d.text.encode("utf-8")) for d in raw) / 1e6, sum(n_tokens.values()), cpu, wall
            )
        )
        normal = stage("normalize", raw, lambda d: list(Normalize().run(iter(d))))
        n_tokens.update(zip((d.id for d in normal), map(len, encode_texts(tok, [d.text for d in normal]))))
        kept = stage("filter", normal, lambda d: list(filters.run(iter(d))))
        signed = stage("signature", kept, lambda d: list(DedupSignature(recipe.dedup).run(iter(d))))
        prepared = f"{tmp}/prepared"
        list(PreparedWriter(prepared).run(iter(_copies(signed))))
        stage("buckets", signed, lambda d: find_duplicates(prepared, recipe.dedup), fresh=False)
        clean = stage("decontam", kept, lambda d: list(decontaminate.run(iter(d))))
        tokens = stage("tokenize", clean, lambda d: list(Tokenize(str(tok_dir), threads=1).run(iter(d))))
        out = f"{tmp}/out"
        stage(
            "write",
            tokens,
            lambda d: list(
                ShardWriter(out, sources, {"demix.tokenizer": "bench"}, 0.005, f"{tmp}/records").run(iter(d))
            ),
            fresh=False,
        )
    return rates


def cost_model(
    rates: list[StageRate],
    tokens: int = DEMIX_TOKENS,
    bytes_per_token: float = BYTES_PER_TOKEN,
    tokens_per_doc: int = TOKENS_PER_DOC,
) -> dict:
    """CPU-hours per stage for `tokens` (from tokens/s, bytes/s and docs/s per core) and their totals."""
    docs, nbytes = tokens / tokens_per_doc, tokens * bytes_per_token
    rows = [
        {
            "stage": r.stage,
            "cpu_hours": tokens / r.tokens_per_s_core / 3600,
            "cpu_hours_from_bytes": nbytes / (r.mb_per_s_core * 1e6) / 3600,
            "cpu_hours_from_docs": docs / r.docs_per_s_core / 3600,
        }
        for r in rates
    ]
    total = {k: sum(r[k] for r in rows) for k in ("cpu_hours", "cpu_hours_from_bytes", "cpu_hours_from_docs")}
    return {
        "tokens": tokens,
        "bytes_per_token": bytes_per_token,
        "tokens_per_doc": tokens_per_doc,
        "documents": docs,
        "bytes": nbytes,
        "stages": rows,
        "total": total,
    }


def rate_table(rates: list[StageRate]) -> list[str]:
    """The measured table as markdown rows."""
    out = [
        "| stage | docs in | MB in | tokens in | CPU s | wall s | docs/s/core | MB/s/core | tokens/s/core |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rates:
        out.append(
            f"| {r.stage} | {r.docs:,} | {r.megabytes:.1f} | {r.tokens:,} | {r.cpu_s:.2f} | {r.wall_s:.2f} | "
            f"{r.docs_per_s_core:,.0f} | {r.mb_per_s_core:.2f} | {r.tokens_per_s_core:,.0f} |"
        )
    return out


def cost_table(model: dict) -> list[str]:
    """The cost model as markdown rows."""
    out = [
        (
            f"| stage | CPU-hours from tokens/s | from MB/s ({model['bytes_per_token']:g} B/token) | "
            f"from docs/s ({model['tokens_per_doc']:,} tokens/doc) |"
        ),
        "| --- | ---: | ---: | ---: |",
    ]
    for r in model["stages"] + [{"stage": "**total**", **model["total"]}]:
        out.append(
            f"| {r['stage']} | {r['cpu_hours']:,.0f} | {r['cpu_hours_from_bytes']:,.0f} | "
            f"{r['cpu_hours_from_docs']:,.0f} |"
        )
    return out


def peer_table() -> list[str]:
    """Published datatrove figures converted to MB/s per task (one CPU a task)."""
    out = ["| peer | published | MB/s per task | source |", "| --- | --- | ---: | --- |"]
    out += [f"| {name} | {what} | {rate:.2f} | {url} |" for name, what, rate, url in PEERS]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="100 documents per source, 1 repeat (< 1 minute)")
    p.add_argument("--per-source", type=int, default=1000, help="documents read per demo source (default 1000)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--tokens", type=float, default=DEMIX_TOKENS, help="tokens to cost (default 15T)")
    p.add_argument("--bytes-per-token", type=float, default=BYTES_PER_TOKEN)
    p.add_argument("--tokens-per-doc", type=int, default=TOKENS_PER_DOC)
    p.add_argument("--markdown", action="store_true", help="print the tables as docs/scale.md holds them")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    per_source, repeat = (100, 1) if args.quick else (args.per_source, args.repeat)
    rates = measure(per_source, repeat)
    model = cost_model(rates, int(args.tokens), args.bytes_per_token, args.tokens_per_doc)
    if args.json:
        print(
            json.dumps(
                {
                    "rates": [
                        {
                            **asdict(r),
                            "docs_per_s_core": r.docs_per_s_core,
                            "mb_per_s_core": r.mb_per_s_core,
                            "tokens_per_s_core": r.tokens_per_s_core,
                        }
                        for r in rates
                    ],
                    "model": model,
                },
                indent=1,
            )
        )
        return 0
    print(
        f"{rates[0].docs:,} demo documents ({per_source} per source at most), {repeat} repeat(s), medians; "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}\n"
    )
    print("\n".join(rate_table(rates)))
    print(
        f"\ncost of {model['tokens'] / 1e12:g}T tokens = {model['documents']:.3g} documents, {model['bytes'] / 1e12:g} TB; "
        "every stage sees every token\n"
    )
    print("\n".join(cost_table(model)))
    if args.markdown:
        print()
        print("\n".join(peer_table()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
