"""Built-in generator of worked math problems (arithmetic, algebra, calculus, word problems).

A source of documents for recipes (`location: builtin:math`), read by pipelines.readers. Every
problem carries its answer, which sympy recomputes independently before the document is emitted
(`verify`, math_check); a problem sympy disagrees with raises, so no wrong answer reaches a corpus.
Documents are deterministic in (seed, index): document ``i`` draws from ``random.Random(f"{seed}:{i}")``,
so any range of indices can be generated on any worker.

The templates live by what they write: math_numeric (arithmetic, word problems), math_symbolic
(algebra, calculus).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from corpus.generators.math_check import MathVerificationError, Problem, verify
from corpus.generators.math_numeric import ARITHMETIC, WORD
from corpus.generators.math_symbolic import ALGEBRA, CALCULUS

__all__ = ["KINDS", "TEMPLATES", "MathVerificationError", "Problem", "generate", "generate_problem", "verify"]

KINDS = ("arithmetic", "algebra", "calculus", "word")
# the order of kinds and of templates within a kind is part of the output: (seed, index) picks by position
TEMPLATES: dict[str, tuple[Callable[[random.Random], Problem], ...]] = {
    "arithmetic": ARITHMETIC,
    "algebra": ALGEBRA,
    "calculus": CALCULUS,
    "word": WORD,
}


def generate_problem(seed: int, index: int, kinds: tuple[str, ...] = KINDS) -> Problem:
    """The problem at `index` for `seed` (deterministic); raises ValueError for an unknown kind."""
    for k in kinds:
        if k not in TEMPLATES:
            raise ValueError(f"unknown math kind {k!r}; kinds are {', '.join(KINDS)}")
    r = random.Random(f"{seed}:{index}")
    kind = kinds[r.randrange(len(kinds))]
    templates = TEMPLATES[kind]
    return templates[r.randrange(len(templates))](r)


def generate(
    seed: int, start: int, stop: int, kinds: tuple[str, ...] = KINDS, check: bool = True
) -> Iterator[tuple[int, Problem]]:
    """Yield (index, problem) for indices in [start, stop), each verified by sympy when `check`."""
    for i in range(start, stop):
        p = generate_problem(seed, i, kinds)
        if check:
            verify(p)
        yield i, p
