"""Document signatures for dedup: the content hash and MinHash LSH band hashes (`DedupSignature`, prepare tasks).

The content hash is of the normalized text; the band hashes (recipe.dedup: buckets x hashes per bucket
over word n-grams) use datatrove's own `MinhashDedupSignature` permutation parameters.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np
import xxhash
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
from datatrove.utils.text import TextNormConfig

from corpus.recipe import DedupConfig
from pipelines.filters import WORD_TOKENIZER
from pipelines.stats import CountingStep

_NORM = TextNormConfig(norm_numbers=False)  # numbers carry the content of math and code
_SIMPLE_WORD = re.compile(r"[^\W_]+")


def content_hash(text: str) -> str:
    """Hash of the normalized text (sha1, 32 hex chars): equal hashes are exact duplicates."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:32]


class MinHasher:
    """MinHash signatures and LSH band hashes (seeded, deterministic).

    Word n-grams of the lower-cased text without punctuation are hashed by combining per-word xxh64
    hashes in numpy (no per-n-gram string joins); the permutation parameters are datatrove's
    `MinhashDedupSignature` ones (seeded), evaluated in row chunks to bound memory.
    """

    CHUNK = 4096

    def __init__(self, cfg: DedupConfig, seed: int = 1):
        self.cfg = cfg
        sig = MinhashDedupSignature(
            output_folder="memory://unused",
            config=MinhashConfig(
                n_grams=cfg.ngram,
                num_buckets=cfg.num_buckets,
                hashes_per_bucket=cfg.hashes_per_bucket,
                seed=seed,
                norm_config=_NORM,
            ),
            language=WORD_TOKENIZER,
        )
        self._a, self._b = sig.parameters
        # odd multipliers that mix the n word hashes of an n-gram into one 64-bit value
        self._mix = np.random.RandomState(seed).randint(1, 2**62, size=cfg.ngram, dtype=np.uint64) * 2 + 1

    def shingles(self, text: str) -> np.ndarray:
        """Unique 64-bit hashes of the word n-grams (the whole text when shorter than n words)."""
        words = _SIMPLE_WORD.findall(text.lower())
        h = np.fromiter(map(xxhash.xxh64_intdigest, words), dtype=np.uint64, count=len(words))
        n = self.cfg.ngram
        if len(h) < n:
            return np.array([xxhash.xxh64_intdigest(" ".join(words))], dtype=np.uint64)
        with np.errstate(over="ignore"):
            g = h[: len(h) - n + 1] * self._mix[0]
            for k in range(1, n):
                g = g + h[k : len(h) - n + 1 + k] * self._mix[k]
        return np.unique(g)

    def signature(self, shingles: np.ndarray) -> np.ndarray:
        """Min over shingles of the top 32 bits of (s * a + b) mod 2**64, per permutation.

        Multiply-shift instead of datatrove's mod (2**61 - 1): the same universal family, without
        a 64-bit division per element (about 3x faster in numpy).
        """
        out = np.full(self._a.shape[1], np.iinfo(np.uint64).max, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for i in range(0, len(shingles), self.CHUNK):
                block = shingles[i : i + self.CHUNK].reshape(-1, 1)
                np.minimum(out, ((block * self._a + self._b) >> np.uint64(32)).min(axis=0), out=out)
        return out

    def bands(self, text: str) -> list[int]:
        """One 64-bit hash per LSH band (num_buckets values)."""
        sig = self.signature(self.shingles(text)).reshape(self.cfg.num_buckets, self.cfg.hashes_per_bucket)
        return [xxhash.xxh64_intdigest(row.tobytes(), seed=i) for i, row in enumerate(sig)]


def jaccard(a: set[int], b: set[int]) -> float:
    """|a & b| / |a | b| (1.0 for two empty sets)."""
    return len(a & b) / len(a | b) if a or b else 1.0


class DedupSignature(CountingStep):
    """Attach the content hash and MinHash band hashes to each document (drops nothing)."""

    name = "signature"
    type = "🫂 - DEDUP"

    def __init__(self, cfg: DedupConfig):
        super().__init__()
        self.cfg = cfg
        self._hasher: MinHasher | None = None

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        self._hasher = self._hasher or MinHasher(self.cfg)
        for doc in data:
            doc.metadata["hash"] = content_hash(doc.text)
            doc.metadata["bands"] = self._hasher.bands(doc.text) if self.cfg.minhash else []
            yield doc
