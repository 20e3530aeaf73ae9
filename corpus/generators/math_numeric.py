"""Math templates with numbers only: arithmetic and word problems (the ``arithmetic`` and ``word`` kinds).

Each template draws its numbers from the `random.Random` it is given and writes a worked solution
ending in "The answer is ...", with a `Problem.check` that math_check recomputes.
"""

from __future__ import annotations

import random
from fractions import Fraction

from corpus.generators.math_check import Problem, frac_text

# --- arithmetic -----------------------------------------------------------------------------------


def _add(r: random.Random) -> Problem:
    a, b, c = (r.randint(100, 99_999) for _ in range(3))
    s1 = a + b
    text = (
        f"Problem: Compute {a} + {b} + {c}.\n\nSolution: Add the numbers one at a time.\n"
        f"Step 1: {a} + {b} = {s1}.\nStep 2: {s1} + {c} = {s1 + c}.\nThe answer is {s1 + c}."
    )
    return Problem("arithmetic", "add", text, str(s1 + c), ("eq", f"{a} + {b} + {c}", str(s1 + c)))


def _mul(r: random.Random) -> Problem:
    a, b = r.randint(12, 9_999), r.randint(12, 999)
    tens, ones = b // 10 * 10, b % 10
    text = (
        f"Problem: What is {a} times {b}?\n\nSolution: Split {b} into {tens} + {ones}.\n"
        f"{a} x {tens} = {a * tens}.\n{a} x {ones} = {a * ones}.\n"
        f"Adding the partial products: {a * tens} + {a * ones} = {a * b}.\nThe answer is {a * b}."
    )
    return Problem("arithmetic", "mul", text, str(a * b), ("eq", f"{a} * {b}", str(a * b)))


def _div(r: random.Random) -> Problem:
    b = r.randint(3, 97)
    q, rem = r.randint(10, 9_999), None
    rem = r.randint(0, b - 1)
    a = b * q + rem
    text = (
        f"Problem: Divide {a} by {b} and give the quotient and remainder.\n\nSolution: "
        f"{b} x {q} = {b * q}, and {a} - {b * q} = {rem}, which is less than {b}.\n"
        f"So {a} = {b} x {q} + {rem}.\nThe answer is quotient {q}, remainder {rem}."
    )
    return Problem("arithmetic", "div", text, f"{q} r {rem}", ("divmod", a, b, q, rem))


def _fractions(r: random.Random) -> Problem:
    a, b, c, d = r.randint(1, 19), r.randint(2, 20), r.randint(1, 19), r.randint(2, 20)
    op = r.choice(["+", "-", "*"])
    x, y = Fraction(a, b), Fraction(c, d)
    res = {"+": x + y, "-": x - y, "*": x * y}[op]
    if op == "*":
        work = f"Multiply numerators and denominators: ({a} x {c})/({b} x {d}) = {a * c}/{b * d}."
    else:
        work = (
            f"Use the common denominator {b * d}: {a * d}/{b * d} {op} {c * b}/{b * d} = "
            f"{a * d + (c * b if op == '+' else -c * b)}/{b * d}."
        )
    text = (
        f"Problem: Compute {a}/{b} {op} {c}/{d} and simplify.\n\nSolution: {work}\n"
        f"In lowest terms this is {frac_text(res)}.\nThe answer is {frac_text(res)}."
    )
    return Problem(
        "arithmetic",
        "fractions",
        text,
        frac_text(res),
        ("eq", f"Rational({a},{b}) {op} Rational({c},{d})", frac_text(res)),
    )


def _percent(r: random.Random) -> Problem:
    p, n = r.choice([5, 10, 12, 15, 20, 25, 30, 35, 40, 45, 60, 75, 80]), r.randint(20, 5000)
    res = Fraction(p * n, 100)
    text = (
        f"Problem: What is {p}% of {n}?\n\nSolution: {p}% means {p}/100.\n"
        f"{p}/100 x {n} = {p * n}/100 = {frac_text(res)}.\nThe answer is {frac_text(res)}."
    )
    return Problem("arithmetic", "percent", text, frac_text(res), ("eq", f"Rational({p}, 100) * {n}", frac_text(res)))


def _order_ops(r: random.Random) -> Problem:
    a, b, c, d = (r.randint(2, 60) for _ in range(4))
    bc = b * c
    res = a + bc - d
    text = (
        f"Problem: Evaluate {a} + {b} x {c} - {d}.\n\nSolution: Multiplication comes first: "
        f"{b} x {c} = {bc}.\nThen work left to right: {a} + {bc} = {a + bc}, and {a + bc} - {d} = {res}.\n"
        f"The answer is {res}."
    )
    return Problem("arithmetic", "order_ops", text, str(res), ("eq", f"{a} + {b} * {c} - {d}", str(res)))


def _gcd(r: random.Random) -> Problem:
    g = r.randint(2, 40)
    a, b = g * r.randint(2, 60), g * r.randint(2, 60)
    steps, x, y = [], max(a, b), min(a, b)
    while y:
        steps.append(f"{x} = {x // y} x {y} + {x % y}")
        x, y = y, x % y
    text = (
        f"Problem: Find the greatest common divisor of {a} and {b}.\n\nSolution: Use the Euclidean algorithm.\n"
        + "\n".join(steps)
        + f"\nThe last non-zero remainder is {x}.\nThe answer is {x}."
    )
    return Problem("arithmetic", "gcd", text, str(x), ("eq", f"gcd({a}, {b})", str(x)))


# --- word problems --------------------------------------------------------------------------------

