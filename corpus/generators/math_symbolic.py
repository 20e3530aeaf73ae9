"""Math templates in x: algebra and calculus (the ``algebra`` and ``calculus`` kinds).

Polynomials are coefficient lists, highest degree first, written out by `poly_text`; each template's
`Problem.check` names the sympy recomputation (roots, expansion, derivative, integral, slope, limit).
"""

from __future__ import annotations

import random
from fractions import Fraction

from corpus.generators.math_check import Problem, frac_text


def poly_text(coeffs: list[int]) -> str:
    """Coefficients high degree first -> '3x^2 - 5x + 7'."""
    deg = len(coeffs) - 1
    parts: list[str] = []
    for i, c in enumerate(coeffs):
        p = deg - i
        if c == 0:
            continue
        mag = abs(c)
        body = ("" if mag == 1 and p > 0 else str(mag)) + ("x" if p >= 1 else "") + (f"^{p}" if p > 1 else "")
        sign = "-" if c < 0 else "+"
        parts.append(body if not parts and c > 0 else (f"-{body}" if not parts else f" {sign} {body}"))
    return "".join(parts) or "0"


# --- algebra --------------------------------------------------------------------------------------


def _linear(r: random.Random) -> Problem:
    a, x0, b = r.choice([i for i in range(-12, 13) if i not in (0, 1)]), r.randint(-40, 40), r.randint(-90, 90)
    c = a * x0 + b
    text = (
        f"Problem: Solve {a}x {'+' if b >= 0 else '-'} {abs(b)} = {c} for x.\n\nSolution: "
        f"Subtract {b} from both sides: {a}x = {c} - ({b}) = {c - b}.\n"
        f"Divide both sides by {a}: x = {c - b}/{a} = {x0}.\nCheck: {a} x ({x0}) + ({b}) = {c}.\nThe answer is x = {x0}."
    )
    return Problem("algebra", "linear", text, str(x0), ("solve", f"{a}*x + ({b}) - ({c})", [str(x0)]))


def _both_sides(r: random.Random) -> Problem:
    a, c = r.randint(2, 15), r.randint(-15, 15)
    while c == a:
        c = r.randint(-15, 15)
    x0 = Fraction(r.randint(-30, 30))
    b = r.randint(-50, 50)
    d = (a - c) * x0 + b
    d = int(d)
    text = (
        f"Problem: Solve {a}x + {b} = {c}x + {d}.\n\nSolution: Collect the x terms on the left: "
        f"{a}x - {c}x = {d} - {b}.\nSo {a - c}x = {d - b}.\nx = {d - b}/{a - c} = {frac_text(x0)}.\n"
        f"The answer is x = {frac_text(x0)}."
    )
    return Problem(
        "algebra", "both_sides", text, frac_text(x0), ("solve", f"{a}*x + ({b}) - ({c}*x + ({d}))", [frac_text(x0)])
    )


def _quadratic(r: random.Random) -> Problem:
    p, q = r.randint(-40, 40), r.randint(-40, 40)
    b, c = -(p + q), p * q
    roots = sorted({p, q})
    text = (
        f"Problem: Solve x^2 {'+' if b >= 0 else '-'} {abs(b)}x {'+' if c >= 0 else '-'} {abs(c)} = 0.\n\n"
        f"Solution: Look for two numbers whose product is {c} and whose sum is {b}: {-p} and {-q}.\n"
        f"So the equation factors as (x - ({p}))(x - ({q})) = 0.\n"
        f"Setting each factor to zero gives x = {p} or x = {q}.\n"
        f"The answer is x = {' or x = '.join(map(str, roots))}."
    )
    return Problem(
        "algebra",
        "quadratic",
        text,
        ",".join(map(str, roots)),
        ("solve", f"x**2 + ({b})*x + ({c})", [str(v) for v in roots]),
    )


def _system(r: random.Random) -> Problem:
    x0, y0 = r.randint(-20, 20), r.randint(-20, 20)
    a1, b1, a2, b2 = (r.randint(1, 9) for _ in range(4))
    while a1 * b2 - a2 * b1 == 0:
        b2 = r.randint(1, 9)
    c1, c2 = a1 * x0 + b1 * y0, a2 * x0 + b2 * y0
    det = a1 * b2 - a2 * b1
    text = (
        f"Problem: Solve the system {a1}x + {b1}y = {c1} and {a2}x + {b2}y = {c2}.\n\nSolution: "
        f"Multiply the first equation by {b2} and the second by {b1}, then subtract to eliminate y:\n"
        f"({a1 * b2} - {a2 * b1})x = {c1 * b2} - {c2 * b1}, so {det}x = {c1 * b2 - c2 * b1} and x = {x0}.\n"
        f"Substitute into the first equation: {b1}y = {c1} - {a1 * x0} = {c1 - a1 * x0}, so y = {y0}.\n"
        f"The answer is x = {x0}, y = {y0}."
    )
    return Problem("algebra", "system", text, f"{x0},{y0}", ("system", (a1, b1, c1, a2, b2, c2), (x0, y0)))


