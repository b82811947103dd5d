"""Equivalence of parsed answers: expressions, equations, sets and intervals, tuples and lists.

Expressions without variables are compared numerically within a tolerance. Expressions with
variables are compared by evaluating their difference at fixed points (the same points every
time, so scores are reproducible); a random-looking point where two different expressions
agree to 30 digits is, for answers, as good as a proof, and far cheaper than ``simplify``,
which is kept as a last resort for small expressions only. Two equations are equivalent when
their solution sets agree: ``f = 0`` and ``g = 0`` with ``f / g`` a nonzero constant, or, in
one variable, the same finite solution set.
"""

from __future__ import annotations

from typing import Any

import sympy

from grpo_reward_math.parse import MathObj

# Probe values: irrational-looking, positive (so sqrt and log stay real), pairwise distinct.
_PROBES = (
    (0.5772156649, 1.3247179572, 2.2360679775, 0.9159655942, 1.6180339887, 2.6854520010),
    (1.4142135624, 0.6931471806, 1.9021130326, 2.5029078751, 0.7390851332, 1.2020569032),
    (2.7182818285, 1.1319882488, 0.3678794412, 1.7724538509, 2.0287578381, 0.8862269255),
    (0.4472135955, 2.4142135624, 1.0986122887, 0.6180339887, 1.8392867552, 2.9129312180),
)
_SIMPLIFY_MAX_OPS = 60
_PRECISION = 30


def equivalent(a: MathObj, b: MathObj, tol: float) -> tuple[bool, str]:
    """Whether candidate ``a`` means the same as reference ``b``, and how that was decided."""
    kinds = (a.kind, b.kind)
    if kinds == ("expr", "expr"):
        same, how = expr_equal(a.value, b.value, tol)
        return same, how
    if kinds == ("eq", "eq"):
        return equations_equal(a.value, b.value, tol), "equation"
    if "eq" in kinds and "expr" in kinds:
        eq, ex = (a, b) if a.kind == "eq" else (b, a)
        value = _solved_value(eq.value)
        if value is None:
            return False, "equation vs expression"
        same, how = expr_equal(value, ex.value, tol)
        return same, f"{how} (x = value)"
    if "set" in kinds:
        return _sets_equal(_as_set(a), _as_set(b), tol), "set"
    if kinds == ("tuple", "tuple"):
        ok = len(a.value) == len(b.value) and all(equivalent(x, y, tol)[0] for x, y in zip(a.value, b.value, strict=True))
        return ok, "tuple"
    if set(kinds) <= {"list", "tuple", "expr", "eq"}:
        return _unordered_equal(_members(a), _members(b), tol), "list"
    return False, f"{a.kind} vs {b.kind}"


def _solved_value(eq: tuple) -> Any:
    lhs, rhs = eq
    if isinstance(lhs, sympy.Symbol) and lhs not in rhs.free_symbols:
        return rhs
    if isinstance(rhs, sympy.Symbol) and rhs not in lhs.free_symbols:
        return lhs
    return None


def _members(obj: MathObj) -> list[MathObj]:
    return list(obj.value) if obj.kind in ("list", "tuple") else [obj]


def _unordered_equal(xs: list[MathObj], ys: list[MathObj], tol: float) -> bool:
    """Every member of each side matches a member of the other (duplicates do not count)."""
    if not xs or not ys:
        return not xs and not ys
    return all(any(equivalent(x, y, tol)[0] for y in ys) for x in xs) and all(
        any(equivalent(x, y, tol)[0] for x in xs) for y in ys
    )