_NAMES = (
    "Ana",
    "Ben",
    "Chloe",
    "Dev",
    "Elena",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Kemi",
    "Liam",
    "Mei",
    "Noor",
)
_ITEMS = ("notebooks", "apples", "tickets", "pencils", "books", "lamps", "mugs", "plants", "shirts", "candles")


def _shopping(r: random.Random) -> Problem:
    name, item = r.choice(_NAMES), r.choice(_ITEMS)
    n, price, paid = r.randint(2, 40), r.randint(2, 90), None
    total = n * price
    paid = (total // 50 + 1) * 50
    text = (
        f"Problem: {name} buys {n} {item} at ${price} each and pays with ${paid}. How much change does {name} get?\n\n"
        f"Solution: The total cost is {n} x ${price} = ${total}.\n"
        f"The change is ${paid} - ${total} = ${paid - total}.\nThe answer is ${paid - total}."
    )
    return Problem("word", "shopping", text, str(paid - total), ("eq", f"{paid} - {n} * {price}", str(paid - total)))


def _speed(r: random.Random) -> Problem:
    name = r.choice(_NAMES)
    v, t = r.randint(3, 120), r.randint(2, 12)
    mode = r.choice(["drives", "cycles", "walks", "rides a train"])
    text = (
        f"Problem: {name} {mode} at a steady {v} km per hour for {t} hours. How far does {name} travel?\n\n"
        f"Solution: Distance equals speed times time.\n{v} km/h x {t} h = {v * t} km.\nThe answer is {v * t} km."
    )
    return Problem("word", "speed", text, str(v * t), ("eq", f"{v} * {t}", str(v * t)))


def _ages(r: random.Random) -> Problem:
    a, b = r.sample(_NAMES, 2)
    young, k, s = r.randint(3, 30), r.randint(2, 4), None
    old = k * young
    s = old + young
    text = (
        f"Problem: {a} is {k} times as old as {b}. Together their ages add up to {s}. How old is {b}?\n\n"
        f"Solution: Let {b}'s age be x. Then {a}'s age is {k}x, and x + {k}x = {s}.\n"
        f"So {k + 1}x = {s}, which gives x = {young}.\nCheck: {young} + {old} = {s}.\nThe answer is {young}."
    )
    return Problem("word", "ages", text, str(young), ("solve", f"x + {k}*x - {s}", [str(young)]))


def _work(r: random.Random) -> Problem:
    a, b = r.sample(_NAMES, 2)
    ta, tb = r.randint(2, 15), r.randint(2, 15)
    res = Fraction(ta * tb, ta + tb)
    text = (
        f"Problem: {a} can paint a fence in {ta} hours and {b} can paint it in {tb} hours. "
        f"How long do they take working together?\n\nSolution: Together they paint 1/{ta} + 1/{tb} "
        f"= {ta + tb}/{ta * tb} of the fence per hour.\nThe time is the reciprocal: {ta * tb}/{ta + tb} hours.\n"
        f"The answer is {frac_text(res)} hours."
    )
    return Problem(
        "word", "work", text, frac_text(res), ("eq", f"1 / (Rational(1, {ta}) + Rational(1, {tb}))", frac_text(res))
    )


def _discount(r: random.Random) -> Problem:
    item, p = r.choice(_ITEMS), r.choice([10, 15, 20, 25, 30, 40, 50])
    price = r.randint(4, 120) * 4
    off = Fraction(price * p, 100)
    text = (
        f"Problem: A store sells {item} for ${price} and offers a {p}% discount. What is the sale price?\n\n"
        f"Solution: The discount is {p}% of ${price} = ${frac_text(off)}.\n"
        f"The sale price is ${price} - ${frac_text(off)} = ${frac_text(price - off)}.\nThe answer is ${frac_text(price - off)}."
    )
    return Problem(
        "word",
        "discount",
        text,
        frac_text(price - off),
        ("eq", f"{price} * (1 - Rational({p}, 100))", frac_text(price - off)),
    )


def _rectangle(r: random.Random) -> Problem:
    w, h = r.randint(2, 80), r.randint(2, 80)
    text = (
        f"Problem: A rectangular garden is {w} m wide and {h} m long. Find its area and perimeter.\n\n"
        f"Solution: Area = width x length = {w} x {h} = {w * h} square metres.\n"
        f"Perimeter = 2 x (width + length) = 2 x ({w} + {h}) = {2 * (w + h)} m.\n"
        f"The answer is area {w * h}, perimeter {2 * (w + h)}."
    )
    return Problem(
        "word",
        "rectangle",
        text,
        f"{w * h},{2 * (w + h)}",
        ("eq", f"{w} * {h} + 2 * ({w} + {h})", str(w * h + 2 * (w + h))),
    )


def _interest(r: random.Random) -> Problem:
    p, rate, years = r.randint(5, 200) * 100, r.randint(1, 9), r.randint(2, 10)
    i = Fraction(p * rate * years, 100)
    text = (
        f"Problem: ${p} is invested at {rate}% simple interest per year for {years} years. "
        f"How much interest is earned?\n\nSolution: Simple interest = principal x rate x time.\n"
        f"${p} x {rate}/100 x {years} = ${frac_text(i)}.\nThe answer is ${frac_text(i)}."
    )
    return Problem(
        "word", "interest", text, frac_text(i), ("eq", f"{p} * Rational({rate}, 100) * {years}", frac_text(i))
    )


ARITHMETIC = (_add, _mul, _div, _fractions, _percent, _order_ops, _gcd)
WORD = (_shopping, _speed, _ages, _work, _discount, _rectangle, _interest)
