"""Declared params, one shape for every kind of plugin: ``Param`` and the checks around it.

A backend or a data source declares its params as ``Param(name, type, default, help)`` where
``type`` is a Python annotation (``int``, ``int | None``, ``Literal["a", "b"]``,
``list[str]``); a reward's params are its keyword parameters, the same records built from its
signature. Values a user sets (YAML, ``--set``) go through :func:`resolve`, one pydantic
``TypeAdapter`` per annotation, so every kind of plugin gets the same coercion (``"8"`` is 8
for an ``int``; a bool is never taken for a number) and the same errors
(:class:`~grpo_host.errors.PluginParamError`, naming the kind, the plugin and the param).

A type may still be given as text, as the host's first plugins did (``"int | 'auto'"``): the
text is read (never evaluated) into the annotation it spells. Text it cannot read (``"int |"``,
``"HOST:PORT"``, a type it does not know such as ``"MyEnum"``) is shown as written and its
values are passed unchecked, with a warning when the plugin registers: types were free text
once, and such a plugin keeps working. A default that is not of its own declared type, or a
name declared twice, is refused when the plugin registers.

pydantic is imported only when a value is validated: listing plugins stays cheap.
"""

from __future__ import annotations

import ast
import functools
import reprlib
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from grpo_host.errors import PluginParamError, did_you_mean, param_error

# The names a type text may use, and what each means.
_TEXT_NAMES: dict[str, Any] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "bytes": bytes,
    "None": None,
    "NoneType": None,
    "Any": Any,
    "any": Any,
    "object": object,
    "list": list,
    "dict": dict,
    "tuple": tuple,
    "set": set,
    "frozenset": frozenset,
    "Sequence": Sequence,
    "Mapping": Mapping,
    "List": list,
    "Dict": dict,
    "Tuple": tuple,
    "Set": set,
    "Literal": Literal,
    "Optional": typing.Optional,
    "Union": typing.Union,
}
_SHORT = reprlib.Repr()
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict = 60, 60, 3, 6, 6


class TypeTextError(ValueError):
    """A type text that is not an annotation at all (``"int |"``, ``"1 + 2"``)."""


class UnknownTypeName(ValueError):
    """A well-formed type text naming a type the host does not know (``"MyEnum"``)."""


@dataclass(frozen=True)
class Param:
    """A declared param: its name, type (a Python annotation), default and help.

    ``type`` may be given as text (``"int | None"``); it is read into the annotation it spells
    and the text is kept for display. ``text`` is how ``grpo-host backends``/``datasets`` show
    the type: derived from ``type`` unless given.
    """

    name: str
    type: Any
    default: Any
    help: str = ""
    text: str = field(default="", compare=False)
    # Set from the type: False when a type text names an unknown type (values pass unchecked);
    # ``problem`` says why, for the registry's warning or error.
    checked: bool = field(default=True, init=False, compare=False)
    problem: str = field(default="", init=False, compare=False)

    def __post_init__(self) -> None:
        declared = self.type
        if isinstance(declared, str):
            text = self.text or declared
            annotation, checked, problem = _read_text(declared)
        else:
            annotation, checked, problem = declared, True, ""
            text = self.text or _cached_text(declared)
        # Frozen: the normalised fields go in at once (registration builds hundreds of these).
        self.__dict__.update(type=annotation, text=text, checked=checked, problem=problem)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.text, "default": self.default, "help": self.help}


# -- type text ---------------------------------------------------------------------------------
def _cached_text(annotation: Any) -> str:
    try:
        return _type_text_of(annotation)
    except TypeError:  # unhashable
        return type_text(annotation)


@functools.lru_cache(maxsize=512)
def _type_text_of(annotation: Any) -> str:
    return type_text(annotation)


def type_text(annotation: Any) -> str:
    """How an annotation is shown: ``int | None``, ``'auto' | 'no'``, ``list[str]``."""
    if annotation is Any:
        return "Any"
    if annotation is None or annotation is type(None):
        return "None"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_text(args[0])
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_text(a) for a in args)
    if origin is not None and args:
        name = getattr(origin, "__name__", None) or str(origin).replace("typing.", "")
        return f"{name}[{', '.join('...' if a is Ellipsis else type_text(a) for a in args)}]"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


@functools.lru_cache(maxsize=1024)
def _read_text(text: str) -> tuple[Any, bool, str]:
    """``(annotation, checked, problem)`` for a type text; one parse per distinct text (a plugin
    with a hundred data sources repeats a few)."""
    try:
        return annotation_from_text(text), True, ""
    except UnknownTypeName as exc:
        return Any, False, f"its type text {exc}"
    except TypeTextError as exc:
        return Any, False, f"its type text {exc}"


# The texts plugins write most, read without a parse (a start-up lists every plugin's params).
_COMMON_TEXTS: dict[str, Any] = {
    "int": int, "float": float, "str": str, "bool": bool, "dict": dict, "list": list, "tuple": tuple,
    "Any": Any, "int | None": int | None, "float | None": float | None, "str | None": str | None,
    "bool | None": bool | None, "list[str]": list[str], "list[int]": list[int], "list[float]": list[float],
}  # fmt: skip


