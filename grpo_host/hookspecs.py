"""Hook specifications: everything a grpo-host plugin can provide.

A plugin is a module (or object) named by an entry point in the ``grpo_host`` group. It
implements any of the hooks below, marked with ``@grpo_host.hookimpl``. Every hook is called
once per plugin by the host's :class:`~grpo_host.plugins.manager.PluginManager`, which isolates
failures: a hook that raises, or returns something of the wrong shape, marks its plugin as
broken instead of taking the tool down.

Hook modules must stay cheap to import: no torch, transformers or trl at import time. Heavy
imports belong inside the reward or backend, where they run when it is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from grpo_host._markers import hookspec

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Sequence

    from grpo_host.backends import BackendSpec
    from grpo_host.datasets import DatasetSpec
    from grpo_host.rewards.spec import RewardSpec

# -------------------------------------------------------------------------
# Rewards
# -------------------------------------------------------------------------


@hookspec
def grpo_rewards() -> Sequence[RewardSpec | object] | None:
    """Return the rewards this plugin provides.

    Each item is a function or class decorated with ``@grpo_host.reward(...)`` (or its
    :class:`~grpo_host.rewards.spec.RewardSpec`). Names must be unique across all installed
    plugins; two plugins claiming one name is an error that names both.

    A plugin module that implements no ``grpo_rewards`` hook still provides every decorated
    reward found at its top level, so the smallest plugin is one decorated function.

    Return an empty sequence (or ``None``) to provide nothing.

    Added in 0.1.
    """


# -------------------------------------------------------------------------
# Data sources
# -------------------------------------------------------------------------


@hookspec
def grpo_datasets() -> Sequence[DatasetSpec] | None:
    """Return the data sources this plugin provides.

    A data source yields training rows: dicts with a ``prompt`` and the reference columns its
    rewards read (``answer``, ...), generated procedurally or read from files, shaped by
    declared params (size, seed, difficulty, ...). See :class:`~grpo_host.datasets.DatasetSpec`.
    A run config names one as ``data.source`` (with ``data.params``); ``grpo-host datasets``
    lists them and ``grpo-host try-reward --dataset NAME`` scores against their rows.

    Names must be unique across all installed plugins and the host's built-in ``arithmetic``;
    two plugins claiming one name is an error that names both. Keep the hook cheap: it runs
    for every ``grpo-host`` command, so describe the sources here and import the generator
    inside ``rows``.

    Return an empty sequence (or ``None``) to provide nothing.

    Added in 0.1.
    """


# -------------------------------------------------------------------------
# Training backends
# -------------------------------------------------------------------------


@hookspec
def grpo_backends() -> Sequence[BackendSpec] | None:
    """Return the training backends this plugin provides.

    A backend turns a resolved run into the command that launches the shared training worker
    (``python -m grpo_host.training.worker``) on the machine's devices, for example through
    ``accelerate launch`` or ``torchrun``. See :class:`~grpo_host.backends.BackendSpec`: its
    ``build_command(worker_argv, params, env, context)`` gets the run config and the cluster
    the scheduler describes in a :class:`~grpo_host.backends.LaunchContext`.

    Return an empty sequence (or ``None``) to provide nothing.

    Added in 0.1; ``context`` came later (a three-argument ``build_command`` still works).
    """


# -------------------------------------------------------------------------
# Run lifecycle
# -------------------------------------------------------------------------


@hookspec
def grpo_trackers() -> Sequence[object] | None:
    """Return experiment trackers (MLflow and the like) this plugin provides.

    A tracker is an object with ``name`` (what a run config's ``tracking:`` list names) and
    three methods, called through :class:`grpo_host.tracking.TrackerSet` on the main process
    only, in this order:

    - ``start(run_info)``: open a run. ``run_info`` is a mapping: ``output_dir`` (str),
      ``run_name`` (str), ``config`` (the resolved run config as JSON-able dicts),
      ``tracking_params`` (``{tracker name: its settings}``, from the config's
      ``tracking_params``), ``rewards`` (each reward's provenance: name, plugin, version,
      import_path, params, params_hash, timeout, weight), ``resumed_from`` (the checkpoint
      the run goes on from, or None), ``world_size`` and ``model`` (id, dtype, attention,
      quantized). Raise with a message the user can act on when the tracker cannot start
      (bad URI, missing package): the run stops before training.
    - ``log_metrics(step, metrics)``: one logged step's metrics, the same flat dict that goes
      into ``metrics.jsonl`` (non-numeric values included; skip what you cannot log).
    - ``finish(output_dir, status="FINISHED")``: the run is over (``status`` FINISHED, FAILED
      or KILLED); the output dir holds the report, the resolved config and the model. An
      exception in ``log_metrics`` or ``finish`` is logged and turns the tracker off; the run
      goes on.

    ``grpo_host.tracking.flatten`` turns ``run_info["config"]`` into the dotted keys ``--set``
    takes. Keep the import of the tracking library inside these methods. The object may be reused
    for a later run in the same process: ``start`` resets it.

    Return an empty sequence (or ``None``) to provide nothing.

    Added in 0.1.
    """
