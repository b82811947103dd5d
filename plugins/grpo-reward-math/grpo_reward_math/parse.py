"""From LaTeX-ish or plain answer text to sympy objects, refusing what could hang.

Text is cleaned (``\\left``, spacing, ``\\text{}``, units, unicode) and its top-level shape is
read here, by math-equiv's own rules (equation, inequality, interval, union, set, tuple, list,
``\\pm``); each expression in it is read by latex2sympy2_extended, the LaTeX parser that
math-verify ships, which builds the sympy tree unevaluated. Only trees made of arithmetic and
whitelisted functions pass, and only after a size guard (digits of every power, factorial and
exponential, node count, nesting) are they evaluated. Anything unparsable or too large comes
back as ``None``.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Any

import sympy
from latex2sympy2_extended import NormalizationConfig, latex2sympy
from latex2sympy2_extended.latex2sympy2 import ConversionConfig

from grpo_host.answers import balanced_group
from grpo_reward_math.extract import is_prose_token

# A final answer or one side of a step is never longer than this. latex2sympy's ANTLR parser
# costs up to ~2 ms a character on a busy core (bench/math_parse.py), so 600 keeps the worst
# answer near a second, well inside math-equiv's 5 s budget.
MAX_CHARS = 600
MAX_DEPTH = 40  # bracket nesting
MAX_NODES = 2000  # sympy tree size
MAX_DIGITS = 10_000  # refuse numbers with more decimal digits than this
MAX_SYMBOLIC_POWER = 1000  # (x+1)^n with larger n is refused
MAX_ELEMENTS = 64  # members of a set, list or tuple

_LOG10_2 = math.log10(2)


@dataclass(frozen=True)
class MathObj:
    """A parsed answer.

    kind ``expr``: ``value`` is a sympy expression. ``eq``: ``(lhs, rhs)``. ``set``: a tuple of
    components, ``("interval", left, right, left_open, right_open)`` or ``("point", expr)``.
    ``tuple`` (ordered) and ``list`` (order-free, a bracket-less comma list): a tuple of
    ``MathObj`` of kind ``expr`` or ``eq``.
    """

    kind: str
    value: Any
    text: str = ""

    def __str__(self) -> str:
        if self.kind == "expr":
            return str(self.value)
        if self.kind == "eq":
            return f"{self.value[0]} = {self.value[1]}"
        if self.kind == "set":
            return " U ".join(_component_str(c) for c in self.value) or "EmptySet"
        inner = ", ".join(str(v) for v in self.value)
        return f"({inner})" if self.kind == "tuple" else inner


def _component_str(c: tuple) -> str:
    if c[0] == "point":
        return "{" + str(c[1]) + "}"
    return f"{'(' if c[3] else '['}{c[1]}, {c[2]}{')' if c[4] else ']'}"


# -- cleaning -------------------------------------------------------------------------------
_UNICODE = {
    "−": "-", "–": "-", "×": "*", "·": "*", "⋅": "*", "÷": "/", "√": "\\sqrt", "π": "\\pi",
    "∞": "\\infty", "≤": "\\le ", "≥": "\\ge ", "≠": "\\ne ", "∪": "\\cup ", "∈": "\\in ",
    "∅": "\\emptyset ", "±": "\\pm ", "°": "", "²": "^2", "³": "^3", "\u200b": "", "\xa0": " ",
}
_SPACING = re.compile(
    r"\\(?:left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|big|Big|bigg|displaystyle|textstyle|limits)(?![A-Za-z])"
    r"|\\[,;:! ]|\\q?quad(?![A-Za-z])|~"
)
_TEXT_CMD = re.compile(r"\\(?:text|textbf|textit|textrm|mbox|hbox)\s*\{")
_KEEP_CMD = re.compile(r"\\(?:mathrm|mathbf|mathit|boldsymbol|operatorname|mathbb|bm)\s*\{")


def clean(text: str) -> str:
    """Strip presentation: delimiters, sizing, spacing, text and units, degree and percent."""
    s = str(text).strip()
    for old, new in _UNICODE.items():
        s = s.replace(old, new)
    s = re.sub(r"^\$+|\$+$", "", s).strip()
    s = re.sub(r"^\\[(\[]|\\[)\]]$", "", s).strip()
    s = re.sub(r"\\(?:left|right)\s*\.", "", s)  # invisible delimiters
    s = _SPACING.sub(" ", s)
    s = _replace_groups(s, _TEXT_CMD, lambda inner: " , " if inner.strip().lower() in ("or", "and") else " ")
    s = _replace_groups(s, _KEEP_CMD, lambda inner: inner)
    s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?", "", s)
    s = re.sub(r"\\(?:d|t)frac(?![A-Za-z])", r"\\frac", s)
    s = s.replace("\\%", "").replace("%", "").replace("\\$", "")
    s = re.sub(r"\s+(?:or|and)\s+", " , ", s)
    return s.strip().rstrip(" .;").strip()


def _replace_groups(s: str, opener: re.Pattern, fn) -> str:
    """Replace ``\\cmd{...}`` (balanced) by ``fn(inner)``; unbalanced leaves the text as it was."""
    out, pos = [], 0
    for _ in range(200):
        match = opener.search(s, pos)
        if not match:
            break
        group = balanced_group(s, match.end() - 1)
        if group is None:
            break
        out.append(s[pos : match.start()] + fn(group[0]))
        pos = group[1]
    out.append(s[pos:])
    return "".join(out)


# -- top-level shape ------------------------------------------------------------------------
_OPEN, _CLOSE = "([{", ")]}"


def _depth_ok(s: str) -> bool:
    depth = peak = 0
    for ch in s:
        if ch in _OPEN:
            depth += 1
            peak = max(peak, depth)
        elif ch in _CLOSE:
            depth -= 1
    return peak <= MAX_DEPTH


def split_top(s: str, seps: re.Pattern) -> list[str]:
    """Split ``s`` at matches of ``seps`` that lie outside every bracket."""
    return split_top_with_seps(s, seps)[0]


def split_top_with_seps(s: str, seps: re.Pattern) -> tuple[list[str], list[str]]:
    """``split_top``, and the separators it cut at, in order."""
    parts, found, depth, start, i = [], [], 0, 0, 0
    while i < len(s):
        ch = s[i]
        if ch == "\\" and s[i + 1 : i + 2] in ("{", "}"):
            depth += 1 if s[i + 1] == "{" else -1
            i += 2
            continue
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
        elif depth == 0:
            match = seps.match(s, i)
            if match and match.end() > i:
                parts.append(s[start:i])
                found.append(match.group(0))
                start = i = match.end()
                continue
        i += 1
    parts.append(s[start:])
    return parts, found


_COMMA = re.compile(r",")
_UNION = re.compile(r"\\cup(?![A-Za-z])|\s+U\s+")
_REL = re.compile(r"<=|>=|\\leq?(?![A-Za-z])|\\geq?(?![A-Za-z])|\\[lg]t(?![A-Za-z])|<|>")
_EQ = re.compile(r"(?<![<>!=:])=(?![=>])")
_IN = re.compile(r"\\in(?![A-Za-z])")
_PM = re.compile(r"\\pm(?![A-Za-z])|\+-|\+/-")
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")


def parse_math(text: str) -> MathObj | None:
    """Parse a final answer or a reference into a :class:`MathObj`, or ``None``."""
    if text is None or len(str(text)) > MAX_CHARS:
        return None
    s = clean(text)
    if not s or not _depth_ok(s) or any(is_prose_token(t) for t in s.split()):
        return None  # "see the figure" is not s*e*e*t*h*e*...
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    members = split_top(s, _IN)
    if len(members) == 2 and _is_symbol_text(members[0]):
        s = members[1].strip()
    union = [p.strip() for p in split_top(s, _UNION)]
    if len(union) > 1:
        comps: list[tuple] = []
        for part in union:
            got = _set_components(part)
            if got is None:
                return None
            comps.extend(got)
        return _set_obj(comps, text)
    if re.fullmatch(r"\\(?:emptyset|varnothing)|\\\{\s*\\\}|\{\s*\}", s):
        return MathObj("set", (), text)
    if s.startswith("\\{") and s.endswith("\\}") and _encloses(s):
        comps = _set_components(s)
        return None if comps is None else _set_obj(comps, text)
    if s[:1] in "([" and s[-1:] in ")]" and _encloses(s):
        inner = split_top(s[1:-1], _COMMA)
        if len(inner) == 2 and not (s[0] == "(" and s[-1] == ")"):
            comps = _set_components(s)
            return None if comps is None else _set_obj(comps, text)
        if len(inner) >= 2:
            items = [_scalar(p) for p in inner[:MAX_ELEMENTS + 1]]
            if len(items) > MAX_ELEMENTS or any(i is None for i in items):
                return None
            return MathObj("tuple", tuple(items), text)
    if s.startswith("{") and s.endswith("}") and _encloses(s) and len(split_top(s[1:-1], _COMMA)) > 1:
        comps = _set_components("\\{" + s[1:-1] + "\\}")
        return None if comps is None else _set_obj(comps, text)
    items = [p.strip() for p in split_top(s, _COMMA)]
    if len(items) > 1:
        if len(items) > MAX_ELEMENTS:
            return None
        parsed: list[MathObj] = []
        for item in items:
            if not item:
                continue
            got = _scalars_pm(item)
            if got is None:
                return None
            parsed.extend(got)
        return MathObj("list", tuple(parsed), text) if parsed else None
    if len(split_top(s, _REL)) > 1:
        return _inequality(s, text)
    if _PM.search(s):
        got = _scalars_pm(s)
        return None if got is None else MathObj("list", tuple(got), text)
    return _scalar(s, text)


def _encloses(s: str) -> bool:
    """Whether the brackets at both ends of ``s`` are one pair (not ``(1)+(2)``)."""
    depth = 0
    i = 0
    while i < len(s):
        if s[i] == "\\" and s[i + 1 : i + 2] in ("{", "}"):
            depth += 1 if s[i + 1] == "{" else -1
            i += 2
        else:
            if s[i] in _OPEN:
                depth += 1
            elif s[i] in _CLOSE:
                depth -= 1
            i += 1
        if depth == 0 and i < len(s):
            return False
    return depth == 0


def _is_symbol_text(s: str) -> bool:
    return bool(re.fullmatch(r"\s*(?:[A-Za-z](?:_\{?\w+\}?)?|\\[A-Za-z]+)\s*", s))


def _scalar(s: str, text: str = "") -> MathObj | None:
    """An expression or an equation (``x = 5``; ``a = b = c`` keeps the first and last sides)."""
    sides = split_top(s, _EQ)
    if len(sides) == 1:
        expr = parse_expression(s)
        return None if expr is None else MathObj("expr", expr, text or s)
    if any(not side.strip() for side in sides):
        return None
    first, last = parse_expression(sides[0]), parse_expression(sides[-1])
    if first is None or last is None:
        return None
    if len(sides) > 2 and not isinstance(first, sympy.Symbol):
        return MathObj("expr", last, text or s)
    return MathObj("eq", (first, last), text or s)


def _scalars_pm(s: str) -> list[MathObj] | None:
    """``a \\pm b`` is the two values ``a + b`` and ``a - b``; ``x = a \\pm b`` too."""
    sides = split_top(s, _EQ)
    body = sides[-1]
    if not _PM.search(body):
        got = _scalar(s)
        return None if got is None else [got]
    if len(sides) > 1 and not _is_symbol_text(sides[0]):
        return None  # only `x = a \pm b` reads as two values
    plus, minus = _PM.sub("+", body, count=1), _PM.sub("-", body, count=1)
    out = [_scalar(plus), _scalar(minus)]
    return None if any(o is None for o in out) else out  # type: ignore[return-value]


def _set_components(s: str) -> list[tuple] | None:
    """Components of one union member: ``[a, b)`` interval, ``\\{a, b\\}`` set, or a point."""
    s = s.strip()
    if s.startswith("\\{") and s.endswith("\\}") and _encloses(s):
        inner = s[2:-2].strip()
        if not inner:
            return []
        comps = []
        for item in split_top(inner, _COMMA)[: MAX_ELEMENTS + 1]:
            got = _scalar(item.strip())
            value = _value_of(got)
            if value is None:
                return None
            comps.append(("point", value))
        return None if len(comps) > MAX_ELEMENTS else comps
    if s[:1] in "([" and s[-1:] in ")]" and _encloses(s):
        ends = split_top(s[1:-1], _COMMA)
        if len(ends) != 2:
            return None
        left, right = parse_expression(ends[0]), parse_expression(ends[1])
        if left is None or right is None:
            return None
        return [("interval", left, right, s[0] == "(" or left == -sympy.oo, s[-1] == ")" or right == sympy.oo)]
    got = _value_of(_scalar(s))
    return None if got is None else [("point", got)]


def _value_of(obj: MathObj | None) -> Any:
    """The value an element stands for: an expression, or ``x = value``'s value."""
    if obj is None:
        return None
    if obj.kind == "expr":
        return obj.value
    lhs, rhs = obj.value
    return rhs if isinstance(lhs, sympy.Symbol) else None