def annotation_from_text(text: str) -> Any:
    """The annotation a type text spells, read without evaluating it: ``"int | 'auto'"`` is
    ``int | Literal['auto']``. Raises :class:`TypeTextError` for text that is no annotation,
    :class:`UnknownTypeName` for one naming a type not in ``_TEXT_NAMES``."""
    if text in _COMMON_TEXTS:
        return _COMMON_TEXTS[text]
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise TypeTextError(f"{text!r} does not parse ({exc.msg})") from None
    return _from_node(tree, text)


def _from_node(node: ast.expr, text: str) -> Any:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return typing.Union[_from_node(node.left, text), _from_node(node.right, text)]  # noqa: UP007
    if isinstance(node, ast.Constant):
        if node.value is None:
            return None
        if isinstance(node.value, (str, int, float, bool)):
            return Literal[node.value]
    if isinstance(node, (ast.Name, ast.Attribute)):
        name = ast.unparse(node).removeprefix("typing.").removeprefix("collections.abc.")
        if name in _TEXT_NAMES:
            return _TEXT_NAMES[name]
        raise UnknownTypeName(f"{text!r} names {name!r}, a type the host does not know")
    if isinstance(node, ast.Subscript):
        base = _from_node(node.value, text)
        items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if base is Literal:
            values = [_from_node(i, text) for i in items]
            return Literal[
                tuple(typing.get_args(v)[0] if typing.get_origin(v) is Literal else v for v in values)
            ]
        if base in (list, dict, tuple, set, frozenset, Sequence, Mapping, typing.Optional, typing.Union):
            args = tuple(
                Ellipsis if isinstance(i, ast.Constant) and i.value is Ellipsis else _from_node(i, text)
                for i in items
            )
            try:
                return base[args if len(args) > 1 else args[0]]
            except TypeError as exc:
                raise TypeTextError(f"{text!r} is not a type ({exc})") from None
        raise TypeTextError(f"{text!r} subscripts {ast.unparse(node.value)}, which takes no [...]")
    part = ast.unparse(node)
    raise TypeTextError(
        f"{text!r} is not a type" + ("" if part == text.strip() else f" ({part!r} is not one)")
    )


# -- registration: is the declaration itself sound? --------------------------------------------
def check_declared(kind: str, owner: str, declared: Sequence[Param]) -> list[str]:
    """Raise :class:`PluginParamError` for a declaration that cannot work (a default that is not
    of its own type, a name twice, something not a ``Param``); return warnings for type texts
    the host cannot read (no type at all, or naming a type it does not know): their values go
    unchecked, so a plugin written when the type was free text keeps working."""
    warnings: list[str] = []
    seen: set[str] = set()
    for p in declared:
        if not isinstance(p, Param):
            raise param_error(
                kind,
                owner,
                str(getattr(p, "name", p)),
                f"declared as {type(p).__name__}, not a grpo_host.Param(name, type, default, help)",
            )
        if p.name in seen:
            raise param_error(kind, owner, p.name, "declared twice")
        seen.add(p.name)
        if p.problem:  # an old plugin's free text ("HOST:PORT") keeps working, unchecked
            warnings.append(
                f"{kind} {owner!r} param {p.name!r}: {p.problem}, so its values are passed unchecked; "
                f"declare a Python type (Param({p.name!r}, int | None, ...)) or text such as 'int | None'"
            )
        elif not conforms(p.default, p.type):
            raise param_error(
                kind,
                owner,
                p.name,
                f"its default {_SHORT.repr(p.default)} is not a {p.text}; "
                "the plugin's declaration is wrong: report it to its authors",
            )
    return warnings


def conforms(value: Any, annotation: Any) -> bool:
    """Whether ``value`` already is of ``annotation`` as YAML or JSON would hold it (a list for a
    tuple, an int for a float; a bool is not a number). No pydantic: it runs at registration.
    An annotation it cannot judge (a protocol, a callable) is taken as met."""
    return conforms_to(annotation)(value)


@functools.lru_cache(maxsize=512)
def _checker(annotation: Any) -> Callable[[Any], bool]:
    return _build_checker(annotation)


