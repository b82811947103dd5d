"""Binding a reward: a :class:`~grpo_host.rewards.item.RewardItem` paired with its spec.

``bind_reward`` is the one place a named reward becomes what a run scores with: it finds the
spec (through the :class:`RewardLookup` it is given: the plugin manager, one layer up), checks the reward's own params against its
signature and the host params against the reward (``concurrency`` only for async rewards), and
returns a :class:`BoundReward` that holds the item unchanged. Every entry binds through it:
the run config, try-reward, serve-rewards, export, ``load_reward``/``load_rewards``, the golden
harness.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from grpo_host.errors import GrpoHostError, RewardParamError
from grpo_host.rewards.item import RewardItem, reward_item
from grpo_host.rewards.spec import DEFAULT_CONCURRENCY, RewardSpec


class RewardLookup(Protocol):
    """Finds a reward's spec by name: the plugin manager does. The runtime takes one rather than
    importing the plugin system, which stands above it (the manager collects specs)."""

    def get_reward(self, name: str) -> RewardSpec: ...


@dataclass(frozen=True)
class BoundReward:
    """A reward item with its spec and its params resolved: what a run actually scores with.

    The host params are the item's, read through (the item's None: the default)."""

    spec: RewardSpec
    item: RewardItem
    params: dict[str, Any]  # the reward's params: its defaults overlaid with the item's, checked
    timeout: float  # the item's, or the reward's default
    concurrency: int = DEFAULT_CONCURRENCY  # async rewards: samples awaited at once, in all

    @functools.cached_property
    def name(self) -> str:
        """The name results are reported under: the item's alias, else the reward's name."""
        # Cached like ``key``: the runtime files every sample's result under it.
        return self.item.alias or self.spec.name

    @property
    def alias(self) -> str:
        return self.item.alias

    @property
    def weight(self) -> float:
        return self.item.weight

    @property
    def memory_mb(self) -> int | None:
        """None: the runtime's default cap; 0: no cap."""
        return self.item.memory_mb

    @functools.cached_property
    def key(self) -> str:
        # Cached (in the instance's __dict__, past the frozen __setattr__): the pool sends it
        # with every chunk, and hashing the params' JSON cost more than a small chunk's IPC.
        return str(self.spec.provenance(self.params)["params_hash"])

    def provenance(self) -> dict[str, Any]:
        extra: dict[str, Any] = {} if self.memory_mb is None else {"memory_mb": self.memory_mb}
        if self.spec.is_async:
            extra["concurrency"] = self.concurrency
        return {**self.spec.provenance(self.params), "timeout": self.timeout, "weight": self.weight, **extra}


def bind_reward(
    reward: RewardSpec | RewardItem | str | Mapping[str, Any] | tuple[str, Mapping[str, Any]],
    params: Mapping[str, Any] | None = None,
    alias: str = "",
    *,
    manager: RewardLookup | None = None,
) -> BoundReward:
    """Bind a reward, checked: the one way a run gets what it scores with.

    ``reward`` names it as a :class:`RewardItem`, ``(name, params)``, the run config's mapping
    (``name``, ``params``, ``alias``, host params) or a name, found through ``manager``
    (``grpo_host.get_plugin_manager()`` for the installed plugins); or it is the spec itself. With a name or a spec, ``params`` (host
    params may sit among them: ``{"scale": 2, "timeout": 5}``) and ``alias`` go with it.
    """
    if isinstance(reward, RewardSpec):
        spec, item = reward, RewardItem.from_params(reward.name, params, alias)
    else:
        if isinstance(reward, str):
            item = RewardItem.from_params(reward, params, alias)
        elif params is not None or alias:
            raise TypeError(
                "bind_reward: give params and alias inside the reward item, or with a name or spec"
            )
        else:
            item = reward_item(reward)
        if manager is None:
            raise TypeError(
                f"bind_reward: reward {item.name!r} is given by name; pass manager= to find it "
                "(grpo_host.get_plugin_manager() for the installed plugins), or pass its spec"
            )
        spec = manager.get_reward(item.name)
    if item.concurrency is not None and not spec.is_async:
        raise RewardParamError(
            f"reward {spec.name!r} is not async: the host param concurrency applies only to rewards "
            "declared `async def`; remove it"
        )
    timeout = spec.default_timeout if item.timeout is None else item.timeout
    if not timeout > 0:  # a reward's own default: @reward(timeout=...) is not checked elsewhere
        raise GrpoHostError(
            f"reward {spec.name!r}: timeout must be a positive number of seconds, not {timeout}"
        )
    concurrency = DEFAULT_CONCURRENCY if item.concurrency is None else item.concurrency
    return BoundReward(spec, item, spec.resolve_params(item.params), timeout, concurrency)