def _set_obj(comps: list[tuple], text: str) -> MathObj:
    return MathObj("set", canonical_components(comps), text)


def canonical_components(comps: list[tuple]) -> tuple:
    """Merge overlapping real intervals and points with sympy when every bound is a number."""
    def numeric(e: Any) -> bool:
        return not e.free_symbols and (e.is_real is True or e in (sympy.oo, -sympy.oo))

    if comps and all(numeric(c[1]) and (c[0] == "point" or numeric(c[2])) for c in comps):
        try:
            parts = [
                sympy.FiniteSet(c[1]) if c[0] == "point" else sympy.Interval(c[1], c[2], c[3], c[4])
                for c in comps
            ]
            return components_of(sympy.Union(*parts))
        except Exception:  # noqa: BLE001 - odd bounds: keep them as written
            pass
    return tuple(comps)


def components_of(sset: Any) -> tuple:
    out: list[tuple] = []
    pieces = sset.args if isinstance(sset, sympy.Union) else (sset,)
    for piece in pieces:
        if isinstance(piece, sympy.Interval):
            out.append(("interval", piece.start, piece.end, bool(piece.left_open), bool(piece.right_open)))
        elif isinstance(piece, sympy.FiniteSet):
            out.extend(("point", p) for p in piece.args)
        elif piece is sympy.S.EmptySet:
            continue
        else:
            raise ValueError(f"cannot compare the set {piece}")
    return tuple(out)


