"""Built-in generator of worked math problems (arithmetic, algebra, calculus, word problems).

Every problem carries its answer, which sympy recomputes independently before the document is
emitted (``verify``); a problem sympy disagrees with raises, so no wrong answer reaches a corpus.
Documents are deterministic in (seed, index): document ``i`` draws from ``random.Random(f"{seed}:{i}")``,
so any range of indices can be generated on any worker.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Iterator

import sympy as sp

KINDS = ("arithmetic", "algebra", "calculus", "word")
_X = sp.Symbol("x")


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


def _frac(q: Fraction) -> str:
    return str(q.numerator) if q.denominator == 1 else f"{q.numerator}/{q.denominator}"


def _poly_str(coeffs: list[int]) -> str:
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


# --- arithmetic -----------------------------------------------------------------------------------

def _add(r: random.Random) -> Problem:
    a, b, c = (r.randint(100, 99_999) for _ in range(3))
    s1 = a + b
    text = (f"Problem: Compute {a} + {b} + {c}.\n\nSolution: Add the numbers one at a time.\n"
            f"Step 1: {a} + {b} = {s1}.\nStep 2: {s1} + {c} = {s1 + c}.\nThe answer is {s1 + c}.")
    return Problem("arithmetic", "add", text, str(s1 + c), ("eq", f"{a} + {b} + {c}", str(s1 + c)))


def _mul(r: random.Random) -> Problem:
    a, b = r.randint(12, 9_999), r.randint(12, 999)
    tens, ones = b // 10 * 10, b % 10
    text = (f"Problem: What is {a} times {b}?\n\nSolution: Split {b} into {tens} + {ones}.\n"
            f"{a} x {tens} = {a * tens}.\n{a} x {ones} = {a * ones}.\n"
            f"Adding the partial products: {a * tens} + {a * ones} = {a * b}.\nThe answer is {a * b}.")
    return Problem("arithmetic", "mul", text, str(a * b), ("eq", f"{a} * {b}", str(a * b)))


def _div(r: random.Random) -> Problem:
    b = r.randint(3, 97)
    q, rem = r.randint(10, 9_999), None
    rem = r.randint(0, b - 1)
    a = b * q + rem
    text = (f"Problem: Divide {a} by {b} and give the quotient and remainder.\n\nSolution: "
            f"{b} x {q} = {b * q}, and {a} - {b * q} = {rem}, which is less than {b}.\n"
            f"So {a} = {b} x {q} + {rem}.\nThe answer is quotient {q}, remainder {rem}.")
    return Problem("arithmetic", "div", text, f"{q} r {rem}", ("divmod", a, b, q, rem))


def _fractions(r: random.Random) -> Problem:
    a, b, c, d = r.randint(1, 19), r.randint(2, 20), r.randint(1, 19), r.randint(2, 20)
    op = r.choice(["+", "-", "*"])
    x, y = Fraction(a, b), Fraction(c, d)
    res = {"+": x + y, "-": x - y, "*": x * y}[op]
    if op == "*":
        work = f"Multiply numerators and denominators: ({a} x {c})/({b} x {d}) = {a * c}/{b * d}."
    else:
        work = (f"Use the common denominator {b * d}: {a * d}/{b * d} {op} {c * b}/{b * d} = "
                f"{a * d + (c * b if op == '+' else -c * b)}/{b * d}.")
    text = (f"Problem: Compute {a}/{b} {op} {c}/{d} and simplify.\n\nSolution: {work}\n"
            f"In lowest terms this is {_frac(res)}.\nThe answer is {_frac(res)}.")
    return Problem("arithmetic", "fractions", text, _frac(res), ("eq", f"Rational({a},{b}) {op} Rational({c},{d})", _frac(res)))


def _percent(r: random.Random) -> Problem:
    p, n = r.choice([5, 10, 12, 15, 20, 25, 30, 35, 40, 45, 60, 75, 80]), r.randint(20, 5000)
    res = Fraction(p * n, 100)
    text = (f"Problem: What is {p}% of {n}?\n\nSolution: {p}% means {p}/100.\n"
            f"{p}/100 x {n} = {p * n}/100 = {_frac(res)}.\nThe answer is {_frac(res)}.")
    return Problem("arithmetic", "percent", text, _frac(res), ("eq", f"Rational({p}, 100) * {n}", _frac(res)))


def _order_ops(r: random.Random) -> Problem:
    a, b, c, d = (r.randint(2, 60) for _ in range(4))
    bc = b * c
    res = a + bc - d
    text = (f"Problem: Evaluate {a} + {b} x {c} - {d}.\n\nSolution: Multiplication comes first: "
            f"{b} x {c} = {bc}.\nThen work left to right: {a} + {bc} = {a + bc}, and {a + bc} - {d} = {res}.\n"
            f"The answer is {res}.")
    return Problem("arithmetic", "order_ops", text, str(res), ("eq", f"{a} + {b} * {c} - {d}", str(res)))


def _gcd(r: random.Random) -> Problem:
    g = r.randint(2, 40)
    a, b = g * r.randint(2, 60), g * r.randint(2, 60)
    steps, x, y = [], max(a, b), min(a, b)
    while y:
        steps.append(f"{x} = {x // y} x {y} + {x % y}")
        x, y = y, x % y
    text = (f"Problem: Find the greatest common divisor of {a} and {b}.\n\nSolution: Use the Euclidean algorithm.\n"
            + "\n".join(steps) + f"\nThe last non-zero remainder is {x}.\nThe answer is {x}.")
    return Problem("arithmetic", "gcd", text, str(x), ("eq", f"gcd({a}, {b})", str(x)))


# --- algebra --------------------------------------------------------------------------------------

def _linear(r: random.Random) -> Problem:
    a, x0, b = r.choice([i for i in range(-12, 13) if i not in (0, 1)]), r.randint(-40, 40), r.randint(-90, 90)
    c = a * x0 + b
    text = (f"Problem: Solve {a}x {'+' if b >= 0 else '-'} {abs(b)} = {c} for x.\n\nSolution: "
            f"Subtract {b} from both sides: {a}x = {c} - ({b}) = {c - b}.\n"
            f"Divide both sides by {a}: x = {c - b}/{a} = {x0}.\nCheck: {a} x ({x0}) + ({b}) = {c}.\nThe answer is x = {x0}.")
    return Problem("algebra", "linear", text, str(x0), ("solve", f"{a}*x + ({b}) - ({c})", [str(x0)]))


def _both_sides(r: random.Random) -> Problem:
    a, c = r.randint(2, 15), r.randint(-15, 15)
    while c == a:
        c = r.randint(-15, 15)
    x0 = Fraction(r.randint(-30, 30))
    b = r.randint(-50, 50)
    d = (a - c) * x0 + b
    d = int(d)
    text = (f"Problem: Solve {a}x + {b} = {c}x + {d}.\n\nSolution: Collect the x terms on the left: "
            f"{a}x - {c}x = {d} - {b}.\nSo {a - c}x = {d - b}.\nx = {d - b}/{a - c} = {_frac(x0)}.\n"
            f"The answer is x = {_frac(x0)}.")
    return Problem("algebra", "both_sides", text, _frac(x0), ("solve", f"{a}*x + ({b}) - ({c}*x + ({d}))", [_frac(x0)]))


def _quadratic(r: random.Random) -> Problem:
    p, q = r.randint(-40, 40), r.randint(-40, 40)
    b, c = -(p + q), p * q
    roots = sorted({p, q})
    text = (f"Problem: Solve x^2 {'+' if b >= 0 else '-'} {abs(b)}x {'+' if c >= 0 else '-'} {abs(c)} = 0.\n\n"
            f"Solution: Look for two numbers whose product is {c} and whose sum is {b}: {-p} and {-q}.\n"
            f"So the equation factors as (x - ({p}))(x - ({q})) = 0.\n"
            f"Setting each factor to zero gives x = {p} or x = {q}.\n"
            f"The answer is x = {' or x = '.join(map(str, roots))}.")
    return Problem("algebra", "quadratic", text, ",".join(map(str, roots)), ("solve", f"x**2 + ({b})*x + ({c})", [str(v) for v in roots]))


def _system(r: random.Random) -> Problem:
    x0, y0 = r.randint(-20, 20), r.randint(-20, 20)
    a1, b1, a2, b2 = (r.randint(1, 9) for _ in range(4))
    while a1 * b2 - a2 * b1 == 0:
        b2 = r.randint(1, 9)
    c1, c2 = a1 * x0 + b1 * y0, a2 * x0 + b2 * y0
    det = a1 * b2 - a2 * b1
    text = (f"Problem: Solve the system {a1}x + {b1}y = {c1} and {a2}x + {b2}y = {c2}.\n\nSolution: "
            f"Multiply the first equation by {b2} and the second by {b1}, then subtract to eliminate y:\n"
            f"({a1 * b2} - {a2 * b1})x = {c1 * b2} - {c2 * b1}, so {det}x = {c1 * b2 - c2 * b1} and x = {x0}.\n"
            f"Substitute into the first equation: {b1}y = {c1} - {a1 * x0} = {c1 - a1 * x0}, so y = {y0}.\n"
            f"The answer is x = {x0}, y = {y0}.")
    return Problem("algebra", "system", text, f"{x0},{y0}", ("system", (a1, b1, c1, a2, b2, c2), (x0, y0)))


def _expand(r: random.Random) -> Problem:
    a, b = r.randint(-40, 40), r.randint(-40, 40)
    coeffs = [1, a + b, a * b]
    text = (f"Problem: Expand (x + {a})(x + {b}).\n\nSolution: Multiply each term of the first factor by the second:\n"
            f"x x x = x^2, x x {b} + {a} x x = {a + b}x, and {a} x {b} = {a * b}.\n"
            f"The answer is {_poly_str(coeffs)}.")
    return Problem("algebra", "expand", text, _poly_str(coeffs), ("poly_eq", f"(x + ({a}))*(x + ({b}))", coeffs))


# --- calculus -------------------------------------------------------------------------------------

def _rand_poly(r: random.Random, deg: int) -> list[int]:
    coeffs = [r.randint(-9, 9) for _ in range(deg + 1)]
    coeffs[0] = coeffs[0] or r.randint(1, 9)
    return coeffs


def _derivative(r: random.Random) -> Problem:
    deg = r.randint(2, 5)
    coeffs = _rand_poly(r, deg)
    d = [c * (deg - i) for i, c in enumerate(coeffs[:-1])]
    terms = [f"d/dx({_poly_str([c] + [0] * (deg - i))}) = {_poly_str([c * (deg - i)] + [0] * (deg - i - 1))}"
             for i, c in enumerate(coeffs[:-1]) if c]
    text = (f"Problem: Differentiate f(x) = {_poly_str(coeffs)}.\n\nSolution: Apply the power rule, "
            f"d/dx(x^n) = n x^(n-1), to each term:\n" + "\n".join(terms)
            + f"\nThe constant term has derivative 0.\nThe answer is f'(x) = {_poly_str(d)}.")
    return Problem("calculus", "derivative", text, _poly_str(d), ("diff", coeffs, d))


def _integral(r: random.Random) -> Problem:
    deg = r.randint(1, 3)
    coeffs = _rand_poly(r, deg)
    lo, hi = sorted(r.sample(range(-4, 6), 2))
    anti = [Fraction(c, deg - i + 1) for i, c in enumerate(coeffs)] + [Fraction(0)]
    F = lambda t: sum(a * Fraction(t) ** (deg + 1 - i) for i, a in enumerate(anti))  # noqa: E731
    res = F(hi) - F(lo)
    anti_s = " + ".join(f"({_frac(a)})x^{deg + 1 - i}" for i, a in enumerate(anti[:-1]) if a)
    text = (f"Problem: Evaluate the integral of {_poly_str(coeffs)} from x = {lo} to x = {hi}.\n\n"
            f"Solution: An antiderivative is F(x) = {anti_s}.\n"
            f"F({hi}) = {_frac(F(hi))} and F({lo}) = {_frac(F(lo))}.\n"
            f"The integral is F({hi}) - F({lo}) = {_frac(res)}.\nThe answer is {_frac(res)}.")
    return Problem("calculus", "integral", text, _frac(res), ("integral", coeffs, lo, hi, _frac(res)))


def _tangent(r: random.Random) -> Problem:
    a, b, c, x0 = r.randint(1, 9), r.randint(-9, 9), r.randint(-9, 9), r.randint(-5, 5)
    slope = 2 * a * x0 + b
    y0 = a * x0 * x0 + b * x0 + c
    text = (f"Problem: Find the slope of the tangent line to y = {_poly_str([a, b, c])} at x = {x0}.\n\n"
            f"Solution: The derivative is y' = {_poly_str([2 * a, b])}.\n"
            f"At x = {x0}: y' = {2 * a} x ({x0}) + ({b}) = {slope}.\nThe point of tangency is ({x0}, {y0}).\n"
            f"The answer is {slope}.")
    return Problem("calculus", "tangent", text, str(slope), ("slope", [a, b, c], x0, slope))


def _limit(r: random.Random) -> Problem:
    a, b = r.randint(-40, 40), r.randint(-40, 40)
    res = a + b  # lim_{x->a} (x-a)(x+b)/(x-a) = a + b
    num = _poly_str([1, b - a, -a * b])
    text = (f"Problem: Compute the limit as x approaches {a} of ({num})/(x - ({a})).\n\n"
            f"Solution: Direct substitution gives 0/0, so factor the numerator: {num} = (x - ({a}))(x + ({b})).\n"
            f"Cancel the common factor: the expression equals x + ({b}) for x != {a}.\n"
            f"Substituting x = {a} gives {a} + ({b}) = {res}.\nThe answer is {res}.")
    return Problem("calculus", "limit", text, str(res), ("limit", f"(x**2 + ({b - a})*x - ({a * b}))/(x - ({a}))", a, str(res)))


# --- word problems --------------------------------------------------------------------------------

_NAMES = ("Ana", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi", "Liam", "Mei", "Noor")
_ITEMS = ("notebooks", "apples", "tickets", "pencils", "books", "lamps", "mugs", "plants", "shirts", "candles")


def _shopping(r: random.Random) -> Problem:
    name, item = r.choice(_NAMES), r.choice(_ITEMS)
    n, price, paid = r.randint(2, 40), r.randint(2, 90), None
    total = n * price
    paid = (total // 50 + 1) * 50
    text = (f"Problem: {name} buys {n} {item} at ${price} each and pays with ${paid}. How much change does {name} get?\n\n"
            f"Solution: The total cost is {n} x ${price} = ${total}.\n"
            f"The change is ${paid} - ${total} = ${paid - total}.\nThe answer is ${paid - total}.")
    return Problem("word", "shopping", text, str(paid - total), ("eq", f"{paid} - {n} * {price}", str(paid - total)))


def _speed(r: random.Random) -> Problem:
    name = r.choice(_NAMES)
    v, t = r.randint(3, 120), r.randint(2, 12)
    mode = r.choice(["drives", "cycles", "walks", "rides a train"])
    text = (f"Problem: {name} {mode} at a steady {v} km per hour for {t} hours. How far does {name} travel?\n\n"
            f"Solution: Distance equals speed times time.\n{v} km/h x {t} h = {v * t} km.\nThe answer is {v * t} km.")
    return Problem("word", "speed", text, str(v * t), ("eq", f"{v} * {t}", str(v * t)))


def _ages(r: random.Random) -> Problem:
    a, b = r.sample(_NAMES, 2)
    young, k, s = r.randint(3, 30), r.randint(2, 4), None
    old = k * young
    s = old + young
    text = (f"Problem: {a} is {k} times as old as {b}. Together their ages add up to {s}. How old is {b}?\n\n"
            f"Solution: Let {b}'s age be x. Then {a}'s age is {k}x, and x + {k}x = {s}.\n"
            f"So {k + 1}x = {s}, which gives x = {young}.\nCheck: {young} + {old} = {s}.\nThe answer is {young}.")
    return Problem("word", "ages", text, str(young), ("solve", f"x + {k}*x - {s}", [str(young)]))


def _work(r: random.Random) -> Problem:
    a, b = r.sample(_NAMES, 2)
    ta, tb = r.randint(2, 15), r.randint(2, 15)
    res = Fraction(ta * tb, ta + tb)
    text = (f"Problem: {a} can paint a fence in {ta} hours and {b} can paint it in {tb} hours. "
            f"How long do they take working together?\n\nSolution: Together they paint 1/{ta} + 1/{tb} "
            f"= {ta + tb}/{ta * tb} of the fence per hour.\nThe time is the reciprocal: {ta * tb}/{ta + tb} hours.\n"
            f"The answer is {_frac(res)} hours.")
    return Problem("word", "work", text, _frac(res), ("eq", f"1 / (Rational(1, {ta}) + Rational(1, {tb}))", _frac(res)))


def _discount(r: random.Random) -> Problem:
    item, p = r.choice(_ITEMS), r.choice([10, 15, 20, 25, 30, 40, 50])
    price = r.randint(4, 120) * 4
    off = Fraction(price * p, 100)
    text = (f"Problem: A store sells {item} for ${price} and offers a {p}% discount. What is the sale price?\n\n"
            f"Solution: The discount is {p}% of ${price} = ${_frac(off)}.\n"
            f"The sale price is ${price} - ${_frac(off)} = ${_frac(price - off)}.\nThe answer is ${_frac(price - off)}.")
    return Problem("word", "discount", text, _frac(price - off), ("eq", f"{price} * (1 - Rational({p}, 100))", _frac(price - off)))


def _rectangle(r: random.Random) -> Problem:
    w, h = r.randint(2, 80), r.randint(2, 80)
    text = (f"Problem: A rectangular garden is {w} m wide and {h} m long. Find its area and perimeter.\n\n"
            f"Solution: Area = width x length = {w} x {h} = {w * h} square metres.\n"
            f"Perimeter = 2 x (width + length) = 2 x ({w} + {h}) = {2 * (w + h)} m.\n"
            f"The answer is area {w * h}, perimeter {2 * (w + h)}.")
    return Problem("word", "rectangle", text, f"{w * h},{2 * (w + h)}", ("eq", f"{w} * {h} + 2 * ({w} + {h})", str(w * h + 2 * (w + h))))


def _interest(r: random.Random) -> Problem:
    p, rate, years = r.randint(5, 200) * 100, r.randint(1, 9), r.randint(2, 10)
    i = Fraction(p * rate * years, 100)
    text = (f"Problem: ${p} is invested at {rate}% simple interest per year for {years} years. "
            f"How much interest is earned?\n\nSolution: Simple interest = principal x rate x time.\n"
            f"${p} x {rate}/100 x {years} = ${_frac(i)}.\nThe answer is ${_frac(i)}.")
    return Problem("word", "interest", text, _frac(i), ("eq", f"{p} * Rational({rate}, 100) * {years}", _frac(i)))


TEMPLATES: dict[str, tuple[Callable[[random.Random], Problem], ...]] = {
    "arithmetic": (_add, _mul, _div, _fractions, _percent, _order_ops, _gcd),
    "algebra": (_linear, _both_sides, _quadratic, _system, _expand),
    "calculus": (_derivative, _integral, _tangent, _limit),
    "word": (_shopping, _speed, _ages, _work, _discount, _rectangle, _interest),
}


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
        poly = sp.Poly(sp.sympify(expr), _X)
        ok = sorted(sp.roots(poly, _X)) == sorted(sp.Rational(v) for v in roots)
    elif method == "system":
        (a1, b1, c1, a2, b2, c2), want = args
        y = sp.Symbol("y")
        sol = sp.solve([a1 * _X + b1 * y - c1, a2 * _X + b2 * y - c2], [_X, y], dict=True)
        ok = len(sol) == 1 and (sol[0][_X], sol[0][y]) == tuple(map(sp.Integer, want))
    elif method == "poly_eq":
        expr, coeffs = args
        ok = sp.Poly(sp.sympify(expr), _X).all_coeffs() == [sp.Integer(c) for c in coeffs] or \
            sp.Poly(sp.sympify(expr), _X) == sp.Poly(coeffs, _X)
    elif method == "diff":
        coeffs, d = args
        ok = sp.Poly(coeffs, _X).diff(_X) == sp.Poly(d, _X)
    elif method == "integral":
        coeffs, lo, hi, want = args
        anti = sp.Poly(coeffs, _X, domain="QQ").integrate()
        ok = anti.eval(hi) - anti.eval(lo) == sp.Rational(want)
    elif method == "slope":
        coeffs, x0, want = args
        ok = sp.Poly(coeffs, _X).diff(_X).eval(x0) == want
    elif method == "limit":
        expr, a, want = args
        num, den = sp.fraction(sp.sympify(expr))
        q, rem = sp.div(sp.Poly(num, _X), sp.Poly(den, _X))
        ok = rem.is_zero and q.eval(a) == sp.Rational(want)
    else:
        raise MathVerificationError(f"unknown check {method!r}")
    if not ok:
        raise MathVerificationError(f"sympy disagrees with {problem.template} answer {problem.answer!r}: {problem.text!r}")
    return True


def generate_problem(seed: int, index: int, kinds: tuple[str, ...] = KINDS) -> Problem:
    """The problem at `index` for `seed` (deterministic); raises ValueError for an unknown kind."""
    for k in kinds:
        if k not in TEMPLATES:
            raise ValueError(f"unknown math kind {k!r}; kinds are {', '.join(KINDS)}")
    r = random.Random(f"{seed}:{index}")
    kind = kinds[r.randrange(len(kinds))]
    templates = TEMPLATES[kind]
    return templates[r.randrange(len(templates))](r)


def generate(seed: int, start: int, stop: int, kinds: tuple[str, ...] = KINDS,
             check: bool = True) -> Iterator[tuple[int, Problem]]:
    """Yield (index, problem) for indices in [start, stop), each verified by sympy when `check`."""
    for i in range(start, stop):
        p = generate_problem(seed, i, kinds)
        if check:
            verify(p)
        yield i, p
