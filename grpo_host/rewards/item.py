"""A reward as a run names it: :class:`RewardItem`, and the host params every reward takes.

A reward item is one entry of a run's reward list: the reward's name, the alias its results are
reported under, the host params as typed fields (``timeout``, ``weight``, ``memory_mb``,
``concurrency``: what the runtime does with the reward, whatever its signature) and the
reward's own params. It is made once, where a reward is named (the run config and its
``--set``, try-reward's ``--set``, serve-rewards, export, ``load_reward``/``load_rewards``, a
golden case), its host params checked there, and it travels to the runtime unchanged:
``grpo_host.rewards.binding.bind_reward`` pairs it with the reward's spec and checks the
reward's own params.

The host params are defined once, as the item's fields (each with its rule); ``HOST_PARAMS``,
their checks and the run config's reward fields all come from there. Nothing here imports
pydantic or any heavy library: reward workers import it through ``grpo_host.rewards.spec``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from grpo_host.errors import GrpoHostError, RewardParamError, did_you_mean


class HostParamRule:
    """What one host param takes: ``kind`` (float or int) from ``minimum`` up, finite.

    A plain class, not a dataclass: this module is on the CLI's start path (the ``@reward``
    decorator reads ``HOST_PARAMS``), where each dataclass costs the better part of a ms."""

    __slots__ = ("kind", "what", "description", "minimum", "exclusive", "optional", "name")

    def __init__(
        self,
        kind: type,
        what: str,  # the allowed values in words, for errors: "a positive number of seconds"
        description: str,  # for the run config's schema
        minimum: float | None = None,
        exclusive: bool = False,  # the minimum itself is not allowed
        optional: bool = True,  # None allowed: the default (else the field's default is a value)
    ):
        self.kind, self.what, self.description = kind, what, description
        self.minimum, self.exclusive, self.optional = minimum, exclusive, optional
        self.name = ""  # set from the field it belongs to

    def __repr__(self) -> str:
        return f"<host param {self.name or '?'}: {self.what}>"

    def check(self, value: Any) -> Any:
        """``value`` as this param's kind (None stays None: the default), or a ValueError that
        says what is allowed (the caller adds where, and the value). Numbers written as text (``"0.5"``) are read; booleans are not
        numbers here."""
        if value is None:
            return None
        number = None
        if not isinstance(value, bool) and isinstance(value, (int, float, str)):
            try:
                number = float(value)
            except (ValueError, OverflowError):
                pass
        if (
            number is None
            or not math.isfinite(number)
            or (self.kind is int and not number.is_integer())
            or (
                self.minimum is not None
                and (number <= self.minimum if self.exclusive else number < self.minimum)
            )
        ):
            raise ValueError(f"{self.name} must be {self.what}")
        return int(number) if self.kind is int else number


def _host(
    default: Any,
    kind: type,
    what: str,
    description: str,
    minimum: float | None = None,
    exclusive: bool = False,
) -> Any:
    rule = HostParamRule(kind, what, description, minimum, exclusive, optional=default is None)
    return field(default=default, metadata={"host_param": rule})


@dataclass(frozen=True)
class RewardItem:
    """One reward of a run: its name, alias, host params and params, checked when made.

    ``params`` holds the reward's own params only; the flat forms that mix host params in
    (``load_reward("accuracy", timeout=5)``, ``--set accuracy.timeout=5``) go through
    :meth:`from_params` or :func:`reward_item`, which lift them out.
    """

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    alias: str = ""  # the name results are reported under (default: the reward's name)
    # The host params. None means the default: the reward's own timeout, the runtime's memory
    # cap, 32 samples at once for an async reward.
    timeout: float | None = _host(
        None,
        float,
        "a positive number of seconds",
        "Seconds one sample may take before it is a timeout (default: the reward's own, usually 10).",
        minimum=0,
        exclusive=True,
    )
    weight: float = _host(
        1.0,
        float,
        "a finite number",
        "A finite number; its scores are multiplied by it in the sum the policy learns from.",
    )
    memory_mb: int | None = _host(
        None,
        int,
        "a whole number of megabytes per worker (0 for no cap)",
        "Memory cap per reward worker in MB (0: none; default: half the machine's memory shared by "
        "the workers, 1-4 GiB).",
        minimum=0,
    )
    concurrency: int | None = _host(
        None,
        int,
        "a whole number of samples awaited at once (at least 1)",
        "Async rewards only: samples awaited at once, across the workers (default 32).",
        minimum=1,
    )

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise GrpoHostError(f"a reward needs a name (text), not {self.name!r}")
        if not isinstance(self.params, Mapping):
            raise GrpoHostError(
                f"reward {self.name!r}: params must be a mapping of param names to values, "
                f"not {type(self.params).__name__}"
            )
        mixed = [k for k in self.params if k in HOST_PARAMS]
        if mixed:
            raise RewardParamError(
                f"reward {self.name!r}: {', '.join(mixed)} is a host param, not one of the reward's "
                f"params; give it beside params (RewardItem({mixed[0]}=...), `{mixed[0]}:` on the reward)"
            )
        object.__setattr__(self, "params", dict(self.params))
        object.__setattr__(self, "alias", self.alias or "")
        if not isinstance(self.alias, str):
            raise GrpoHostError(f"reward {self.name!r}: alias must be text, not {self.alias!r}")
        for rule in HOST_PARAM_RULES:
            value = getattr(self, rule.name)
            if value is None and not rule.optional:
                raise RewardParamError(f"reward {self.label!r}: {rule.name} must be {rule.what}, not None")
            try:
                object.__setattr__(self, rule.name, rule.check(value))
            except ValueError as exc:
                raise RewardParamError(f"reward {self.label!r}: {exc}, not {value!r}") from None

    @property
    def label(self) -> str:
        """The name its results are reported under."""
        return self.alias or self.name

    @classmethod
    def from_params(
        cls, name: str, params: Mapping[str, Any] | None = None, alias: str = "", **host: Any
    ) -> RewardItem:
        """An item from a flat mapping of params in which host params may sit beside the
        reward's own (``{"scale": 2, "timeout": 5}``); a host param given in ``host`` wins."""
        if params is not None and not isinstance(params, Mapping):
            raise GrpoHostError(
                f"reward {name!r}: params must be a mapping of param names to values, not {type(params).__name__}"
            )
        own = dict(params or {})
        for key in HOST_PARAMS:
            value = own.pop(key, None)
            if host.get(key) is None and value is not None:
                host[key] = value
        return cls(name, own, alias, **{k: v for k, v in host.items() if v is not None})


