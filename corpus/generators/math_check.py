"""A worked math problem and its independent check: sympy recomputes the answer a template wrote.

A template (math_numeric, math_symbolic) states its answer and, in ``Problem.check``, how to
recompute it: ``(method, *args)`` with one method per kind of claim (an equality, a division with
remainder, roots, a system, a polynomial, a derivative, an integral, a slope, a limit). ``verify``
recomputes it with sympy, never with the template's own arithmetic, so a template bug cannot agree
with itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import sympy as sp

X = sp.Symbol("x")


@dataclass(frozen=True)
class Problem:
    """One worked problem: its kind, template name, full text and the answer sympy checks."""

    kind: str
    template: str
    text: str
    answer: str
    check: tuple  # (method, args) that `verify` recomputes with sympy


class MathVerificationError(AssertionError):
    """sympy disagrees with a generated answer (a bug in a template)."""


def frac_text(q: Fraction) -> str:
    """A rational as an answer is written: '7' or '-3/4' (what `sp.Rational` reads back)."""
    return str(q.numerator) if q.denominator == 1 else f"{q.numerator}/{q.denominator}"


def verify(problem: Problem) -> bool:
    """Recompute the answer with sympy; raises MathVerificationError when it disagrees."""
    method, *args = problem.check
    ok: bool
    if method == "eq":
        expr, want = args
        ok = sp.sympify(expr, locals={"Rational": sp.Rational, "gcd": sp.gcd}) == sp.Rational(want)
    elif method == "divmod":
        a, b, q, rem = args
        ok = (sp.Integer(a) // b, sp.Integer(a) % b) == (q, rem)
    elif method == "solve":
        expr, roots = args
        poly = sp.Poly(sp.sympify(expr), X)
        ok = sorted(sp.roots(poly, X)) == sorted(sp.Rational(v) for v in roots)
    elif method == "system":
        (a1, b1, c1, a2, b2, c2), want = args
        y = sp.Symbol("y")
        sol = sp.solve([a1 * X + b1 * y - c1, a2 * X + b2 * y - c2], [X, y], dict=True)
        ok = len(sol) == 1 and (sol[0][X], sol[0][y]) == tuple(map(sp.Integer, want))
    elif method == "poly_eq":
        expr, coeffs = args
        ok = sp.Poly(sp.sympify(expr), X).all_coeffs() == [sp.Integer(c) for c in coeffs] or sp.Poly(
            sp.sympify(expr), X
        ) == sp.Poly(coeffs, X)
    elif method == "diff":
        coeffs, d = args
        ok = sp.Poly(coeffs, X).diff(X) == sp.Poly(d, X)
    elif method == "integral":
        coeffs, lo, hi, want = args
        anti = sp.Poly(coeffs, X, domain="QQ").integrate()
        ok = anti.eval(hi) - anti.eval(lo) == sp.Rational(want)
    elif method == "slope":
        coeffs, x0, want = args
        ok = sp.Poly(coeffs, X).diff(X).eval(x0) == want
    elif method == "limit":
        expr, a, want = args
        num, den = sp.fraction(sp.sympify(expr))
        q, rem = sp.div(sp.Poly(num, X), sp.Poly(den, X))
        ok = rem.is_zero and q.eval(a) == sp.Rational(want)
    else:
        raise MathVerificationError(f"unknown check {method!r}")
    if not ok:
        raise MathVerificationError(
            f"sympy disagrees with {problem.template} answer {problem.answer!r}: {problem.text!r}"
        )
    return True
