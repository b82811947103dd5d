"""Plugin loading and the registries of rewards, backends and data sources.

Plugins are found through the ``grpo_host`` entry-point group and loaded one entry point at a
time. A plugin that fails to import, fails pluggy's hook validation, or whose hook raises
(``SystemExit`` and ``KeyboardInterrupt`` included) or returns nonsense is recorded as broken
(distribution, version, error) and set aside, so one bad plugin never takes a command down. A
plugin that kills its process (``os._exit``, a segfault, a hang) is caught by
:mod:`grpo_host.plugins.guard`: new or changed plugins are tried in a child process first, and
a start that died inside a plugin is traced to it. Each import is timed; one over a second is
named in a warning. The registries (rewards, backends, data sources, trackers) refuse two
plugins claiming one name, naming both, and an unknown name gets the installed names and a
did-you-mean.

Environment controls:
  GRPO_HOST_LOAD_PLUGINS     comma list of distributions to load (set but empty: none)
  GRPO_HOST_DISABLE_PLUGINS  comma list of distributions not to load
  GRPO_HOST_TRACE_PLUGINS=1  print every hook call (plugin, args, result, time) to stderr
  GRPO_HOST_PLUGIN_TIMEOUT   seconds one plugin may take to import and register (default 10)
"""

from __future__ import annotations

import contextlib
import copy
import os
import sys
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
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
    PluginParamError,
    UnknownNameError,
    did_you_mean,
)
from grpo_host.plugins import guard as plugin_guard
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
    import_seconds: float | None = None  # None: not imported in this process

    @property
    def module(self) -> str:
        return self.entry_point.partition("=")[2].strip().split(":")[0]

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
            "import_seconds": None if self.import_seconds is None else round(self.import_seconds, 4),
        }


