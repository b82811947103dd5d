"""The reward author's API: the ``@reward`` decorator, ``Score`` and ``RewardSpec``.

A reward is a plain function ``(completion: str, **columns) -> float | None`` or a class
whose ``__init__`` takes its params and whose ``score(completion, **columns)`` or
``score_batch(completions, **columns)`` does the work. The decorator reads the signature once
and records what the host needs: the settable params (keyword parameters with defaults, with
their types), the dataset columns the reward requires, and how to import it again inside a
worker process. Nothing here imports heavy libraries.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import inspect
import json
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from grpo_host.params import Param, resolve

# Every reward accepts the host params (timeout, weight, memory_mb, concurrency), whatever its
# signature; the runtime consumes them. Defined once, as RewardItem's fields.
from grpo_host.rewards.item import HOST_PARAMS, RewardItem, memory_error_text

# Names a per-sample function receives from the host rather than from dataset columns.
SAMPLE_ARGS = ("completion", "messages", "completion_ids")
OUTCOMES = ("ok", "not_applicable", "error", "timeout")
DEFAULT_TIMEOUT = 10.0
DEFAULT_CONCURRENCY = 32


@dataclass
class Score:
    """A score with details for humans (the extracted answer, the parsed gold, ...).

    Return ``Score(1.0, extracted="42")`` instead of ``1.0`` to have ``try-reward`` and golden
    failures show what the reward saw. ``Score(None, reason=...)`` means not applicable.
    """

    value: float | None
    details: dict[str, Any] = field(default_factory=dict)

    def __init__(self, value: float | None, details: Mapping[str, Any] | None = None, **more: Any):
        self.value = value
        self.details = {**(details or {}), **more}


ParamInfo = Param  # a reward's param: the record every kind of plugin declares its params with


@dataclass
class RewardSpec:
    """Everything the host knows about one reward, before anything heavy is imported."""

    name: str
    target: Any  # the decorated function or class
    description: str = ""
    kind: Literal["function", "class"] = "function"
    params: dict[str, Param] = field(default_factory=dict)
    columns: tuple[str, ...] = ()  # dataset columns the reward requires
    accepts_any_column: bool = True  # has **columns
    wants: tuple[str, ...] = ()  # which of SAMPLE_ARGS it takes besides completion
    batched: bool = False  # a class with score_batch
    is_async: bool = False  # an `async def` function, or a class whose score/score_batch is one
    default_timeout: float = DEFAULT_TIMEOUT
    isolation: Literal["process", "inline"] = "process"
    golden: str | None = None  # path of its golden file, relative to its module's package
    intended_probes: dict[str, str] = field(default_factory=dict)  # probe -> why it is fine
    score_range: tuple[float, float] | None = None
    # Filled in by the registry.
    plugin: str = ""
    plugin_version: str = ""

    @property
    def import_path(self) -> str:
        return f"{self.target.__module__}:{self.target.__qualname__}"

    # -- params ------------------------------------------------------------------------------
    def resolve_params(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults overlaid with ``params``, each validated against its annotation.

        Host params (``timeout``, ``weight``, ``memory_mb``, ``concurrency``) are not included:
        see ``bind_reward``.
        """
        return resolve("reward", self.name, self.params.values(), params, also_known=HOST_PARAMS,
                       annotations=_type_hints(self.target))

    def provenance(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Where the reward came from and with what params: written into every run."""
        payload = json.dumps(_jsonable(dict(params)), sort_keys=True)
        return {
            "name": self.name,
            "plugin": self.plugin,
            "version": self.plugin_version,
            "import_path": self.import_path,
            "params": _jsonable(dict(params)),
            "params_hash": hashlib.sha256(f"{self.import_path}|{payload}".encode()).hexdigest()[:16],
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "plugin": self.plugin,
            "version": self.plugin_version,
            "description": self.description,
            "kind": self.kind,
            "params": [{"name": p.name, "type": p.text, "default": _jsonable(p.default)}
                       for p in self.params.values()],
            "host_params": self.host_param_defaults(),
            "columns": list(self.columns),
            "isolation": self.isolation,
            "batched": self.batched,
            "async": self.is_async,
        }

    def host_param_defaults(self) -> dict[str, Any]:
        """The host params this reward takes, with their defaults (``memory_mb``: None, the
        runtime's cap, which depends on the machine and the number of workers)."""
        defaults: dict[str, Any] = {"timeout": self.default_timeout, "weight": RewardItem.weight, "memory_mb": None}
        if self.is_async:
            defaults["concurrency"] = DEFAULT_CONCURRENCY
        return defaults

    # -- building --------------------------------------------------------------------------
    def build(self, params: Mapping[str, Any]) -> Callable[[list[dict[str, Any]]], list[Any]]:
        """Return ``score_samples(samples) -> raw results``, one per sample.

        A raw result is the reward's return value, or an exception instance when it raised for
        that sample; the runtime turns raw results into outcomes. An async reward's samples are
        awaited one after another here, on a private loop; the runtime awaits them concurrently.
        """
        scorer = self.build_scorer(params)
        if self.is_async:
            from grpo_host.rewards.async_runner import run_sequentially

            return functools.partial(run_sequentially, scorer, self.batched)
        if self.batched:
            return scorer
        return functools.partial(_score_each, scorer)

    def build_scorer(self, params: Mapping[str, Any]) -> Callable[..., Any]:
        """What the runtime calls: ``score(sample) -> raw`` (raising what the reward raises), or
        for a batched reward ``score(samples) -> [raw, ...]``. For an async reward the call
        returns an awaitable of the same."""
        if self.kind == "class":
            instance = self.target(**params)
            if self.batched:
                batch = _score_batch_async if self.is_async else _score_batch
                return functools.partial(batch, self, instance.score_batch)
            return functools.partial(_score_one, self, instance.score, {})
        return functools.partial(_score_one, self, self.target, dict(params))


def _score_one(spec: RewardSpec, fn: Callable[..., Any], params: dict[str, Any], sample: dict[str, Any]) -> Any:
    return fn(**spec_kwargs(spec, sample), **params)


def _score_each(score: Callable[[dict[str, Any]], Any], samples: list[dict[str, Any]]) -> list[Any]:
    results: list[Any] = []
    for sample in samples:
        try:
            results.append(score(sample))
        except BaseException as exc:  # noqa: BLE001 - reported as the sample's `error` outcome
            results.append(exc)
    return results


def _score_batch(spec: RewardSpec, fn: Callable[..., Any], samples: list[dict[str, Any]]) -> list[Any]:
    return list(fn(**_batch_kwargs(spec, samples)))


async def _score_batch_async(
    spec: RewardSpec, fn: Callable[..., Any], samples: list[dict[str, Any]]
) -> list[Any]:
    return list(await fn(**_batch_kwargs(spec, samples)))


def _batch_kwargs(spec: RewardSpec, samples: list[dict[str, Any]]) -> dict[str, list[Any]]:
    kwargs: dict[str, list[Any]] = {}
    per_sample = [spec_kwargs(spec, s) for s in samples]
    # Every key any sample has (first seen first): a column only some samples carry is a list
    # with None where it is missing, never dropped because the first sample lacked it.
    keys = dict.fromkeys(key for k in per_sample for key in k)
    for key in keys:
        kwargs["completions" if key == "completion" else key] = [k.get(key) for k in per_sample]
    return kwargs


def spec_kwargs(spec: RewardSpec, sample: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments one sample gives a reward: its completion, what it asks for, and
    the dataset columns (all of them when it takes ``**columns``; params take precedence)."""
    kwargs: dict[str, Any] = {"completion": sample.get("completion", "")}
    for extra in spec.wants:
        kwargs[extra] = sample.get(extra)
    for key, value in sample.items():
        if key in SAMPLE_ARGS or key in spec.params:
            continue
        if spec.accepts_any_column or key in spec.columns:
            kwargs[key] = value
    missing = [c for c in spec.columns if c not in kwargs]
    if missing:
        raise KeyError(
            f"reward {spec.name!r} needs column(s) {', '.join(missing)}; this sample has "
            f"{', '.join(k for k in sample if k not in SAMPLE_ARGS) or '(none)'}"
        )
    return kwargs


# -- the decorator -------------------------------------------------------------------------
def reward(
    name: str | None = None,
    *,
    description: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    isolation: Literal["process", "inline"] = "process",
    golden: str | None = None,
    intended_probes: Mapping[str, str] | None = None,
    score_range: tuple[float, float] | None = None,
) -> Callable[[Any], Any]:
    """Mark a function or class as a grpo-host reward.

    ``name`` defaults to the function's name with ``_`` turned into ``-``. ``timeout`` is the
    default per-sample budget in seconds (a run can override it). ``isolation="inline"`` keeps
    the reward in the calling process (a model on a GPU) instead of the worker pool.
    An ``async def`` function (or a class whose ``score``/``score_batch`` is ``async def``) is
    an async reward: the runtime awaits up to its host param ``concurrency`` samples at once in
    a worker, each under its own ``timeout``.
    ``golden`` is the golden file's path relative to the reward module's package (default
    ``golden/<name>.yaml``). ``intended_probes`` maps a reward-hacking probe's name to the
    reason its result is intended. The target is returned unchanged, so it stays callable.
    """
    if isolation not in ("process", "inline"):
        raise ValueError(f"isolation must be 'process' or 'inline', not {isolation!r}")

    def mark(target: Any) -> Any:
        spec = _make_spec(
            target,
            name=name or target.__name__.replace("_", "-"),
            description=description,
            timeout=timeout,
            isolation=isolation,
            golden=golden,
            intended_probes=dict(intended_probes or {}),
            score_range=score_range,
        )
        target.__grpo_reward__ = spec
        return target

    if callable(name) and not isinstance(name, str):  # used bare: @reward
        target, name = name, None
        return mark(target)
    return mark


def spec_of(obj: Any) -> RewardSpec | None:
    if isinstance(obj, RewardSpec):
        return obj
    spec = getattr(obj, "__grpo_reward__", None)
    return spec if isinstance(spec, RewardSpec) else None


def _make_spec(target: Any, *, name: str, description: str | None, **options: Any) -> RewardSpec:
    kind: Literal["function", "class"]
    if inspect.isclass(target):
        kind = "class"
        batched = hasattr(target, "score_batch")
        if not batched and not hasattr(target, "score"):
            raise TypeError(f"reward class {target.__qualname__} needs a score() or score_batch() method")
        param_sig = inspect.signature(target.__init__)
        method = getattr(target, "score_batch" if batched else "score")
        call_sig = inspect.signature(method)
        is_async = inspect.iscoroutinefunction(method)
        skip_first = 2  # self, then completion(s)
    elif callable(target):
        kind, batched = "function", False
        param_sig = call_sig = inspect.signature(target)
        is_async = inspect.iscoroutinefunction(target)
        skip_first = 1
    else:
        raise TypeError(f"@reward needs a function or a class, not {type(target).__name__}")

    call_params = list(call_sig.parameters.values())
    if kind == "class":
        init_params = [p for p in list(param_sig.parameters.values())[1:] if p.kind is not p.VAR_KEYWORD]
    else:
        init_params = []
    positional = [p for p in call_params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < skip_first:
        raise TypeError(f"reward {name!r}: its first argument must be the completion")

    params: dict[str, Param] = {}
    columns: list[str] = []
    wants: list[str] = []
    for p in (init_params if kind == "class" else []) + call_params[skip_first:]:
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        if p.name in SAMPLE_ARGS:
            wants.append(p.name)
        elif p.default is inspect.Parameter.empty:
            if kind == "class" and p in init_params:
                raise TypeError(f"reward {name!r}: __init__ param {p.name!r} needs a default")
            columns.append(p.name)
        elif kind == "class" and p not in init_params:
            continue  # an optional column of score(); params live in __init__
        else:
            if p.name in HOST_PARAMS:
                raise TypeError(f"reward {name!r}: {p.name!r} is a host param every reward has; rename it")
            declared = Any if p.annotation is inspect.Parameter.empty else p.annotation
            params[p.name] = Param(p.name, declared, p.default, text=_annotation_text(p.annotation))
    doc = inspect.getdoc(target) or ""
    return RewardSpec(
        name=name,
        target=target,
        description=description or (doc.strip().splitlines()[0] if doc.strip() else ""),
        kind=kind,
        params=params,
        columns=tuple(columns),
        accepts_any_column=any(p.kind is p.VAR_KEYWORD for p in call_params),
        wants=tuple(wants),
        batched=batched,
        is_async=is_async,
        default_timeout=float(options.pop("timeout")),
        **options,
    )


def _annotation_text(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return "any"
    if isinstance(annotation, str):
        return annotation
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


@functools.cache
def _type_hints(target: Any) -> dict[str, Any]:
    import typing

    hints: dict[str, Any] = {}
    fns = [target.__init__] if inspect.isclass(target) else [target]
    for fn in fns:
        try:
            hints.update(typing.get_type_hints(fn))
        except Exception:  # noqa: BLE001 - unresolvable annotations are simply not validated
            pass
    hints.pop("return", None)
    return hints


def to_outcome(raw: Any) -> tuple[str, float | None, dict[str, Any]]:
    """Classify one raw result: ``(outcome, score, details)``."""
    details: dict[str, Any] = {}
    if isinstance(raw, Score):
        details = dict(raw.details)
        raw = raw.value
    if isinstance(raw, BaseException):
        return "error", None, {**details, "error": describe_exception(raw)}
    if raw is None:
        return "not_applicable", None, details
    if isinstance(raw, numbers.Real) and not isinstance(raw, bool):
        try:
            value = float(raw)
        except OverflowError:
            return "error", None, {**details, "error": "returned a number too large for a float"}
        if math.isfinite(value):
            return "ok", value, details
        return "error", None, {**details, "error": f"returned non-finite score {value}"}
    return "error", None, {**details, "error": f"returned {type(raw).__name__}, expected float or None"}


def sample_outcome(raw: Any, memory_mb: int | None = None, reward: str = "") -> tuple[str, float | None, Any]:
    """``to_outcome`` as the runtime needs it, for any result, however hostile: never raises;
    the details are plain data (or None when empty) that survive pickling back to the host."""
    if raw.__class__ is float and math.isfinite(raw):  # the common case, kept cheap
        return "ok", raw, None
    try:
        if memory_mb and (isinstance(raw, MemoryError) or getattr(raw, "errno", None) == errno.ENOMEM):
            raw = MemoryError(memory_error_text(memory_mb, reward))
        name, score, details = to_outcome(raw)
        return name, score, _jsonable(details) if details else None
    except BaseException as exc:  # noqa: BLE001 - a result that cannot be read is the sample's error
        return "error", None, {"error": f"could not read the reward's result: {conversion_error(exc)}"}


def describe_exception(exc: BaseException) -> str:
    try:
        text = str(exc)
    except BaseException:  # noqa: BLE001 - an exception whose str() raises
        text = "(its message could not be shown)"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def conversion_error(exc: BaseException) -> str:
    try:
        return describe_exception(exc)
    except BaseException:  # noqa: BLE001
        return "an exception that cannot be described"


def reference_cache(maxsize: int | None = 4096) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Memoize per-reference work (parsing the gold answer) inside a worker process.

    GRPO scores every completion of a group against the same reference; the runtime keeps a
    group's samples together in one chunk, so a cached parse is reused across the group.
    """

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        return functools.lru_cache(maxsize=maxsize)(fn)

    if callable(maxsize):  # used bare: @reference_cache
        fn, maxsize = maxsize, 4096
        return wrap(fn)
    return wrap


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def completion_text(completion: Any) -> tuple[str, list[dict[str, Any]] | None]:
    """The text of a completion, and its messages when it came in chat format."""
    if isinstance(completion, str):
        return completion, None
    if isinstance(completion, Sequence) and all(isinstance(m, Mapping) for m in completion):
        messages = [dict(m) for m in completion]
        assistant = [m for m in messages if m.get("role", "assistant") == "assistant"]
        text = "".join(_content_text(m.get("content")) for m in (assistant or messages))
        return text, messages
    if completion is None:
        return "", None
    raise TypeError(f"a completion must be text or a list of chat messages, not {type(completion).__name__}")


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multimodal content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping))
    return "" if content is None else str(content)
