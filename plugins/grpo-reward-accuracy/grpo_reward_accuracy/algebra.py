"""Exact values of small LaTeX expressions: roots, pi, variables and fractions of them, no sympy.

A value is a ratio of two ``Surd`` sums, each term ``c * sqrt(r) * pi**k * x**a * y**b ...``
with a rational ``c`` and a squarefree ``r``. Square roots of distinct squarefree integers are
linearly independent over the rationals, pi is transcendental and distinct monomials are
independent, so a ``Surd`` has exactly one form: two are equal when their terms are. Two ratios
are equal when their cross products are. That settles ``6\\sqrt{2} = \\sqrt{72}``,
``\\pi \\cdot 2 = 2\\pi``, ``(x+1)^2 = x^2 + 2x + 1`` or ``\\frac{1}{1+\\sqrt{2}} = \\sqrt{2} - 1``
in microseconds, exactly.

Anything outside the grammar raises ``Unsupported`` and is left to math-verify: n-th roots,
roots of irrational values, functions, ``e`` and ``i``, mixed numbers, sizes past the limits.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

# Sizes past which evaluation stops (math-verify decides): they keep the work tiny.
MAX_TERMS = 24
MAX_EXACT_BITS = 512
MAX_EXPONENT = 64
MAX_SUM_EXPONENT = 8
MAX_RADICAND = 10**9

_SMALL_PRIMES = [p for p in range(2, 1000) if all(p % q for q in range(2, math.isqrt(p) + 1))]
# math-verify reads letters without case; e and i it may read as constants, so they are no variables.
VARIABLES = frozenset("abcdfghjklmnopqrstuvwxyz")

Monomial = tuple[tuple[str, int], ...]  # ((variable, exponent), ...) sorted; () is 1
Key = tuple[int, int, Monomial]  # (pi power, radicand, monomial)


class Unsupported(Exception):
    """The expression is outside the exact grammar; math-verify has to decide."""


@dataclass(frozen=True)
class Surd:
    """A sum of terms ``c * sqrt(r) * pi**k * monomial``, in its unique sorted form."""

    terms: tuple[tuple[int, int, Monomial, Fraction], ...]

    @staticmethod
    def of(items: dict[Key, Fraction]) -> Surd:
        terms = tuple(sorted((k, r, m, c) for (k, r, m), c in items.items() if c != 0))
        if len(terms) > MAX_TERMS:
            raise Unsupported("too many terms")
        for *_, c in terms:
            if max(c.numerator.bit_length(), c.denominator.bit_length()) > MAX_EXACT_BITS:
                raise Unsupported("numbers too large")
        return Surd(terms)

    @staticmethod
    def rational(value: Fraction | int) -> Surd:
        return Surd.of({(0, 1, ()): Fraction(value)})

    @property
    def as_rational(self) -> Fraction | None:
        if not self.terms:
            return Fraction(0)
        if len(self.terms) == 1 and self.terms[0][:3] == (0, 1, ()):
            return self.terms[0][3]
        return None

    @property
    def variables(self) -> set[str]:
        return {v for _, _, m, _ in self.terms for v, _ in m}

    def approx(self) -> float:
        if self.variables:
            return math.nan  # not one number
        return sum(float(c) * math.sqrt(r) * math.pi**k for k, r, _, c in self.terms)

    def __add__(self, other: Surd) -> Surd:
        items = {(k, r, m): c for k, r, m, c in self.terms}
        for k, r, m, c in other.terms:
            items[k, r, m] = items.get((k, r, m), Fraction(0)) + c
        return Surd.of(items)

    def __neg__(self) -> Surd:
        return Surd(tuple((k, r, m, -c) for k, r, m, c in self.terms))

    def __mul__(self, other: Surd) -> Surd:
        if len(self.terms) * len(other.terms) > MAX_TERMS * MAX_TERMS:
            raise Unsupported("product too large")
        items: dict[Key, Fraction] = {}
        for k1, r1, m1, c1 in self.terms:
            for k2, r2, m2, c2 in other.terms:
                g = math.gcd(r1, r2)  # sqrt(r1 r2) = g sqrt(r1 r2 / g^2), still squarefree
                key = (k1 + k2, r1 * r2 // (g * g), _times(m1, m2))
                items[key] = items.get(key, Fraction(0)) + c1 * c2 * g
        return Surd.of(items)

    def monomial_inverse(self) -> Surd | None:
        """1 / self when self is a single term, else None."""
        if len(self.terms) != 1:
            return None
        k, r, m, c = self.terms[0]
        # 1 / (c sqrt(r) pi^k m) = sqrt(r) / (c r pi^k m)
        return Surd.of({(-k, r, tuple((v, -e) for v, e in m)): 1 / (c * r)})


def _times(a: Monomial, b: Monomial) -> Monomial:
    exponents = dict(a)
    for v, e in b:
        exponents[v] = exponents.get(v, 0) + e
    if any(abs(e) > MAX_EXPONENT for e in exponents.values()):
        raise Unsupported("exponent too large")
    return tuple(sorted((v, e) for v, e in exponents.items() if e))


ONE = Surd.rational(1)


@dataclass(frozen=True)
class Ratio:
    """``num / den``; a single-term denominator is folded into the numerator, so polynomials
    (and numbers) always have ``den == 1`` and compare by their numerator alone."""

    num: Surd
    den: Surd = ONE

    @staticmethod
    def make(num: Surd, den: Surd) -> Ratio:
        if not den.terms:
            raise ZeroDivisionError("division by zero")
        inverse = den.monomial_inverse()
        if inverse is not None:
            return Ratio(num * inverse, ONE)
        return Ratio(num, den)

    @property
    def as_rational(self) -> Fraction | None:
        return self.num.as_rational if self.den == ONE else None

    @property
    def key(self) -> Surd | None:
        """A hashable exact form, when there is one (no denominator left)."""
        return self.num if self.den == ONE else None

    def approx(self) -> float:
        return self.num.approx() / self.den.approx()

    def equals(self, other: Ratio) -> bool:
        if self.den == other.den:
            return self.num == other.num
        return self.num * other.den == other.num * self.den

    def __add__(self, other: Ratio) -> Ratio:
        if self.den == other.den:
            return Ratio.make(self.num + other.num, self.den)
        return Ratio.make(self.num * other.den + other.num * self.den, self.den * other.den)

    def __neg__(self) -> Ratio:
        return Ratio(-self.num, self.den)

    def __sub__(self, other: Ratio) -> Ratio:
        return self + (-other)

    def __mul__(self, other: Ratio) -> Ratio:
        return Ratio.make(self.num * other.num, self.den * other.den)

    def __truediv__(self, other: Ratio) -> Ratio:
        return Ratio.make(self.num * other.den, self.den * other.num)

    def power(self, exponent: int) -> Ratio:
        single = len(self.num.terms) <= 1 and self.den == ONE
        if abs(exponent) > (MAX_EXPONENT if single else MAX_SUM_EXPONENT):
            raise Unsupported("exponent too large")
        num, den = ONE, ONE
        for _ in range(abs(exponent)):
            num, den = num * self.num, den * self.den
        return Ratio.make(den, num) if exponent < 0 else Ratio.make(num, den)

    def sqrt(self) -> Ratio:
        value = self.as_rational
        if value is None or value < 0:
            raise Unsupported("root of an irrational or negative value")
        # sqrt(p/q) = sqrt(p q) / q, and p q = m^2 r with r squarefree.
        m, r = _split_square(value.numerator * value.denominator)
        return Ratio(Surd.of({(0, r, ()): Fraction(m, value.denominator)}))


def _split_square(n: int) -> tuple[int, int]:
    """n = m^2 * r with r squarefree, for n up to MAX_RADICAND."""
    if n > MAX_RADICAND:
        raise Unsupported("radicand too large")
    m, r = 1, 1
    for p in _SMALL_PRIMES:
        if p * p > n:
            break
        count = 0
        while n % p == 0:
            n //= p
            count += 1
        m *= p ** (count // 2)
        r *= p ** (count % 2)
    # What is left has no prime factor below 1000 and is below 1000^3: 1, p, p*q or p^2.
    root = math.isqrt(n)
    if root * root == n:
        m *= root
    else:
        r *= n
    return m, r


# -- the grammar -----------------------------------------------------------------------------
_TOKEN = re.compile(r" ?(\d+(?:\.\d+)?|\.\d+|\\[A-Za-z]+|[A-Za-z]|[-+*/^(){}\[\]])")
_IMPLICIT = ("(", "{", "\\frac", "\\sqrt", "\\pi")


def evaluate(text: str) -> tuple[Ratio, bool]:
    """The exact value of a canonical LaTeX expression, and whether it has a decimal point."""
    parser = _Parser(text)
    value = parser.expr()
    if parser.at != len(parser.tokens):
        raise Unsupported("trailing tokens")
    return value, parser.decimal


class _Parser:
    """Recursive descent: expr = term (+|- term)*; term = factor ((*|/|implicit) factor)*."""

    def __init__(self, text: str):
        self.tokens: list[str] = []
        at = 0
        while at < len(text):
            match = _TOKEN.match(text, at)
            if match is None:
                raise Unsupported(text[at:])
            self.tokens.append(match.group(1))
            at = match.end()
        self.at = 0
        self.decimal = False

    def peek(self) -> str | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise Unsupported(f"expected {expected}")
        self.at += 1
        return token

    def expr(self) -> Ratio:
        value = self.term()
        while self.peek() in ("+", "-"):
            value = value + self.term() if self.take() == "+" else value - self.term()
        return value

    def term(self) -> Ratio:
        value = self.factor()
        while True:
            token = self.peek()
            if token in ("*", "\\cdot", "\\times"):
                self.take()
                value = value * self.factor()
            elif token in ("/", "\\div"):
                self.take()
                value = value / self.factor()
            elif token == "\\frac" and self.tokens[self.at - 1][0].isdigit():
                raise Unsupported("mixed number")  # 1\frac{1}{2} is 3/2 to math-verify: its call
            elif token is not None and (token[0].isdigit() or token in _IMPLICIT or token.isalpha()):
                value = value * self.factor()  # implicit product: 6\sqrt{2}, 2\pi, 14x
            else:
                return value

    def factor(self) -> Ratio:
        if self.peek() in ("-", "+"):
            return -self.factor() if self.take() == "-" else self.factor()
        base = self.atom()
        if self.peek() == "^":
            self.take()
            # latex2sympy (so math-verify) reads 2^10 as 2**10, not as LaTeX's 2^1 0.
            exponent = (self.atom() if self.peek() == "{" else Ratio(Surd.rational(Fraction(self.take())))).as_rational
            if exponent is None or exponent.denominator != 1:
                raise Unsupported("exponent")
            base = base.power(int(exponent))
        return base

    def argument(self) -> Ratio:
        """A ``{...}`` argument or a single digit (``\\sqrt2``)."""
        if self.peek() == "{":
            return self.atom()
        token = self.take()
        if len(token) != 1 or not token.isdigit():
            raise Unsupported(token)
        return Ratio(Surd.rational(int(token)))

    def atom(self) -> Ratio:
        token = self.take()
        if token[0].isdigit() or token[0] == ".":
            self.decimal = self.decimal or "." in token
            return Ratio(Surd.rational(Fraction(token)))
        if token in ("(", "{"):
            value = self.expr()
            self.take(")" if token == "(" else "}")
            return value
        if token == "\\pi":
            return Ratio(Surd.of({(1, 1, ()): Fraction(1)}))
        if len(token) == 1 and token.lower() in VARIABLES:
            return Ratio(Surd.of({(0, 1, ((token.lower(), 1),)): Fraction(1)}))
        if token == "\\frac":
            digits = self.peek() or ""
            if len(digits) == 2 and digits.isdigit():  # \frac12
                self.take()
                return Ratio(Surd.rational(Fraction(int(digits[0]), int(digits[1]))))
            top = self.argument()
            return top / self.argument()
        if token == "\\sqrt":
            if self.peek() == "[":
                raise Unsupported("n-th root")
            return self.argument().sqrt()
        raise Unsupported(token)