def _build_checker(annotation: Any) -> Callable[[Any], bool]:
    """The check for one annotation, built once: registration runs it on every default."""
    if annotation is Any or annotation is object:
        return lambda v: True
    if annotation is None or annotation is type(None):
        return lambda v: v is None
    if annotation is bool:
        return lambda v: v is True or v is False
    if annotation is int:
        return lambda v: isinstance(v, int) and not isinstance(v, bool)
    if annotation is float:
        return lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return conforms_to(args[0])
    if origin in (typing.Union, types.UnionType):
        members = [conforms_to(a) for a in args]

        def union(v: Any) -> bool:
            for member in members:
                if member(v):
                    return True
            return False

        return union
    if origin is Literal:
        return lambda v: any(type(v) is type(a) and v == a for a in args)
    base = origin or annotation
    if base in (list, set, frozenset, tuple, Sequence):
        fixed = base is tuple and bool(args) and args[-1] is not Ellipsis
        items = [conforms_to(a) for a in args] if fixed else []
        each = conforms_to(args[0]) if args and not fixed else None

        def sequence(v: Any) -> bool:
            if not isinstance(v, (list, tuple, set, frozenset)):
                return False
            if fixed:
                return len(v) == len(items) and all(m(x) for m, x in zip(items, v, strict=True))
            return each is None or all(each(x) for x in v)

        return sequence
    if base in (dict, Mapping):
        key, val = (conforms_to(args[0]), conforms_to(args[1])) if len(args) == 2 else (None, None)

        def mapping(v: Any) -> bool:
            if not isinstance(v, Mapping):
                return False
            return key is None or val is None or all(key(k) and val(x) for k, x in v.items())

        return mapping
    if isinstance(annotation, type):
        return lambda v: isinstance(v, annotation)
    return lambda v: True


def conforms_to(annotation: Any) -> Callable[[Any], bool]:
    """The check :func:`conforms` runs for ``annotation``, cached per annotation."""
    try:
        return _checker(annotation)
    except TypeError:  # an unhashable annotation: its check built each time
        return _build_checker(annotation)


# -- values a user set ---------------------------------------------------------------------------
def resolve(
    kind: str,
    owner: str,
    declared: Iterable[Param],
    given: Mapping[str, Any] | None,
    *,
    also_known: Sequence[str] = (),
    annotations: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Defaults overlaid with ``given``, each given value validated against its param's type.

    An undeclared name is an error with a did-you-mean (``also_known``: names the error lists
    as taken too, a reward's host params). ``annotations`` override the params' own types (a
    reward's type hints, resolved from its function)."""
    params = {p.name: p for p in declared}
    resolved = {name: p.default for name, p in params.items()}
    for key, value in (given or {}).items():
        if key not in params:
            known = [*params, *also_known]
            raise param_error(
                kind,
                owner,
                key,
                "",
                message=(
                    f"{kind} {owner!r} has no param {key!r}; its params: "
                    f"{', '.join(known) or '(none)'}{did_you_mean(key, known)}"
                ),
            )
        p = params[key]
        if annotations is not None and key in annotations:
            resolved[key] = validate(kind, owner, key, value, annotations[key], p.text)
        else:
            resolved[key] = validate(kind, owner, key, value, p.type, p.text) if p.checked else value
    return resolved


def validate(kind: str, owner: str, name: str, value: Any, annotation: Any, text: str = "") -> Any:
    """``value`` as ``annotation`` (pydantic, lax: ``"8"`` is 8), or :class:`PluginParamError`."""
    if annotation is Any or annotation is object:
        return value
    expected = text or type_text(annotation)
    if isinstance(value, bool) and not _admits_bool(annotation):
        raise param_error(
            kind, owner, name, f"{value!r} is not a valid {expected} (a true/false where a value is expected)"
        )
    from pydantic import ValidationError

    try:
        return _adapter(annotation).validate_python(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first.get("loc", ()))
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):
            loc = loc[1:]  # the first part names the union's member pydantic tried
        where = "".join(f"[{part!r}]" for part in loc)
        raise param_error(
            kind,
            owner,
            name,
            f"{_SHORT.repr(value)} is not a valid {expected} "
            f"({'at ' + where + ': ' if where else ''}{first['msg']})",
        ) from None
    except RecursionError:
        raise param_error(kind, owner, name, f"{_SHORT.repr(value)} is nested too deeply to check") from None


def _admits_bool(annotation: Any) -> bool:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _admits_bool(args[0])
    if origin in (typing.Union, types.UnionType):
        return any(_admits_bool(a) for a in args)
    if origin is Literal:
        return any(isinstance(a, bool) for a in args)
    return annotation in (bool, Any, object) or not isinstance(annotation, type) and origin is None


def _adapter(annotation: Any) -> Any:
    try:
        return _cached_adapter(annotation)
    except TypeError:  # an unhashable annotation: built each time
        return _build_adapter(annotation)


@functools.lru_cache(maxsize=256)
def _cached_adapter(annotation: Any) -> Any:
    return _build_adapter(annotation)


def _build_adapter(annotation: Any) -> Any:
    from pydantic import ConfigDict, TypeAdapter

    # A plugin's own class (an enum, a path type) is checked with isinstance.
    try:
        return TypeAdapter(annotation, config=ConfigDict(arbitrary_types_allowed=True))
    except Exception:  # noqa: BLE001 - pydantic refuses config for some types; and some it cannot build
        try:
            return TypeAdapter(annotation)
        except Exception:  # noqa: BLE001
            return TypeAdapter(Any)


__all__ = [
    "Param",
    "PluginParamError",
    "annotation_from_text",
    "check_declared",
    "conforms",
    "resolve",
    "type_text",
    "validate",
]