def _rules() -> tuple[HostParamRule, ...]:
    rules = []
    for f in dataclasses.fields(RewardItem):
        if "host_param" in f.metadata:
            rule = f.metadata["host_param"]
            rule.name = f.name
            rules.append(rule)
    return tuple(rules)


HOST_PARAM_RULES = _rules()
# Every reward accepts these, whatever its signature; the runtime consumes them.
HOST_PARAMS: tuple[str, ...] = tuple(rule.name for rule in HOST_PARAM_RULES)
ITEM_KEYS = ("name", "params", "alias", *HOST_PARAMS)


def reward_item(value: Any) -> RewardItem:
    """A :class:`RewardItem` from any way a reward is named: an item, ``"accuracy"``,
    ``("accuracy", {params})`` (a JSON list of two too), or the run config's mapping
    ``{"name", "params", "alias", "timeout", "weight", "memory_mb", "concurrency"}``."""
    if isinstance(value, RewardItem):
        return value
    if isinstance(value, str):
        return RewardItem(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and isinstance(value[0], str):
        return RewardItem.from_params(value[0], value[1] or {})
    if isinstance(value, Mapping):
        entry = dict(value)
        name = entry.pop("name", None)
        if not name:
            raise GrpoHostError(f"a reward entry needs a 'name': {value!r}")
        unknown = [k for k in entry if k not in ITEM_KEYS]
        if unknown:
            raise GrpoHostError(
                f"reward entry {name!r} has unknown key(s) {', '.join(map(str, unknown))}; allowed: "
                f"{', '.join(ITEM_KEYS)}{did_you_mean(str(unknown[0]), ITEM_KEYS)}"
            )
        return RewardItem.from_params(
            name, entry.pop("params", None) or {}, entry.pop("alias", "") or "", **entry
        )
    raise GrpoHostError(
        f"cannot read a reward from {value!r}: give a name, (name, params), or a mapping with 'name'"
    )


def host_param_fields() -> dict[str, Any]:
    """The run config's reward fields for the host params: ``{name: (annotation, FieldInfo)}``
    for pydantic's ``create_model``, each checked by its rule (the same check as the item's)."""
    from typing import Annotated

    from pydantic import BeforeValidator, Field

    fields: dict[str, Any] = {}
    for rule in HOST_PARAM_RULES:
        default: Any = next(f.default for f in dataclasses.fields(RewardItem) if f.name == rule.name)
        bound: dict[str, Any] = {}
        if rule.minimum is not None:
            bound = {"gt" if rule.exclusive else "ge": rule.minimum}
        annotation: Any = rule.kind | None if rule.optional else rule.kind
        fields[rule.name] = (
            Annotated[annotation, BeforeValidator(rule.check)],
            Field(default, allow_inf_nan=False, description=rule.description, **bound),
        )
    return fields


def memory_error_text(megabytes: int | None, reward: str = "") -> str:
    """What a reward that ran out of memory under its cap is told to do."""
    where = f"{reward}.memory_mb" if reward else "REWARD.memory_mb"
    return (
        f"went over its memory cap of {megabytes} MB per worker; raise it with the host param "
        f"memory_mb (`--set {where}=...`, or `memory_mb:` on the reward in the run config)"
    )
