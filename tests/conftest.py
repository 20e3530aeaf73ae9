"""Shared fixtures: a tiny tokenized corpus (shards + manifest + tokenizer) built in a temp folder."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from corpus import parse_recipe
from corpus.tokenizer import load_tokenizer, save_tokenizer, tokenizer_hash, train_bpe
from manifests import (
    CorpusMeta,
    ShardMeta,
    open_manifest,
    read_shard_record,
    register_shards,
    register_sources,
    set_meta,
    shard_path,
    shard_table,
    write_shard_atomic,
)

WORDS = (
    "the model data train mixture general science history people water river city music "
    "garden light energy story market health school family paper village forest"
).split()
CODE = [
    "def {f}(x, y):\n    return x {op} y\n",
    "for i in range({n}):\n    total += i * {n}\n",
    "class {F}:\n    def __init__(self):\n        self.{f} = {n}\n",
    "import os\nprint(os.path.join('{f}', '{f}'))\n",
]
OPS = ["+", "-", "*", "//"]


def synthetic_doc(domain: str, rng: random.Random) -> str:
    """A small deterministic document whose style depends on its domain."""
    if domain == "general":
        return " ".join(
            " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))).capitalize() + "."
            for _ in range(rng.randint(2, 6))
        )
    if domain == "code":
        return "".join(
            rng.choice(CODE).format(
                f=rng.choice(WORDS), F=rng.choice(WORDS).title(), op=rng.choice(OPS), n=rng.randint(2, 99)
            )
            for _ in range(rng.randint(2, 5))
        )
    a, b = rng.randint(2, 999), rng.randint(2, 999)
    return f"Problem: compute {a} + {b}.\nSolution: {a} + {b} = {a + b}. The answer is {a + b}.\n"


TINY_RECIPE = {
    "name": "tiny",
    "tokenizer": {"train": {"vocab_size": 384}},
    "sources": [
        {
            "name": "gen_a",
            "domain": "general",
            "tier": "high",
            "candidate": "general",
            "location": "builtin:math",
            "format": "builtin",
        },
        {
            "name": "gen_b",
            "domain": "general",
            "tier": "medium",
            "candidate": "general",
            "location": "builtin:math",
            "format": "builtin",
        },
        {"name": "code_a", "domain": "code", "tier": "high", "location": "builtin:math", "format": "builtin"},
        {"name": "math_a", "domain": "math", "tier": "high", "location": "builtin:math", "format": "builtin"},
    ],
}


# Two sources per domain (so per-domain evaluation must cover both), with non-ASCII text in each.
TWO_PER_DOMAIN_RECIPE = {
    "name": "two-per-domain",
    "tokenizer": {"train": {"vocab_size": 384}},
    "sources": [
        {
            "name": f"{domain}_{tier}",
            "domain": domain,
            "tier": tier,
            "candidate": f"{domain}_{tier}",
            "location": "builtin:math",
            "format": "builtin",
        }
        for domain in ("general", "code", "math")
        for tier in ("high", "medium")
    ],
}
NON_ASCII = ("café", "π ≈ 3.14", "数据混合", "naïve Zürich", "Ωmega ∑")


def non_ascii_doc(domain: str, rng: random.Random) -> str:
    """A synthetic document with multi-byte UTF-8 characters (bits per byte must count bytes, not characters)."""
    return synthetic_doc(domain, rng) + " " + rng.choice(NON_ASCII) + "\n"


def build_tiny_corpus(
    root: Path,
    docs_per_source: int = 400,
    shards_per_source: int = 2,
    seed: int = 0,
    recipe_dict: dict | None = None,
    doc_fn=synthetic_doc,
) -> Path:
    """Write a tiny corpus in the docs/design.md layout (train + validation shards, tokenizer, manifest)."""
    recipe = parse_recipe(recipe_dict or TINY_RECIPE, file=f"{(recipe_dict or TINY_RECIPE)['name']}.yaml")
    rng = random.Random(seed)
    docs = {s.name: [doc_fn(s.domain, rng) for _ in range(docs_per_source)] for s in recipe.sources}
    tok = train_bpe((d for ds in docs.values() for d in ds), vocab_size=384)
    save_tokenizer(tok, root / "tokenizer", name="tiny-bpe")
    thash = tokenizer_hash(root / "tokenizer")
    records = []
    for s in recipe.sources:
        texts = docs[s.name]
        n_val = max(4, len(texts) // 50)
        splits = {"validation": texts[:n_val], "train": texts[n_val:]}
        for split, part in splits.items():
            chunks = [part[i::shards_per_source] for i in range(shards_per_source)] if split == "train" else [part]
            for seq, chunk in enumerate(chunks):
                ids = [f"{s.name}/{split}/{seq}/{i}" for i in range(len(chunk))]
                tokens = [e.ids for e in tok.encode_batch(chunk)]
                meta = ShardMeta(
                    source=s.name,
                    split=split,
                    domain=s.domain,
                    tier=s.tier,
                    candidate=s.candidate,
                    tokenizer="tiny-bpe",
                    tokenizer_hash=thash,
                    config_hash=recipe.config_hash(),
                )
                path = shard_path(root, s.name, split, 0, seq)
                write_shard_atomic(shard_table(ids, chunk, tokens, meta), path)
                records.append(read_shard_record(path, root))
    with open_manifest(root) as con:
        register_sources(con, recipe)
        register_shards(con, records)
        set_meta(
            con,
            CorpusMeta(
                tokenizer_path="tokenizer",
                tokenizer_name="tiny-bpe",
                tokenizer_hash=thash,
                eos_token="<|endoftext|>",
                eos_id=tok.token_to_id("<|endoftext|>"),
                vocab_size=tok.get_vocab_size(),
                recipe_name=recipe.name,
                config_hash=recipe.config_hash(),
            ).to_values(),
        )
    assert load_tokenizer(root / "tokenizer").get_vocab_size() == tok.get_vocab_size()
    return root


@pytest.fixture(scope="session")
def two_per_domain_corpus(tmp_path_factory) -> Path:
    """A tiny corpus with two sources (and candidates) per domain and non-ASCII text; read-only."""
    return build_tiny_corpus(
        tmp_path_factory.mktemp("two_per_domain"),
        docs_per_source=200,
        recipe_dict=TWO_PER_DOMAIN_RECIPE,
        doc_fn=non_ascii_doc,
    )


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """A tiny built corpus (4 sources over general/code/math); treat it as read-only."""
    return build_tiny_corpus(tmp_path_factory.mktemp("tiny_corpus"))