_REL_OPS = {
    "<": sympy.Lt, "\\lt": sympy.Lt, ">": sympy.Gt, "\\gt": sympy.Gt, "<=": sympy.Le, "\\le": sympy.Le,
    "\\leq": sympy.Le, ">=": sympy.Ge, "\\ge": sympy.Ge, "\\geq": sympy.Ge,
}


def _inequality(s: str, text: str) -> MathObj | None:
    """``1 < x \\le 3`` in one variable -> its solution set over the reals."""
    pieces, ops = split_top_with_seps(s, _REL)
    sides = [parse_expression(p) for p in pieces]
    if any(x is None for x in sides):
        return None
    symbols = set().union(*(x.free_symbols for x in sides))
    if len(symbols) != 1:
        return None
    (var,) = symbols
    result = sympy.S.Reals
    for lhs, rhs, op in zip(sides[:-1], sides[1:], ops, strict=True):
        diff = sympy.cancel(lhs - rhs)
        if not diff.is_rational_function(var) or sympy.degree(sympy.numer(diff), var) > 6:
            return None  # solving beyond rational functions of low degree is not a grader's job
        result = result.intersect(sympy.solveset(_REL_OPS[op](lhs, rhs), var, domain=sympy.S.Reals))
    try:
        return MathObj("set", components_of(result), text)
    except ValueError:
        return None


