"""The experiment trackers of a run (MLflow and the like), called as one.

The run config names trackers (``tracking: [mlflow]``); plugins provide them through the
``grpo_trackers`` hook. :class:`TrackerSet` looks the names up, starts every tracker (a
tracker that cannot start, say a bad URI, stops the run before training begins), then fans
out each step's metrics and the end of the run. A tracker that fails mid-run is logged once
and dropped: losing a dashboard must not lose the training run, whose metrics stay in
``metrics.jsonl`` whatever happens. Only the main process builds a set.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from grpo_host.plugins.manager import PluginManager

log = logging.getLogger(__name__)

class TrackerSet:
    def __init__(self, trackers: Iterable[Any] = ()):
        self.trackers = list(trackers)
        self._started: list[Any] = []

    @classmethod
    def from_names(cls, names: Iterable[str], manager: PluginManager | None = None) -> TrackerSet:
        """Trackers by name; an unknown name is an error listing the installed ones."""
        if manager is None:
            from grpo_host.plugins.manager import get_plugin_manager

            manager = get_plugin_manager()
        return cls(manager.get_tracker(name) for name in names)

    def __bool__(self) -> bool:
        return bool(self.trackers)

    @property
    def names(self) -> list[str]:
        return [_name(t) for t in self.trackers]

    def start(self, run_info: Mapping[str, Any]) -> None:
        from grpo_host.observability.redact import redact_settings

        run_info = redact_settings(run_info)  # params and tags leave the run: no secrets in them
        for tracker in self.trackers:
            tracker.start(run_info)  # errors here are configuration errors: let them stop the run
            self._started.append(tracker)

    def log_metrics(self, step: int, metrics: Mapping[str, Any]) -> None:
        from grpo_host.observability.redact import redact

        metrics = redact(metrics)
        for tracker in list(self._started):
            try:
                tracker.log_metrics(step, metrics)
            except Exception as exc:  # noqa: BLE001 - a tracker must not take training down
                self._drop(tracker, "log_metrics", exc)

    def finish(self, output_dir: str, status: str = "FINISHED") -> None:
        """End every started tracker; ``status`` is FINISHED, FAILED or KILLED."""
        for tracker in list(self._started):
            try:
                if "status" in inspect.signature(tracker.finish).parameters:
                    tracker.finish(output_dir, status=status)
                else:
                    tracker.finish(output_dir)
            except Exception as exc:  # noqa: BLE001
                self._drop(tracker, "finish", exc)
        self._started = []

    def _drop(self, tracker: Any, what: str, exc: BaseException) -> None:
        log.warning(
            "tracker %r failed in %s (%s: %s); it is off for the rest of this run "
            "(metrics.jsonl in the output dir still has everything)",
            _name(tracker), what, type(exc).__name__, exc,
        )
        self._started.remove(tracker)


def _name(tracker: Any) -> str:
    return getattr(tracker, "name", type(tracker).__name__)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": [1, 2]}`` -> ``{"a.b": 1, "c": [1, 2]}``: dotted keys, the
    same keys ``--set`` takes; lists stay whole."""
    out: dict[str, Any] = {}
    if isinstance(value, Mapping):
        if not value and prefix:
            out[prefix] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    else:
        out[prefix] = value
    return out