class PluginManager:
    """A typed facade over pluggy: one method per hook, each plugin's call isolated."""

    def __init__(self, *, environ: Mapping[str, str] | None = None, load_entry_points: bool = True,
                 recheck: bool = False):
        """``recheck``: try every plugin in a child process first, trusted or not
        (``grpo-host plugins --recheck`` and ``test-rewards``)."""
        env = os.environ if environ is None else environ
        self._env = env
        self._pm = pluggy.PluginManager(PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self.plugins: list[PluginRecord] = []
        self.rewards: dict[str, RewardSpec] = {}
        self.backends: dict[str, BackendSpec] = {}
        self.trackers: dict[str, Any] = {}
        # The host's own data sources are there before any plugin; a plugin claiming one's name conflicts.
        self.datasets: dict[str, DatasetSpec] = {d.name: d for d in builtin_datasets()}
        self.conflicts: dict[tuple[str, str], list[str]] = {}
        self.conflict_notes: dict[tuple[str, str], str] = {}
        # Backends and data sources whose param declaration cannot work: (kind, name) -> why.
        self.refused: dict[tuple[str, str], str] = {}
        self._owners: dict[tuple[str, str], str] = {("dataset", d.name): d.plugin or PROJECT_NAME for d in self.datasets.values()}
        self.warnings: list[str] = []  # also printed to stderr as they happen
        self._budget = plugin_guard.budget_from(env)
        self._guard = plugin_guard.InProcessGuard(None, self._budget)
        self._foreign_tops: set[str] = set()  # top-level modules of every entry point
        self._store: plugin_guard.TrustStore | None = None
        if env.get("GRPO_HOST_TRACE_PLUGINS", "") not in ("", "0", "false"):
            self._trace_hook_calls()
        allow = env.get("GRPO_HOST_LOAD_PLUGINS")
        self._allow = None if allow is None else {normalize_dist(n) for n in allow.split(",") if n.strip()}
        self._block = {normalize_dist(n) for n in env.get("GRPO_HOST_DISABLE_PLUGINS", "").split(",") if n.strip()}
        if load_entry_points:
            self.load_entry_points(recheck=recheck)

    # -- loading ---------------------------------------------------------------------------
    def load_entry_points(self, recheck: bool = False) -> None:
        guard = plugin_guard
        seen: set[tuple[str, str]] = set()
        pending: list[tuple[Any, PluginRecord, plugin_guard.Candidate]] = []
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else ep.module.split(".")[0]
            version = dist.version if dist is not None else "?"
            key = (normalize_dist(dist_name), ep.name)
            if key in seen:  # the same distribution seen twice on sys.path
                continue
            seen.add(key)
            self._foreign_tops.add(ep.module.split(".")[0])
            record = PluginRecord(dist_name, version, f"{ep.name} = {ep.value}")
            self.plugins.append(record)
            blocked = self._blocked_reason(dist_name)
            if blocked:
                record.status, record.error = "blocked", blocked
                continue
            dist_path = str(getattr(dist, "_path", "") or "")
            candidate = guard.Candidate(f"{key[0]}:{ep.name}@{dist_path}", dist_name, ep.name, ep.value,
                                        guard.fingerprint(version, dist_path, ep.module))
            pending.append((ep, record, candidate))
        root = guard.cache_dir(self._env) if pending else None
        crumbs = guard.Breadcrumbs(root) if root is not None else None
        store = self._store = guard.TrustStore(root) if root is not None else None
        quarantined = self._check_untrusted([c for _, _, c in pending], crumbs, store, recheck)
        self._guard = guard.InProcessGuard(crumbs, self._budget)
        try:
            for ep, record, candidate in pending:
                if candidate.key in quarantined:
                    record.status, record.error = "broken", quarantined[candidate.key]
                    # Named at every start: what it would have provided is silently missing otherwise.
                    self._warn(f"plugin {record.name} {record.version}: {record.error}")
                    continue
                self._load_one(ep, record, candidate)
        finally:
            if crumbs is not None:
                crumbs.clear()
            if store is not None:
                store.save()

    def _check_untrusted(self, candidates: list[plugin_guard.Candidate], crumbs: plugin_guard.Breadcrumbs | None,
                         store: plugin_guard.TrustStore | None, recheck: bool) -> dict[str, str]:
        """Try in a child process every plugin not known to be safe in its current files, or
        that a dead start's breadcrumb points at; returns {key: why it stays out of process}."""
        if crumbs is None or store is None:
            return {}
        by_key = {c.key: c for c in candidates}
        suspects = {}
        for dead in crumbs.dead():
            if dead.key in by_key:
                suspects[dead.key] = dead
                what = "importing it" if dead.phase == "import" else "calling its hooks"
                self._warn(f"an earlier grpo-host start (pid {dead.pid}) died while {what}: plugin {dead.label}; "
                           "checking it in a child process")
        out: dict[str, str] = {}
        probe = []
        for candidate in candidates:
            entry = store.get(candidate)
            status = entry.get("status") if entry else None
            if recheck or candidate.key in suspects or status not in ("safe", "timeout"):
                probe.append(candidate)
            elif status == "timeout":
                reason = entry.get("reason", "too slow to import") if entry else "too slow to import"
                out[candidate.key] = (f"quarantined: {reason}; it stays out until "
                                      "its files change or `grpo-host plugins --recheck` tries it again")
        if probe:
            verdicts = plugin_guard.probe_in_child(probe, self._budget)
            for candidate in probe:
                verdict = verdicts[candidate.key]
                store.put(candidate, verdict)
                if verdict.status == "killed":
                    out[candidate.key] = (f"quarantined: {verdict.reason}; not loaded, and tried again in a child "
                                          "process at every start until it loads")
                elif verdict.status == "timeout":
                    out[candidate.key] = (f"quarantined: {verdict.reason}; it stays out until its files change or "
                                          "`grpo-host plugins --recheck` tries it again")
        return out

    def _load_one(self, ep: Any, record: PluginRecord, candidate: plugin_guard.Candidate) -> None:
        start = time.perf_counter()
        try:
            with self._guard.around(candidate, "import"):
                obj = ep.load()
        except BaseException as exc:  # noqa: BLE001 - a plugin must not take the tool down
            self._reraise_if_user_interrupt(exc)
            self._remember_timeout(exc, candidate, "at import")
            self._mark_broken(record, exc, "failed to import")
            return
        finally:
            record.import_seconds = time.perf_counter() - start
        if record.import_seconds > plugin_guard.SLOW_IMPORT_S:
            self._warn(f"plugin {record.name} {record.version} took {record.import_seconds:.1f} s to import "
                       f"({record.module}); every grpo-host command pays this. Its authors should move heavy imports "
                       "inside the reward, where they run when it is built")
        self._register(obj, record, candidate)

    def _remember_timeout(self, exc: BaseException, candidate: plugin_guard.Candidate | None, where: str) -> None:
        """A plugin stopped at the budget stays out of later starts (they would wait again)."""
        if isinstance(exc, plugin_guard.PluginTimeout) and self._store is not None and candidate is not None:
            reason = f"took over {self._budget:g} s {where} and was stopped (GRPO_HOST_PLUGIN_TIMEOUT={self._budget:g})"
            self._store.put(candidate, plugin_guard.Verdict("timeout", reason, self._budget))

    def _reraise_if_user_interrupt(self, exc: BaseException) -> None:
        """A Ctrl-C while loading stops the command; a KeyboardInterrupt a plugin raised does not."""
        if isinstance(exc, KeyboardInterrupt) and self._guard.user_interrupted:
            raise exc

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        print(f"warning: {message}", file=sys.stderr)

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
        if isinstance(exc, plugin_guard.PluginTimeout):
            record.error = (f"{what}: took over {self._budget:g} s and was stopped (GRPO_HOST_PLUGIN_TIMEOUT="
                            f"{self._budget:g}); quarantined until its files change or `grpo-host plugins --recheck`")
            return
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        record.error = f"{what}: {detail}"

    def _register(self, obj: Any, record: PluginRecord, candidate: plugin_guard.Candidate | None = None) -> None:
        try:
            with self._guard.around(candidate, "hooks"):
                try:
                    self._pm.register(obj, name=f"{record.name}:{record.entry_point}")
                    self._check_pending(obj)
                except Exception as exc:  # noqa: BLE001 - pluggy's PluginValidationError and friends
                    if self._pm.is_registered(obj):
                        self._pm.unregister(obj)
                    self._mark_broken(record, exc, "failed hook validation")
                    return
                rewards = self._collect(obj, record, "grpo_rewards")
                found = {id(spec_of(r)) for r in rewards}
                # The smallest plugin is a module of decorated rewards with no hook at all; a
                # reward it imports from another plugin is that plugin's, not a second claim.
                if isinstance(obj, type(sys)):
                    declared = [(v, spec_of(v)) for v in vars(obj).values()]
                    rewards += [v for v, spec in declared if spec is not None
                                and id(spec) not in found and not self._foreign(spec, record)]
                reward_specs = [self._as_reward(r) for r in rewards]
                backend_specs = [self._as_record(b, BackendSpec, "grpo_backends")
                                 for b in self._collect(obj, record, "grpo_backends")]
                dataset_specs = [self._as_record(d, DatasetSpec, "grpo_datasets")
                                 for d in self._collect(obj, record, "grpo_datasets")]
                trackers = [self._as_tracker(t) for t in self._collect(obj, record, "grpo_trackers")]
        except BaseException as exc:  # noqa: BLE001 - SystemExit from a hook must not end the command
            self._reraise_if_user_interrupt(exc)
            self._remember_timeout(exc, candidate, "in its hooks")
            if self._pm.is_registered(obj):
                self._pm.unregister(obj)
            self._mark_broken(record, exc, "failed while registering")
            return
        for spec in reward_specs:
            spec = self._owned_spec(spec, record)
            if self._claim("reward", spec.name, record, self.rewards, spec):
                record.rewards.append(spec.name)
        for kind, specs, registry, names in (("backend", backend_specs, self.backends, record.backends),
                                             ("dataset", dataset_specs, self.datasets, record.datasets)):
            for spec in specs:
                spec = _with_plugin(spec, record)
                if not self._params_declared(kind, spec, record):
                    continue
                if self._claim(kind, spec.name, record, registry, spec):
                    names.append(spec.name)
        for name, tracker in trackers:
            if self._claim("tracker", name, record, self.trackers, tracker):
                record.trackers.append(name)

    def _params_declared(self, kind: str, spec: BackendSpec | DatasetSpec, record: PluginRecord) -> bool:
        """Whether the spec's param declaration can work (a type that is a type, a default of its
        own type); one that cannot is the plugin's bug: refused alone, with a warning, and named
        when it is asked for. Its plugin's other specs register."""
        try:
            for message in spec.check_declared():
                self._warn(f"{record.name} {record.version}: {message}")
        except PluginParamError as exc:
            self.refused[(kind, spec.name)] = f"{exc} (plugin {record.name} {record.version})"
            self._warn(f"{record.name} {record.version}: {kind} {spec.name!r} not registered: {exc}")
            return False
        return True

    def _foreign(self, spec: RewardSpec, record: PluginRecord) -> bool:
        """Whether a reward found in a plugin's module lives in another plugin's package."""
        top = getattr(spec.target, "__module__", "").split(".")[0]
        return top != record.module.split(".")[0] and top in self._foreign_tops

    def _owned_spec(self, spec: RewardSpec, record: PluginRecord) -> RewardSpec:
        """The spec stamped with its plugin. A plugin handing out another plugin's reward gets
        a copy, so the other plugin's provenance on the decorated object is never overwritten."""
        top = getattr(spec.target, "__module__", "").split(".")[0]
        if top != record.module.split(".")[0] and (top in self._foreign_tops or spec.plugin not in ("", record.name)):
            spec = copy.copy(spec)
        spec.plugin, spec.plugin_version = record.name, record.version
        return spec

    @staticmethod
    def _as_tracker(tracker: Any) -> tuple[str, Any]:
        name = getattr(tracker, "name", None)
        if not isinstance(name, str) or not name.strip():
            raise TypeError(f"grpo_trackers() returned {tracker!r}, which has no `name` string")
        missing = [m for m in ("start", "log_metrics", "finish") if not callable(getattr(tracker, m, None))]
        if missing:
            raise TypeError(f"grpo_trackers() returned tracker {name!r} without {', '.join(missing)}()")
        return name, tracker

    def _check_pending(self, obj: Any) -> None:
        """pluggy registers a hookimpl with a misspelled name silently; ``check_pending`` finds
        it (the plugins before this one passed it already), and the error names the real hooks."""
        try:
            self._pm.check_pending()
        except pluggy.PluginValidationError:
            known = {name for name in dir(hookspecs) if name.startswith("grpo_")}
            unknown = sorted(c.name for c in self._pm.get_hookcallers(obj) or () if not c.has_spec())
            name = unknown[0] if unknown else "?"
            raise TypeError(
                f"{name}() is marked @grpo_host.hookimpl but is not a grpo-host hook; "
                f"hooks: {', '.join(sorted(known))}{did_you_mean(name, known)}"
            ) from None

    def _claim(self, kind: str, name: str, record: PluginRecord, registry: dict[str, Any], value: Any) -> bool:
        """Register ``value`` as ``name``, unless another plugin has: then neither keeps it and
        the conflict names every claimant (who owns what is tracked here, not read back
        from the value, which a plugin may share with another)."""
        key = (kind, name)
        if name in registry or key in self.conflicts:
            owners = self.conflicts.setdefault(key, [])
            if name in registry:
                first = registry.pop(name)
                owners.append(self._owners.pop(key, "?"))
                if _same_target(first, value):
                    self.conflict_notes[key] = (f"{record.name} hands out the very {kind} {owners[0]} defines "
                                                f"({_target_path(value)}); it should not list it in its own hook")
            owners.append(record.name)
            return False
        registry[name] = value
        self._owners[key] = record.name
        return True

    def _collect(self, obj: Any, record: PluginRecord, hook_name: str) -> list[Any]:
        """Call one plugin's implementations of a hook through pluggy (a hook caller that holds
        this plugin alone: its failure is its own, and ``GRPO_HOST_TRACE_PLUGINS`` sees it)."""
        others = [p for p in self._pm.get_plugins() if p is not obj]
        results: list[Any] = []
        for result in self._pm.subset_hook_caller(hook_name, remove_plugins=others)():
            if isinstance(result, (str, bytes)) or not isinstance(result, Iterable):
                raise TypeError(f"{hook_name}() must return a list, got {type(result).__name__}")
            results.extend(result)
        return results

    def _trace_hook_calls(self) -> None:
        """``GRPO_HOST_TRACE_PLUGINS``: every hook call on stderr, with its plugin, result and time."""
        started: list[float] = []

        def before(hook_name: str, impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]) -> None:
            started.append(time.perf_counter())

        def after(outcome: pluggy.Result[Any], hook_name: str, impls: Sequence[pluggy.HookImpl],
                  kwargs: Mapping[str, Any]) -> None:
            ms = (time.perf_counter() - started.pop()) * 1000
            if not impls:  # a plugin that does not implement this hook: nothing was called
                return
            plugins = ",".join(dict.fromkeys(i.plugin_name.partition(":")[0] for i in impls))
            if outcome.exception is not None:
                shown = f"raised {outcome.exception!r}"
            else:
                results = outcome.get_result()
                shown = _short(results[0] if len(results) == 1 else results)
            print(f"[grpo-host trace] {hook_name}() plugin={plugins} args={dict(kwargs)} -> {shown} ({ms:.2f} ms)",
                  file=sys.stderr)

        self._pm.add_hookcall_monitoring(before, after)

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
        spec: RewardSpec = self._lookup("reward", name, self.rewards)
        return spec

    def get_backend(self, name: str) -> BackendSpec:
        backend: BackendSpec = self._lookup("backend", name, self.backends)
        return backend

    def get_tracker(self, name: str) -> Any:
        return self._lookup("tracker", name, self.trackers)

    def get_dataset(self, name: str) -> DatasetSpec:
        dataset: DatasetSpec = self._lookup("dataset", name, self.datasets)
        return dataset

    def _lookup(self, kind: str, name: str, registry: Mapping[str, Any]) -> Any:
        if name in registry:
            return registry[name]
        owners = self.conflicts.get((kind, name))
        if owners:
            raise NameConflictError(self.conflict_message(kind, name))
        if (kind, name) in self.refused:
            raise BrokenPluginError(f"{kind} {name!r} is not available: {self.refused[(kind, name)]}")
        broken = self.broken_plugins()
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

    def conflict_message(self, kind: str, name: str) -> str:
        owners = self.conflicts[(kind, name)]
        distinct = list(dict.fromkeys(owners))
        who = f"{' and '.join(distinct)}" if len(distinct) > 1 else f"{distinct[0]}, twice"
        note = self.conflict_notes.get((kind, name))
        return (f"{kind} {name!r} is provided by more than one plugin: {who}"
                + (f" ({note})" if note else "")
                + f"; uninstall one, or disable it with GRPO_HOST_DISABLE_PLUGINS={distinct[-1]}")

    def broken_plugins(self) -> list[PluginRecord]:
        """The plugins that failed to load (their ``error`` says why)."""
        return [p for p in self.plugins if p.status == "broken"]