# -- expressions --------------------------------------------------------------------------
def expr_equal(a: Any, b: Any, tol: float) -> tuple[bool, str]:
    if a == b:
        return True, "identical"
    if a.has(sympy.oo, -sympy.oo, sympy.zoo) or b.has(sympy.oo, -sympy.oo, sympy.zoo):
        return False, "infinite"
    diff = a - b
    if diff == 0:
        return True, "symbolic"
    symbols = sorted(a.free_symbols | b.free_symbols, key=lambda s: s.name)
    if not symbols:
        if a.is_Rational and b.is_Rational:
            return False, "exact"  # two different exact numbers: no tolerance for 1000001 vs 1000000
        va, vb = _number(a), _number(b)
        if va is None or vb is None:
            return False, "numeric (not a number)"
        return close(va, vb, tol), "numeric"
    finite = 0
    for probe in _PROBES:
        point = {s: sympy.Float(probe[i % len(probe)] + i // len(probe), _PRECISION) for i, s in enumerate(symbols)}
        va, vb = _number(a, point), _number(b, point)
        if va is None or vb is None:
            continue
        finite += 1
        if not close(va, vb, tol):
            return False, "numeric probe"
    if finite >= 2:
        return True, "numeric probe"
    if _small_powers(diff):
        try:
            return sympy.simplify(diff) == 0, "simplify"
        except Exception:  # noqa: BLE001 - sympy gives up: not shown equal
            return False, "simplify failed"
    return False, "undecided"


def _small_powers(e: Any) -> bool:
    return sympy.count_ops(e) <= _SIMPLIFY_MAX_OPS and all(
        not p.exp.is_number or abs(p.exp) <= 20 for p in e.atoms(sympy.Pow)
    )


def _number(e: Any, point: dict | None = None) -> complex | None:
    try:
        value = e.evalf(_PRECISION, subs=point) if point else e.evalf(_PRECISION)
        value = complex(value)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    if value != value or abs(value) == float("inf"):
        return None
    return value


def close(x: complex, y: complex, tol: float) -> bool:
    """``|x - y| <= tol * max(1, |y|)``: absolute near zero, relative for large values."""
    return abs(x - y) <= tol * max(1.0, abs(y))


# -- equations ------------------------------------------------------------------------------
def equations_equal(e1: tuple, e2: tuple, tol: float) -> bool:
    f, g = e1[0] - e1[1], e2[0] - e2[1]
    if f == 0 or g == 0:
        return f == g
    symbols = sorted(f.free_symbols | g.free_symbols, key=lambda s: s.name)
    if not symbols:
        return False
    if f.free_symbols != g.free_symbols:
        return False
    ratio = None
    agreeing = 0
    for probe in _PROBES:
        point = {s: sympy.Float(probe[i % len(probe)] + i // len(probe), _PRECISION) for i, s in enumerate(symbols)}
        vf, vg = _number(f, point), _number(g, point)
        if vf is None or vg is None or abs(vg) < 1e-12:
            continue
        r = vf / vg
        if ratio is None:
            ratio = r
        elif not close(r, ratio, tol):
            ratio = None
            agreeing = 0
            break
        agreeing += 1
    if ratio is not None and agreeing >= 2 and abs(ratio) > tol:
        return True
    if len(symbols) == 1:
        sf, sg = solutions(f, symbols[0]), solutions(g, symbols[0])
        if sf is not None and sg is not None:
            return _unordered_values(list(sf), list(sg), tol)
    return False


def solutions(f: Any, var: Any, limit: int = 12) -> list | None:
    """The finite solution set of ``f = 0`` over the complex numbers, or ``None``."""
    try:
        num = sympy.numer(sympy.together(f))
        if not num.is_polynomial(var) or sympy.degree(num, var) > 8:
            return None
        found = sympy.solveset(f, var, domain=sympy.S.Complexes)
    except Exception:  # noqa: BLE001
        return None
    if not isinstance(found, sympy.FiniteSet) or len(found) > limit:
        return None
    return list(found)


def _unordered_values(xs: list, ys: list, tol: float) -> bool:
    return all(any(expr_equal(x, y, tol)[0] for y in ys) for x in xs) and all(
        any(expr_equal(x, y, tol)[0] for x in xs) for y in ys
    )


# -- sets and intervals ---------------------------------------------------------------------
def _as_set(obj: MathObj) -> tuple | None:
    if obj.kind == "set":
        return obj.value
    if obj.kind == "tuple" and len(obj.value) == 2 and all(m.kind == "expr" for m in obj.value):
        # "(a, b)" against a set reads as the open interval.
        return (("interval", obj.value[0].value, obj.value[1].value, True, True),)
    if obj.kind in ("expr", "list", "tuple", "eq"):
        points = []
        for m in _members(obj):
            if m.kind == "expr":
                points.append(("point", m.value))
            elif m.kind == "eq" and _solved_value(m.value) is not None:
                points.append(("point", _solved_value(m.value)))
            else:
                return None
        return tuple(points)
    return None


def _sets_equal(a: tuple | None, b: tuple | None, tol: float) -> bool:
    if a is None or b is None:
        return False
    points_a = [c[1] for c in a if c[0] == "point"]
    points_b = [c[1] for c in b if c[0] == "point"]
    spans_a = [c for c in a if c[0] == "interval"]
    spans_b = [c for c in b if c[0] == "interval"]
    if len(spans_a) != len(spans_b) or bool(points_a) != bool(points_b):
        return False
    if points_a and not _unordered_values(points_a, points_b, tol):
        return False
    spans_a, spans_b = _sorted_spans(spans_a), _sorted_spans(spans_b)
    for x, y in zip(spans_a, spans_b, strict=True):
        if x[3] != y[3] or x[4] != y[4]:
            return False
        if not (expr_equal(x[1], y[1], tol)[0] or x[1] == y[1]) or not (expr_equal(x[2], y[2], tol)[0] or x[2] == y[2]):
            return False
    return True


def _sorted_spans(spans: list[tuple]) -> list[tuple]:
    def key(span: tuple) -> tuple:
        left = span[1]
        if left == -sympy.oo:
            return (0, float("-inf"), str(span))
        value = _number(left)
        return (1, value.real if value is not None else 0.0, str(span))

    return sorted(spans, key=key)