def _expand(r: random.Random) -> Problem:
    a, b = r.randint(-40, 40), r.randint(-40, 40)
    coeffs = [1, a + b, a * b]
    text = (
        f"Problem: Expand (x + {a})(x + {b}).\n\nSolution: Multiply each term of the first factor by the second:\n"
        f"x x x = x^2, x x {b} + {a} x x = {a + b}x, and {a} x {b} = {a * b}.\n"
        f"The answer is {poly_text(coeffs)}."
    )
    return Problem("algebra", "expand", text, poly_text(coeffs), ("poly_eq", f"(x + ({a}))*(x + ({b}))", coeffs))


# --- calculus -------------------------------------------------------------------------------------


def _rand_poly(r: random.Random, deg: int) -> list[int]:
    coeffs = [r.randint(-9, 9) for _ in range(deg + 1)]
    coeffs[0] = coeffs[0] or r.randint(1, 9)
    return coeffs


def _derivative(r: random.Random) -> Problem:
    deg = r.randint(2, 5)
    coeffs = _rand_poly(r, deg)
    d = [c * (deg - i) for i, c in enumerate(coeffs[:-1])]
    terms = [
        f"d/dx({poly_text([c] + [0] * (deg - i))}) = {poly_text([c * (deg - i)] + [0] * (deg - i - 1))}"
        for i, c in enumerate(coeffs[:-1])
        if c
    ]
    text = (
        f"Problem: Differentiate f(x) = {poly_text(coeffs)}.\n\nSolution: Apply the power rule, "
        f"d/dx(x^n) = n x^(n-1), to each term:\n"
        + "\n".join(terms)
        + f"\nThe constant term has derivative 0.\nThe answer is f'(x) = {poly_text(d)}."
    )
    return Problem("calculus", "derivative", text, poly_text(d), ("diff", coeffs, d))


def _integral(r: random.Random) -> Problem:
    deg = r.randint(1, 3)
    coeffs = _rand_poly(r, deg)
    lo, hi = sorted(r.sample(range(-4, 6), 2))
    anti = [Fraction(c, deg - i + 1) for i, c in enumerate(coeffs)] + [Fraction(0)]
    F = lambda t: sum(a * Fraction(t) ** (deg + 1 - i) for i, a in enumerate(anti))  # noqa: E731
    res = F(hi) - F(lo)
    anti_s = " + ".join(f"({frac_text(a)})x^{deg + 1 - i}" for i, a in enumerate(anti[:-1]) if a)
    text = (
        f"Problem: Evaluate the integral of {poly_text(coeffs)} from x = {lo} to x = {hi}.\n\n"
        f"Solution: An antiderivative is F(x) = {anti_s}.\n"
        f"F({hi}) = {frac_text(F(hi))} and F({lo}) = {frac_text(F(lo))}.\n"
        f"The integral is F({hi}) - F({lo}) = {frac_text(res)}.\nThe answer is {frac_text(res)}."
    )
    return Problem("calculus", "integral", text, frac_text(res), ("integral", coeffs, lo, hi, frac_text(res)))


def _tangent(r: random.Random) -> Problem:
    a, b, c, x0 = r.randint(1, 9), r.randint(-9, 9), r.randint(-9, 9), r.randint(-5, 5)
    slope = 2 * a * x0 + b
    y0 = a * x0 * x0 + b * x0 + c
    text = (
        f"Problem: Find the slope of the tangent line to y = {poly_text([a, b, c])} at x = {x0}.\n\n"
        f"Solution: The derivative is y' = {poly_text([2 * a, b])}.\n"
        f"At x = {x0}: y' = {2 * a} x ({x0}) + ({b}) = {slope}.\nThe point of tangency is ({x0}, {y0}).\n"
        f"The answer is {slope}."
    )
    return Problem("calculus", "tangent", text, str(slope), ("slope", [a, b, c], x0, slope))


def _limit(r: random.Random) -> Problem:
    a, b = r.randint(-40, 40), r.randint(-40, 40)
    res = a + b  # lim_{x->a} (x-a)(x+b)/(x-a) = a + b
    num = poly_text([1, b - a, -a * b])
    text = (
        f"Problem: Compute the limit as x approaches {a} of ({num})/(x - ({a})).\n\n"
        f"Solution: Direct substitution gives 0/0, so factor the numerator: {num} = (x - ({a}))(x + ({b})).\n"
        f"Cancel the common factor: the expression equals x + ({b}) for x != {a}.\n"
        f"Substituting x = {a} gives {a} + ({b}) = {res}.\nThe answer is {res}."
    )
    return Problem(
        "calculus", "limit", text, str(res), ("limit", f"(x**2 + ({b - a})*x - ({a * b}))/(x - ({a}))", a, str(res))
    )


ALGEBRA = (_linear, _both_sides, _quadratic, _system, _expand)
CALCULUS = (_derivative, _integral, _tangent, _limit)
