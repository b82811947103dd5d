"""What the trainer is built from: the data (opened and checked before the model, so a bad
file costs seconds), the model and tokenizer, what the backend adds in this process, and the
``GRPOConfig``.

The data sets come from ``training/data.py``, the model from ``training/model.py``; this stage
orders them (the main process first: it builds the tiny built-in model and caches the data
once, the others read them) and turns the run config into TRL's arguments.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from grpo_host.config import ConfigError, RunConfig, check_grpo_fields
from grpo_host.training.process import Process, cuda

if TYPE_CHECKING:  # pragma: no cover
    from grpo_host.backends import WorkerSetup
    from grpo_host.plugins.manager import PluginManager
    from grpo_host.training.model import BuiltModel


@dataclass(frozen=True)
class Inputs:
    built: BuiltModel
    train_ds: Any
    eval_ds: Any | None
    precision: str  # no | bf16 | fp16, resolved
    backend: WorkerSetup
    args: Any  # trl.GRPOConfig


def build_inputs(
    config: RunConfig, process: Process, manager: PluginManager, reward_weights: list[float]
) -> Inputs:
    from grpo_host.training.callbacks import emit_progress
    from grpo_host.training.data import load_raw_datasets, shape_datasets
    from grpo_host.training.model import build_model, resolve_precision

    with process.main_first():  # opened and checked before the model is built
        raw_data = load_raw_datasets(config.data)
    emit_progress("phase", text="building the model")
    with process.main_first():  # the built-in model is built once, then read by all
        built = build_model(config, process.state.local_process_index if cuda() else None)
        train_ds, eval_ds = shape_datasets(*raw_data, config.data, built.tokenizer)
    precision = resolve_precision(config.precision)
    backend = backend_setup(config, manager, built.model)
    args = grpo_args(config, precision, reward_weights, eval_ds is not None, backend.trainer_args)
    return Inputs(built, train_ds, eval_ds, precision, backend, args)


def backend_setup(config: RunConfig, manager: PluginManager, model: Any) -> WorkerSetup:
    """What the run's backend applies inside this process (BackendSpec.prepare_worker)."""
    from grpo_host.backends import WorkerSetup

    spec = manager.backends.get(config.backend.name)
    if spec is None or spec.prepare_worker is None:
        return WorkerSetup()
    return spec.prepare_worker(spec.check_params(dict(config.backend.params)), model, config)


def grpo_args(
    config: RunConfig,
    precision: str,
    reward_weights: list[float],
    has_eval: bool,
    backend_args: dict[str, Any] | None = None,
) -> Any:
    """The run config as a ``trl.GRPOConfig``: the user's ``grpo:`` fields over the host's
    defaults, then the fields the host owns, then the backend's own (FSDP settings)."""
    from trl import GRPOConfig

    fields = {f.name: f for f in dataclasses.fields(GRPOConfig)}
    check_grpo_fields(config.grpo, frozenset(fields))
    values: dict[str, Any] = {
        # Defaults a user may override under `grpo:`.
        "logging_steps": 1,
        "report_to": "none",
        "disable_tqdm": True,
        "save_strategy": "steps",
        "save_only_model": False,
    }
    values.update({key: _coerce(fields[key], value) for key, value in config.grpo.items()})
    values.update(
        output_dir=config.checkpoint_dir,
        seed=config.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        gradient_checkpointing=config.gradient_checkpointing,
        save_steps=config.checkpointing.steps,
        save_total_limit=config.checkpointing.keep,
        reward_weights=reward_weights,
        eval_strategy="steps" if (config.eval.enabled and has_eval) else "no",
        push_to_hub=False,  # the finished model is pushed once, at the end (output.push_to_hub)
    )
    if config.eval.enabled and has_eval:
        values["eval_steps"] = config.eval.steps
    if config.model.trust_remote_code:
        values["trust_remote_code"] = True
    if not cuda():
        values["use_cpu"] = True
    values.update(backend_args or {})  # the backend's own fields (FSDP settings), last
    try:
        return GRPOConfig(**values)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"grpo: TRL refused the settings: {exc}")


def _coerce(field: dataclasses.Field[Any], value: Any) -> Any:
    """`--set grpo.learning_rate=1e-5` arrives as the string '1e-5' (YAML 1.1 wants a dot)."""
    if not isinstance(value, str):
        return value
    kind = str(field.type)
    for caster, name in ((int, "int"), (float, "float")):
        if name in kind:
            try:
                return caster(value)
            except ValueError:
                continue
    return value
