"""The host side of `grpo-host train`: check a run, hand it to a backend, run what it returns.

The plumbing is the same for every backend: check up front that every reward, the backend
and the trackers are installed and loadable (a broken plugin is named with its error before
anything starts), write the resolved config into the output dir, ask the backend for the
argv that launches ``python -m grpo_host.training.worker --config <that file>``, run it,
stream its output (drawing a progress bar from the worker's progress lines) and return its
exit code. A backend sees the run through its ``build_command`` arguments: its params, and a
``LaunchContext`` (the resolved config, its path, the cluster the scheduler describes).
``GRPO_HOST_RUN_CONFIG`` and ``GRPO_HOST_PRECISION`` stay in the workers' environment.
Nothing here imports torch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grpo_host.backends import LaunchContext
from grpo_host.config import RunConfig, check_grpo_fields
from grpo_host.errors import BrokenPluginError, GrpoHostError
from grpo_host.training.cluster import scheduler_cluster

if TYPE_CHECKING:  # pragma: no cover
    from grpo_host.plugins.manager import PluginManager

RESOLVED_CONFIG = "run_config.yaml"


@dataclass
class PreparedRun:
    config: RunConfig
    backend: Any  # BackendSpec
    backend_params: dict[str, Any]
    config_path: Path
    argv: list[str]
    env: dict[str, str]


def check_run(config: RunConfig, manager: PluginManager | None = None) -> tuple[Any, dict[str, Any]]:
    """Every reward, the backend and the trackers, looked up and checked before any launch.

    Returns the backend and its resolved params; raises one error listing every problem.
    """
    from grpo_host.plugins.manager import get_plugin_manager
    from grpo_host.rewards.trl_adapter import resolve_reward_item

    manager = manager or get_plugin_manager()
    problems: list[str] = []
    broken: list[str] = []
    for entry in config.rewards:
        try:
            resolve_reward_item(entry.to_item(), manager)
        except BrokenPluginError as exc:
            broken.append(str(exc))
        except GrpoHostError as exc:
            problems.append(f"rewards: {exc}")
    backend, params = None, {}
    try:
        backend = manager.get_backend(config.backend.name)
        params = backend.check_params(dict(config.backend.params))
    except BrokenPluginError as exc:
        broken.append(str(exc))
    except GrpoHostError as exc:
        problems.append(f"backend: {exc}")
    for name in config.tracking:
        try:
            manager.get_tracker(name)
        except BrokenPluginError as exc:
            broken.append(str(exc))
        except GrpoHostError as exc:
            problems.append(f"tracking: {exc}")
    problems += _check_data_source(config, manager)
    from grpo_host.training.data import check_local_data

    problems += check_local_data(config.data)
    try:
        check_grpo_fields(config.grpo)
    except GrpoHostError as exc:
        problems.append(str(exc))
    if broken:
        raise BrokenPluginError(
            "cannot train: a needed plugin is broken.\n  " + "\n  ".join(broken + problems)
        )
    if problems:
        raise GrpoHostError("cannot train:\n  " + "\n  ".join(problems))
    return backend, params


def _check_data_source(config: RunConfig, manager: PluginManager) -> list[str]:
    """A misspelled data source would surface only after the model is built, as a failed Hugging
    Face download; caught here with a did-you-mean when it is close to one, or has params."""
    from grpo_host.errors import did_you_mean

    source = config.data.source
    if source in manager.datasets:  # its params checked now, not after the model is built
        try:
            manager.get_dataset(source).resolve_params(config.data.params)
        except GrpoHostError as exc:
            return [f"data.params: {exc}"]
        return []
    if source.startswith("builtin:") or Path(source).expanduser().exists():
        return []
    close = did_you_mean(source, manager.datasets)
    if close or config.data.params:
        return [f"data.source: no data source {source!r}{close}; `grpo-host datasets` lists them"
                + ("" if close else " (data.params is only for a data source)")]
    return []


def prepare(config: RunConfig, manager: PluginManager | None = None, *, write: bool = True) -> PreparedRun:
    backend, params = check_run(config, manager)
    output_dir = Path(config.output.dir)
    config_path = output_dir / RESOLVED_CONFIG
    if write:
        output_dir.mkdir(parents=True, exist_ok=True)
        config_path = _write_resolved(config, config_path)
    worker_argv = [sys.executable, "-m", "grpo_host.training.worker", "--config", str(config_path)]
    env = dict(os.environ)
    env.update(
        GRPO_HOST_RUN_CONFIG=str(config_path),
        GRPO_HOST_PRECISION=config.precision,
        GRPO_HOST_PROGRESS="1",
        GRPO_HOST_DIE_WITH_PARENT="1",
        PYTHONUNBUFFERED="1",
    )
    cluster, cluster_source = scheduler_cluster(env)
    context = LaunchContext(config, str(config_path), cluster, cluster_source)
    try:
        argv = [str(a) for a in backend.command(worker_argv, params, env, context)]
    except GrpoHostError:
        raise
    except Exception as exc:  # noqa: BLE001 - a backend bug, reported as such
        raise GrpoHostError(f"backend {backend.name!r} ({backend.plugin}) failed to build its command: "
                            f"{type(exc).__name__}: {exc}")
    return PreparedRun(config, backend, params, config_path, argv, env)


def _write_resolved(config: RunConfig, path: Path) -> Path:
    """The run's copy of its config, redacted; when that hides a secret value the config holds
    (a token inside a tracking URI), the worker reads the real one from a private temp file."""
    from grpo_host.observability.redact import redact

    text = config.to_yaml()
    shown = redact(text)
    path.write_text(shown, encoding="utf-8")
    if shown == text:
        return path
    import atexit
    import shutil
    import tempfile

    private = Path(tempfile.mkdtemp(prefix="grpo-host-config-"))  # mode 0700
    atexit.register(shutil.rmtree, private, True)
    (private / path.name).write_text(text, encoding="utf-8")
    return private / path.name


# -- running -------------------------------------------------------------------------------------
def _die_with_parent() -> None:
    """Children of a host killed hard (kill -9) must not train on as orphans."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux
        pass