# -- one expression ---------------------------------------------------------------------------
# latex2sympy2_extended (the parser math-verify ships) reads the LaTeX; these few rewrites keep
# what math-equiv has always read the same way: plain-text habits (``2**3``, ``1e5``,
# ``sqrt(2)``, ``sin x``), and ``\\log`` as the natural log (latex2sympy reads base 10).
_NORMALIZE = NormalizationConfig(
    basic_latex=True, units=False, malformed_operators=True, nits=False, boxed="none", equations=False
)
# Symbols keep their case (``X`` is not ``x``); ``4\\frac{2}{3}`` is four and two thirds.
_CONVERT = ConversionConfig(interpret_as_mixed_fractions=True, lowercase_symbols=False)
_PLAIN_FUNCTIONS = re.compile(
    r"(?<![\\A-Za-z])(arcsin|arccos|arctan|sinh|cosh|tanh|sin|cos|tan|cot|sec|csc|log|ln|exp|sqrt|pi)"
    r"(?![A-Za-z])"
)
_SCIENTIFIC = re.compile(r"(?<![A-Za-z_.\d])(\d+(?:\.\d*)?|\.\d+)[eE]([+-]?\d+)(?![\d.])")
_COMMAND_SWAPS = [
    (re.compile(r"\\log(?![A-Za-z])(?!\s*_)"), r"\\ln"),
    (re.compile(r"\\lg(?![A-Za-z])"), r"\\log_{10}"),
    (re.compile(r"\\neg(?![A-Za-z])"), "-"),
    (re.compile(r"\\(?:mid|vert)(?![A-Za-z])"), "|"),
]
# What an answer may be made of; the rest (integrals, sums, limits, matrices, ...) is refused
# before anything is evaluated, as the hand-written parser before this one refused them.
_FUNCTIONS = (
    sympy.exp, sympy.log, sympy.Abs, sympy.floor, sympy.ceiling, sympy.factorial, sympy.binomial,
    sympy.sin, sympy.cos, sympy.tan, sympy.cot, sympy.sec, sympy.csc, sympy.asin, sympy.acos,
    sympy.atan, sympy.sinh, sympy.cosh, sympy.tanh,
)
_NODES = (sympy.Add, sympy.Mul, sympy.Pow, *_FUNCTIONS)
_ATOMS = (sympy.Number, sympy.Symbol, sympy.NumberSymbol, sympy.core.numbers.Infinity,
          sympy.core.numbers.NegativeInfinity)
