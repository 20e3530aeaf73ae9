"""Mixer fixtures: plans over the shared tiny corpus, and a writable copy of that corpus."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mixer import Mixture, Plan, resolve_mixture

MIX = {"name": "tiny-mix", "level": "candidate", "ratios": {"general": 0.5, "code_high": 0.3, "math_high": 0.2}}


@pytest.fixture(scope="session")
def tiny_plan(tiny_corpus) -> Plan:
    """About 2,000 sequences of 32 tokens; general sources repeat (~1.6 epochs), code/math do not."""
    return resolve_mixture(Mixture.from_dict(MIX), tiny_corpus, 64_000, seq_len=32, seed=7)


@pytest.fixture(scope="session")
def epoch_plan(tiny_corpus) -> Plan:
    """A source-level plan where math_a repeats about 2.5 times."""
    mix = {"name": "epochs", "level": "source", "ratios": {"math_a": 0.6, "code_a": 0.4}}
    return resolve_mixture(Mixture.from_dict(mix), tiny_corpus, 96_000, seq_len=64, seed=3)


@pytest.fixture()
def corpus_copy(tiny_corpus, tmp_path) -> Path:
    """A writable copy of the tiny corpus (for tests that record plans in the manifest)."""
    return Path(shutil.copytree(tiny_corpus, tmp_path / "corpus"))