def run_prepared(
    prepared: PreparedRun,
    on_event: Callable[[dict[str, Any]], None],
    on_line: Callable[[str], None],
) -> int:
    """Run the backend's command, hand progress events and other output lines to the
    callbacks, and return its exit code. Ctrl-C reaches the worker (same process group); a
    second one kills it."""
    from grpo_host.observability.redact import current
    from grpo_host.training.callbacks import PROGRESS_PREFIX

    proc = subprocess.Popen(
        prepared.argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=prepared.env,
        text=True,
        errors="replace",
        bufsize=1,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,  # noqa: PLW1509
    )
    interrupted = 0
    try:
        assert proc.stdout is not None
        while True:
            try:
                line = proc.stdout.readline()
            except KeyboardInterrupt:
                interrupted += 1
                if interrupted > 1:
                    proc.kill()
                continue
            if not line:
                break
            redactor = current()  # the worker's output goes nowhere unredacted
            line = redactor.text(line.rstrip("\n"))
            if line.startswith(PROGRESS_PREFIX):
                try:
                    on_event(redactor.value(json.loads(line[len(PROGRESS_PREFIX) :])))
                except ValueError:
                    on_line(line)
            else:
                on_line(line)
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:
                proc.kill()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class ProgressView:
    """A rich progress bar: step, total and per-reward reward, step time, time left."""

    def __init__(self, console: Any, reward_names: list[str]):
        self.console = console
        self.reward_names = reward_names
        self.live = console.is_terminal
        self.progress = None
        self.task = None
        self.last_event: dict[str, Any] = {}
        self.end: dict[str, Any] | None = None
        self._last_plain = 0.0

    def __enter__(self) -> ProgressView:
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(bar_width=28),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rewards]}"),
                TextColumn("[dim]{task.fields[speed]}"),
                TextColumn("left"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self.progress.__enter__()
            self.task = self.progress.add_task("starting", total=None, rewards="", speed="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.__exit__(None, None, None)

    def line(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False)
        else:
            print(text, flush=True)

    def event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "end":
            self.end = event
            if self.progress is not None:
                self.progress.update(self.task, description="done")
            return
        if kind == "phase":
            if self.progress is not None:
                self.progress.update(self.task, description=event.get("text", ""))
            else:
                print(f"[grpo-host] {event.get('text', '')}", flush=True)
            return
        if kind == "start":
            self.reward_names = event.get("rewards") or self.reward_names
            if self.progress is not None:
                self.progress.reset(self.task, total=event.get("max_steps"), completed=event.get("step", 0),
                                    description="training")
            return
        if kind != "log":
            return
        self.last_event = event
        rewards = "  ".join(f"{n} {_f(v)}" for n, v in (event.get("rewards") or {}).items())
        bad = {n: c for n, c in (event.get("bad") or {}).items() if c}
        text = f"reward {_f(event.get('reward'))} | {rewards}"
        if bad:
            text += " | [red]errors/timeouts " + ", ".join(f"{n} {c}" for n, c in bad.items()) + "[/red]"
        speed = f"{_f(event.get('step_time'), 2)} s/step"
        if self.progress is not None:
            self.progress.update(self.task, completed=event.get("step"), total=event.get("max_steps"),
                                 rewards=text, speed=speed, description="training")
        else:
            now = time.monotonic()
            step, total = event.get("step"), event.get("max_steps")
            if now - self._last_plain >= 5 or step == total:
                self._last_plain = now
                print(f"step {step}/{total}  {text.replace('[red]', '').replace('[/red]', '')}  {speed}", flush=True)


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return str(value)


def closing_message(output_dir: Path, end: dict[str, Any] | None) -> list[str]:
    """Where the model and report are and how much the reward rose."""
    summary = end
    if not summary:
        try:
            summary = json.loads((output_dir / "run.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            summary = {}
    lines = [f"model:   {summary.get('model_dir', output_dir)}"]
    report = (summary.get("report") or {}).get("html")
    if report:
        lines.append(f"report:  {report}")
        if (summary.get("report") or {}).get("png"):
            lines.append(f"curves:  {summary['report']['png']}")
    lines.append(f"metrics: {output_dir / 'metrics.jsonl'}")
    rise = summary.get("reward_rise")
    if rise:
        sign = "rose" if rise["rise"] > 0 else "fell" if rise["rise"] < 0 else "stayed"
        lines.append(
            f"reward {sign} from {rise['first_fifth']:.3f} to {rise['last_fifth']:.3f} "
            f"({rise['rise']:+.3f}), mean of the first vs the last fifth of {rise['logged_steps']} logged steps"
        )
    return lines + before_after_lines(output_dir, summary.get("rewards") or [])


def before_after_lines(output_dir: Path, names: list[str]) -> list[str]:
    """Each reward's first-fifth and last-fifth means, and one probed prompt before and after."""
    from grpo_host.observability.report import before_after, read_jsonl, reward_rises

    lines = []
    rises = reward_rises(read_jsonl(output_dir / "metrics.jsonl"), names)
    if rises:
        width = max(len(n) for n in rises)
        lines.append(f"  {'':{width}}  first fifth -> last fifth")
        lines += [f"  {name:{width}}  {r['first_fifth']:11.3f} -> {r['last_fifth']:.3f}  ({r['rise']:+.3f})"
                  for name, r in rises.items() if name != "reward"]
    pairs = [(b, a) for b, a in before_after(read_jsonl(output_dir / "comparison.jsonl")) if a is not None]
    if pairs:
        # The probe whose total reward rose most: the one that shows what GRPO taught.
        before, after = max(pairs, key=lambda p: (p[1].get("reward") or 0) - (p[0].get("reward") or 0))
        prompt = str(before.get("prompt", "")).splitlines()[-1] if before.get("prompt") else ""
        gold = f" (answer {before['answer']})" if "answer" in before else ""
        lines.append(f"one prompt, greedy, before and after GRPO: {prompt}{gold}")
        for label, row in (("before", before), ("after", after)):
            scores = ", ".join(f"{n} {_f((r or {}).get('score'), 2)}" for n, r in (row.get("rewards") or {}).items())
            lines.append(f"  {label:6} step {row.get('step')}: {row.get('completion', '')!r}  [{scores}]")
    return lines