_NEGATIVE_EXPONENT = re.compile(r"\^\s*-\s*(\d+(?:\.\d+)?|[A-Za-z])")  # x^-1: LaTeX wants x^{-1}
_POWER_ATOM = r"(?:\d+(?:\.\d+)?|[A-Za-z]|\{[^{}]*\}|\([^()]*\))"
_POWER_CHAIN = re.compile(rf"{_POWER_ATOM}(?:\s*\^\s*{_POWER_ATOM}){{2,}}")
_BINOM = re.compile(r"\\[dt]?binom|\\choose")
_LONG_INTEGER = re.compile(r"\d{5}")


def to_latex(s: str) -> str | None:
    """Plain-text habits as the LaTeX latex2sympy reads, or ``None`` when that cannot be done."""
    s = _NEGATIVE_EXPONENT.sub(r"^{-\1}", s.replace("**", "^"))
    s = _POWER_CHAIN.sub(_right_associative, s)
    s = _SCIENTIFIC.sub(_scientific, s)
    s = _PLAIN_FUNCTIONS.sub(r"\\\1", s)
    for pattern, replacement in _COMMAND_SWAPS:
        s = pattern.sub(replacement, s)
    return _sqrt_parentheses(s)


def _right_associative(match: re.Match) -> str:
    """``2^3^2`` (or ``2**3**2``) is ``2^{3^{2}}`` = 512, as Python and plain text read it;
    LaTeX has no such chain (latex2sympy would read ``(2^3)^2``)."""
    base, *exponents = re.findall(_POWER_ATOM, match.group(0))
    nested = exponents[-1]
    for exponent in reversed(exponents[:-1]):
        nested = f"{exponent}^{{{nested}}}"
    return f"{base}^{{{nested}}}"


def _scientific(match: re.Match) -> str:
    """``1e5`` -> ``(1.0 \\times 10^{5})``: a float, as Python reads it."""
    mantissa = match.group(1) if "." in match.group(1) else match.group(1) + ".0"
    return f"({mantissa} \\times 10^{{{match.group(2)}}})"


def _sqrt_parentheses(s: str) -> str | None:
    """``\\sqrt(x+1)`` -> ``\\sqrt{x+1}`` (latex2sympy takes only a brace group)."""
    out, pos = [], 0
    for match in re.finditer(r"\\sqrt\s*\(", s):
        if match.start() < pos:
            continue
        depth, end = 0, None
        for j in range(match.end() - 1, len(s)):
            depth += {"(": 1, ")": -1}.get(s[j], 0)
            if depth == 0:
                end = j
                break
        if end is None:
            return None
        out.append(s[pos : match.start()] + "\\sqrt{" + s[match.end() : end] + "}")
        pos = end + 1
    out.append(s[pos:])
    return "".join(out)