def _with_plugin(spec: Any, record: PluginRecord) -> Any:
    from dataclasses import replace

    return replace(spec, plugin=record.name, plugin_version=record.version)


def _same_target(a: Any, b: Any) -> bool:
    target = getattr(a, "target", a)
    return target is getattr(b, "target", b)


def _target_path(value: Any) -> str:
    target = getattr(value, "target", value)
    name = getattr(target, "__qualname__", type(target).__qualname__)
    return f"{getattr(target, '__module__', '?')}:{name}"


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


# -- the child probe of plugin_guard (here: it loads plugins as this module's PluginManager does)
def child_main(job: dict[str, Any]) -> None:
    """In ``plugin_guard``'s child probe: import each entry point and call its hooks, reporting progress on a pipe."""
    out = os.fdopen(int(job["fd"]), "w", buffering=1)
    manager = PluginManager(load_entry_points=False, environ={})
    for index, item in enumerate(job["items"]):
        out.write(f"begin {index} import\n")
        start = time.perf_counter()
        try:
            obj = metadata.EntryPoint(item["name"], item["value"], "grpo_host").load()
        except BaseException:  # noqa: BLE001 - an ordinary failure: safe to retry in process
            out.write(f"end {index} {time.perf_counter() - start:.6f}\n")
            continue
        out.write(f"begin {index} hooks\n")
        with contextlib.suppress(BaseException):
            manager._register(obj, PluginRecord(item["label"], "?", item["value"]))
        out.write(f"end {index} {time.perf_counter() - start:.6f}\n")
    out.close()
    os._exit(0)  # skip interpreter teardown: plugin atexit handlers and threads are not ours to run


def get_plugin_manager(refresh: bool = False, recheck: bool = False) -> PluginManager:
    """The process-wide plugin manager, loaded on first use (``recheck``: see PluginManager)."""
    global _MANAGER
    if _MANAGER is None or refresh or recheck:
        _MANAGER = PluginManager(recheck=recheck)
    return _MANAGER
