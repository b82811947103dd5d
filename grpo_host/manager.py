"""Plugin loading and the registries of rewards, backends and data sources.

Plugins are found through the ``grpo_host`` entry-point group and loaded one entry point at a
time. A plugin that fails to import, fails pluggy's hook validation, or whose hook raises or
returns nonsense is recorded as broken (distribution, version, error) and set aside, so one bad
plugin never takes a command down. The registries refuse two plugins claiming one name, and
an unknown name gets the installed names and a did-you-mean.

Environment controls:
  GRPO_HOST_LOAD_PLUGINS     comma list of distributions to load (set but empty: none)
  GRPO_HOST_DISABLE_PLUGINS  comma list of distributions not to load
  GRPO_HOST_TRACE_PLUGINS=1  print every hook call (plugin, args, result, time) to stderr
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import import_module, metadata
from typing import Any

import pluggy

from grpo_host import hookspecs
from grpo_host._markers import PROJECT_NAME
from grpo_host.backends import BackendSpec
from grpo_host.datasets import DatasetSpec, builtin_datasets
from grpo_host.errors import (
    BrokenPluginError,
    GrpoHostError,
    NameConflictError,
    UnknownNameError,
    did_you_mean,
)
from grpo_host.rewards.spec import RewardSpec, spec_of

ENTRY_POINT_GROUP = "grpo_host"


def normalize_dist(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(".", "-")


@dataclass
class PluginRecord:
    name: str  # the distribution
    version: str
    entry_point: str
    status: str = "ok"  # ok | broken | blocked
    error: str | None = None
    rewards: list[str] = field(default_factory=list)
    backends: list[str] = field(default_factory=list)
    trackers: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "entry_point": self.entry_point,
            "status": self.status,
            "error": self.error,
            "rewards": self.rewards,
            "backends": self.backends,
            "trackers": self.trackers,
            "datasets": self.datasets,
        }


class PluginManager:
    """A typed facade over pluggy: one method per hook, each plugin's call isolated."""

    def __init__(self, *, environ: Mapping[str, str] | None = None, load_entry_points: bool = True):
        env = os.environ if environ is None else environ
        self._pm = pluggy.PluginManager(PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self.plugins: list[PluginRecord] = []
        self.rewards: dict[str, RewardSpec] = {}
        self.backends: dict[str, BackendSpec] = {}
        self.trackers: dict[str, Any] = {}
        # The host's own data sources are there before any plugin; a plugin claiming one's name conflicts.
        self.datasets: dict[str, DatasetSpec] = {d.name: d for d in builtin_datasets()}
        self.conflicts: dict[tuple[str, str], list[str]] = {}
        self._trace = env.get("GRPO_HOST_TRACE_PLUGINS", "") not in ("", "0", "false")
        allow = env.get("GRPO_HOST_LOAD_PLUGINS")
        self._allow = None if allow is None else {normalize_dist(n) for n in allow.split(",") if n.strip()}
        self._block = {normalize_dist(n) for n in env.get("GRPO_HOST_DISABLE_PLUGINS", "").split(",") if n.strip()}
        if load_entry_points:
            self.load_entry_points()

    # -- loading ---------------------------------------------------------------------------
    def load_entry_points(self) -> None:
        seen: set[tuple[str, str]] = set()
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else ep.module.split(".")[0]
            version = dist.version if dist is not None else "?"
            key = (normalize_dist(dist_name), ep.name)
            if key in seen:  # the same distribution seen twice on sys.path
                continue
            seen.add(key)
            record = PluginRecord(dist_name, version, f"{ep.name} = {ep.value}")
            self.plugins.append(record)
            blocked = self._blocked_reason(dist_name)
            if blocked:
                record.status, record.error = "blocked", blocked
                continue
            try:
                obj = ep.load()
            except BaseException as exc:  # noqa: BLE001 - a plugin must not take the tool down
                if isinstance(exc, KeyboardInterrupt):
                    raise
                self._mark_broken(record, exc, "failed to import")
                continue
            self._register(obj, record)

    def register(self, obj: Any, name: str, version: str = "0") -> PluginRecord:
        """Register a plugin object directly (built-ins, tests, notebooks)."""
        record = PluginRecord(name, version, f"<registered {name}>")
        self.plugins.append(record)
        self._register(obj, record)
        return record

    def _blocked_reason(self, dist_name: str) -> str | None:
        norm = normalize_dist(dist_name)
        if norm in self._block:
            return "disabled by GRPO_HOST_DISABLE_PLUGINS"
        if self._allow is not None and norm not in self._allow:
            return "not listed in GRPO_HOST_LOAD_PLUGINS"
        return None

    def _mark_broken(self, record: PluginRecord, exc: BaseException, what: str) -> None:
        record.status = "broken"
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        record.error = f"{what}: {detail}"

    def _register(self, obj: Any, record: PluginRecord) -> None:
        try:
            self._check_hook_names(obj)
            self._pm.register(obj, name=f"{record.name}:{record.entry_point}")
        except Exception as exc:  # noqa: BLE001 - pluggy's PluginValidationError and friends
            self._mark_broken(record, exc, "failed hook validation")
            return
        try:
            rewards = self._collect(obj, record, "grpo_rewards")
            found = {id(spec_of(r)) for r in rewards}
            # The smallest plugin is a module of decorated rewards with no hook at all.
            if isinstance(obj, type(sys)):
                rewards += [v for v in vars(obj).values() if spec_of(v) is not None and id(spec_of(v)) not in found]
            reward_specs = [self._as_reward(r) for r in rewards]
            backend_specs = [self._as_record(b, BackendSpec, "grpo_backends") for b in self._collect(obj, record, "grpo_backends")]
            dataset_specs = [self._as_record(d, DatasetSpec, "grpo_datasets") for d in self._collect(obj, record, "grpo_datasets")]
            trackers = self._collect(obj, record, "grpo_trackers")
        except Exception as exc:  # noqa: BLE001
            self._pm.unregister(obj)
            self._mark_broken(record, exc, "failed while registering")
            return
        for spec in reward_specs:
            spec.plugin, spec.plugin_version = record.name, record.version
            if self._claim("reward", spec.name, record, self.rewards, spec):
                record.rewards.append(spec.name)
        for kind, specs, registry, names in (("backend", backend_specs, self.backends, record.backends),
                                             ("dataset", dataset_specs, self.datasets, record.datasets)):
            for spec in specs:
                spec = _with_plugin(spec, record)
                if self._claim(kind, spec.name, record, registry, spec):
                    names.append(spec.name)
        for tracker in trackers:
            name = getattr(tracker, "name", type(tracker).__name__)
            self.trackers[name] = tracker
            record.trackers.append(name)

    def _check_hook_names(self, obj: Any) -> None:
        """pluggy accepts a hookimpl with a misspelled name silently; we refuse it."""
        known = {name for name in dir(hookspecs) if name.startswith("grpo_")}
        for name in dir(obj):
            if name.startswith("_"):
                continue
            value = getattr(obj, name, None)
            if getattr(value, f"{PROJECT_NAME}_impl", None) is not None and name not in known:
                raise TypeError(
                    f"{name}() is marked @grpo_host.hookimpl but is not a grpo-host hook; "
                    f"hooks: {', '.join(sorted(known))}{did_you_mean(name, known)}"
                )

    def _claim(self, kind: str, name: str, record: PluginRecord, registry: dict, value: Any) -> bool:
        if name in registry or (kind, name) in self.conflicts:
            owners = self.conflicts.setdefault((kind, name), [registry.pop(name).plugin] if name in registry else [])
            owners.append(record.name)
            return False
        registry[name] = value
        return True

    def _collect(self, obj: Any, record: PluginRecord, hook_name: str) -> list[Any]:
        """Call one plugin's implementation of a hook, with tracing."""
        impls = [i for i in getattr(self._pm.hook, hook_name).get_hookimpls() if i.plugin is obj]
        results: list[Any] = []
        for impl in impls:
            start = time.perf_counter()
            result = impl.function()
            if self._trace:
                ms = (time.perf_counter() - start) * 1000
                print(
                    f"[grpo-host trace] {hook_name}() plugin={record.name} args={{}} -> {_short(result)} ({ms:.2f} ms)",
                    file=sys.stderr,
                )
            if result is None:
                continue
            if isinstance(result, (str, bytes)) or not isinstance(result, Iterable):
                raise TypeError(f"{hook_name}() must return a list, got {type(result).__name__}")
            results.extend(result)
        return results

    @staticmethod
    def _as_reward(item: Any) -> RewardSpec:
        spec = spec_of(item)
        if spec is None:
            raise TypeError(f"grpo_rewards() returned {item!r}, which is not decorated with @grpo_host.reward")
        return spec

    @staticmethod
    def _as_record(item: Any, cls: type, hook_name: str) -> Any:
        if not isinstance(item, cls):
            raise TypeError(f"{hook_name}() returned {item!r}, not a {cls.__module__}.{cls.__name__}")
        return item

    # -- lookups ---------------------------------------------------------------------------
    def get_reward(self, name: str) -> RewardSpec:
        if ":" in name and name not in self.rewards:
            return reward_from_import_path(name)
        return self._lookup("reward", name, self.rewards)

    def get_backend(self, name: str) -> BackendSpec:
        return self._lookup("backend", name, self.backends)

    def get_tracker(self, name: str) -> Any:
        return self._lookup("tracker", name, self.trackers)

    def get_dataset(self, name: str) -> DatasetSpec:
        return self._lookup("dataset", name, self.datasets)

    def _lookup(self, kind: str, name: str, registry: Mapping[str, Any]) -> Any:
        if name in registry:
            return registry[name]
        owners = self.conflicts.get((kind, name))
        if owners:
            raise NameConflictError(
                f"{kind} {name!r} is provided by more than one plugin: {' and '.join(owners)}; "
                f"uninstall one, or disable it with GRPO_HOST_DISABLE_PLUGINS={owners[-1]}"
            )
        broken = [p for p in self.plugins if p.status == "broken"]
        if broken:
            listing = "; ".join(f"{p.name} {p.version} ({p.error})" for p in broken)
            raise BrokenPluginError(
                f"{kind} {name!r} is not available. Installed {kind}s: {', '.join(sorted(registry)) or '(none)'}. "
                f"These plugins failed to load and may provide it: {listing}. "
                f"Fix or reinstall them; `grpo-host plugins` shows the details"
            )
        hint = ""
        blocked = [p.name for p in self.plugins if p.status == "blocked"]
        if blocked:
            hint = f"blocked plugins (not loaded): {', '.join(blocked)}"
        raise UnknownNameError(kind, name, registry, hint)

    def broken_plugins(self) -> list[PluginRecord]:
        return [p for p in self.plugins if p.status == "broken"]


def _with_plugin(spec: Any, record: PluginRecord) -> Any:
    from dataclasses import replace

    return replace(spec, plugin=record.name, plugin_version=record.version)


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def reward_from_import_path(path: str) -> RewardSpec:
    """``package.module:attribute`` names a decorated reward without any plugin."""
    module_name, _, attr = path.partition(":")
    try:
        obj: Any = import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise GrpoHostError(f"cannot import reward {path!r}: {exc}") from None
    spec = spec_of(obj)
    if spec is None:
        raise GrpoHostError(f"{path!r} is not decorated with @grpo_host.reward")
    if not spec.plugin:
        spec.plugin, spec.plugin_version = module_name.split(".")[0], "import-path"
    return spec


_MANAGER: PluginManager | None = None


def get_plugin_manager(refresh: bool = False) -> PluginManager:
    """The process-wide plugin manager, loaded on first use."""
    global _MANAGER
    if _MANAGER is None or refresh:
        _MANAGER = PluginManager()
    return _MANAGER