@functools.lru_cache(maxsize=4096)  # a GRPO group repeats answers; sympy trees are immutable
def parse_expression(text: str) -> Any:
    """One expression (no ``=``, no top-level comma) as an evaluated sympy ``Expr``, or ``None``.

    latex2sympy builds the tree unevaluated; it is checked (only math nodes, size guard) before
    sympy evaluates it, so ``9^{9^{9^9}}`` is refused, never computed.
    """
    if text is None or len(text) > MAX_CHARS:
        return None
    s = clean(text) if ("$" in text or "\\" in text) else text.strip()
    if not s or not _depth_ok(s) or _EQ.search(s) or _REL.search(s):
        return None
    if _BINOM.search(s) and _LONG_INTEGER.search(s):
        return None  # latex2sympy computes a binomial of two integers at once: \binom{10^5}{..} is refused below
    latex = to_latex(s)
    if latex is None or not latex.strip():
        return None
    try:
        raw = latex2sympy(latex, normalization_config=_NORMALIZE, conversion_config=_CONVERT)
        if not isinstance(raw, sympy.Expr) or not _only_math(raw) or not _small_enough(raw):
            return None
        expr = _evaluate(raw)
    except Exception:  # noqa: BLE001 - syntax errors, sympy refusals, recursion: not parsable
        return None
    if not isinstance(expr, sympy.Expr) or expr.has(sympy.zoo, sympy.nan):
        return None
    return expr


def _only_math(expr: Any) -> bool:
    """Every node is arithmetic, a whitelisted function, a number or a symbol (at most MAX_NODES)."""
    for count, node in enumerate(sympy.preorder_traversal(expr)):
        if count > MAX_NODES:
            return False
        if isinstance(node, _NODES) or isinstance(node, _ATOMS):
            continue
        if isinstance(node, sympy.core.function.AppliedUndef) and len(node.args) == 1:
            continue  # ``f(x)`` reads as the product ``f*x``, as it always has here
        return False
    return True


def _evaluate(expr: Any) -> Any:
    """The unevaluated tree rebuilt bottom-up with evaluation (``doit`` would also run integrals)."""
    if expr.is_Atom:
        return _symbol(expr.name) if isinstance(expr, sympy.Symbol) else expr
    args = [_evaluate(a) for a in expr.args]
    if isinstance(expr, sympy.core.function.AppliedUndef):
        return sympy.Mul(_symbol(expr.func.__name__), *args)
    return expr.func(*args)


def _symbol(name: str) -> Any:
    """``e`` is Euler's number (as ``e^x`` means); every other name is a plain symbol."""
    return sympy.E if name == "e" else sympy.Symbol(name)


# -- size guard -------------------------------------------------------------------------------
class _TooLarge(Exception):
    pass


def _small_enough(expr: Any) -> bool:
    try:
        count = 0
        for _ in sympy.preorder_traversal(expr):
            count += 1
            if count > MAX_NODES:
                return False
        _digits(expr)
        return True
    except (_TooLarge, RecursionError, OverflowError):
        return False


def _digits(e: Any) -> float:
    """An upper bound on log10 of |e| (symbols count as 1), raising when anything is too large."""
    if e.is_Integer:
        return int(e).bit_length() * _LOG10_2
    if e.is_Rational:
        return max(e.p.bit_length(), e.q.bit_length()) * _LOG10_2
    if e.is_Float:
        mpf = e._mpf_
        return abs(mpf[2] + mpf[3]) * _LOG10_2 if mpf[1] else 0.0
    if e.is_Atom:
        return 0.5
    if isinstance(e, sympy.Pow):
        base, exponent = e.args
        b = _digits(base)
        x = _digits(exponent)
        bound = math.inf if x > 15 else 10.0**x
        if base.free_symbols:
            if exponent.is_number and bound > MAX_SYMBOLIC_POWER and not exponent.has(sympy.Float):
                raise _TooLarge
            return b * min(bound, 1e12)
        if exponent.has(sympy.Float) or base.has(sympy.Float):
            return min(b * bound, 1e12)  # floating point: mpmath keeps it cheap
        size = max(b, _LOG10_2) * bound
        if base in (sympy.S.Zero, sympy.S.One, sympy.S.NegativeOne):
            return 0.0
        if size > MAX_DIGITS:
            raise _TooLarge
        return size
    if isinstance(e, (sympy.factorial, sympy.binomial)):
        n = _digits(e.args[0])
        if n > math.log10(3000):
            raise _TooLarge
        for arg in e.args[1:]:
            _digits(arg)
        return 10.0**n * n
    if isinstance(e, sympy.exp):
        x = _digits(e.args[0])
        size = (math.inf if x > 15 else 10.0**x) * 0.4343
        if size > MAX_DIGITS:
            raise _TooLarge
        return size
    children = [_digits(a) for a in e.args]
    if isinstance(e, sympy.Add):
        return max(children, default=0.0) + math.log10(max(len(children), 1))
    if isinstance(e, sympy.Mul):
        return sum(children)
    return max(children, default=0.0)
