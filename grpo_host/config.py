"""The run config: one YAML file, validated by pydantic, with ``--set KEY=VALUE`` overrides.

A run is described by sections (model, data, rewards, grpo, peft, quantization, precision,
checkpointing, eval, output, backend, ...). Every section rejects unknown keys with a
did-you-mean, the free-form ones too (``model.builtin`` against Qwen2Config's fields,
``data.builtin``, ``launch``, ``tracking_params``). ``grpo`` passes through to TRL's
``GRPOConfig`` and is checked when the config is loaded against its fields' names, types,
choices and ranges, read from a schema shipped with the host (``grpo_host.trl_schema``), so
that loading, ``--print-config`` and ``--schema`` never import torch, transformers or trl.

A config error names the field, the bad value and what is allowed::

    config error in run.yaml: precision: 'bf32' is not allowed; allowed: 'auto', 'no', 'bf16', 'fp16'
"""

from __future__ import annotations

import ast
import copy
import difflib
import importlib.util
import re
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from grpo_host.errors import GrpoHostError, did_you_mean
from grpo_host.rewards.item import HOST_PARAMS, RewardItem, host_param_fields

DEFAULT_CONFIG = Path(__file__).parent / "training" / "default.yaml"
BUILTIN_MODEL = "builtin:tiny-qwen2"
BUILTIN_DATA = "builtin:arithmetic"

# GRPOConfig fields that a section of the run config owns; setting them under `grpo` would
# leave two sources of truth, so the error points at the section instead.
HOST_OWNED_GRPO_FIELDS = {
    "output_dir": "output.dir / checkpointing.dir",
    "reward_weights": "rewards[].weight",
    "bf16": "precision",
    "fp16": "precision",
    "gradient_checkpointing": "gradient_checkpointing",
    "save_steps": "checkpointing.steps",
    "save_total_limit": "checkpointing.keep",
    "resume_from_checkpoint": "checkpointing.resume",
    "eval_strategy": "eval.enabled",
    "eval_steps": "eval.steps",
    "push_to_hub": "output.push_to_hub",
    "hub_model_id": "output.hub_model_id",
    "seed": "seed",
    "model_init_kwargs": "model",
    "trust_remote_code": "model.trust_remote_code",
}

# GRPOConfig fields that choose how TRL generates: generation.speed steps aside for them.
GENERATION_OWNERS = ("use_vllm", "cache_implementation", "use_transformers_paged")

# GRPOConfig fields that hold a secret, and the variable their library reads it from instead.
SECRET_GRPO_FIELDS = {"hub_token": "HF_TOKEN"}

_EXPONENT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


class ConfigError(GrpoHostError, ValueError):
    """The run config is invalid; the message names the field, the value and what is allowed."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSection(_Section):
    """The policy model."""

    id: str = Field(BUILTIN_MODEL, description="A Hugging Face model id, a local path, or builtin:tiny-qwen2 "
                    "(a tiny Qwen2 built from a config with a locally trained tokenizer; nothing downloaded).")
    tokenizer: str | None = Field(None, description="Tokenizer id or path when it differs from the model's.")
    revision: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype: auto = bfloat16 on a GPU that supports it, else float32.")
    attn_implementation: Literal["auto", "sdpa", "flash_attention_2", "eager"] = Field(
        "auto", description="auto = flash_attention_2 when flash_attn imports, else sdpa.")
    trust_remote_code: bool = False
    builtin: dict[str, Any] = Field(default_factory=dict, description="For builtin:tiny-qwen2: Qwen2Config "
                                    "fields (hidden_size, num_hidden_layers, ...) and tokenizer_vocab_size.")

    @field_validator("id")
    @classmethod
    def _builtin_id(cls, value: str) -> str:
        if value.startswith("builtin:") and value != BUILTIN_MODEL:
            raise ValueError(f"not a built-in model; the built-in one is {BUILTIN_MODEL}, or give a Hugging Face "
                             "model id or a local folder")
        return value

    @field_validator("builtin", mode="before")
    @classmethod
    def _builtin_null(cls, value: Any) -> Any:
        return {} if value is None else value  # `--set model.builtin=null` drops the default's fields

    @model_validator(mode="after")
    def _builtin_only_for_the_builtin_model(self) -> ModelSection:
        if self.builtin and self.id != BUILTIN_MODEL:
            raise ValueError(f"model.builtin is only for model.id {BUILTIN_MODEL}, and model.id is {self.id!r}: "
                             "remove model.builtin (over the embedded default: --set model.builtin=null)")
        return self


class DataSection(_Section):
    """The prompts: a local file, a Hugging Face dataset, or the built-in arithmetic set."""

    source: str = Field(BUILTIN_DATA, description="A .json/.jsonl/.parquet file, a Hugging Face dataset "
                        "name, builtin:arithmetic (generated), or a data source that a plugin provides "
                        "(`grpo-host datasets` lists them).")
    subset: str | None = Field(None, description="The Hugging Face dataset's config name.")
    split: str = "train"
    builtin: dict[str, Any] = Field(default_factory=dict, description="For builtin:arithmetic: n, seed, "
                                    "max_operand, operations.")
    params: dict[str, Any] = Field(default_factory=dict, description="For a data source: its params "
                                   "(size, seed, difficulty, ...; `grpo-host datasets` lists them).")
    prompt_column: str = "prompt"
    template: str | None = Field(None, description="A Python format string over the row's columns, e.g. "
                                 "'Solve: {question}'; replaces prompt_column.")
    system_prompt: str | None = None
    chat_template: Literal["auto", True, False] = Field(
        "auto", description="Send prompts as chat messages; auto = when the tokenizer has a chat template.")
    eval_split: float | int | str | None = Field(
        None, description="Held-out eval data: a fraction (0.05), a row count (200), or a split name.")
    max_samples: int | None = Field(None, ge=1)
    shuffle_seed: int | None = 0

    @field_validator("source")
    @classmethod
    def _builtin_source(cls, value: str) -> str:
        if value.startswith("builtin:") and value != BUILTIN_DATA:
            raise ValueError(f"not a built-in data set; the built-in one is {BUILTIN_DATA}, or give a file, a "
                             "dataset name or a data source (`grpo-host datasets` lists them)")
        return value

    @field_validator("template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        return value if value is None else _format_string(value, "'Solve: {question}'")

    @field_validator("eval_split")
    @classmethod
    def _eval_split(cls, value: Any) -> Any:
        if isinstance(value, float) and not 0.0 < value < 1.0:
            raise ValueError("a fraction must be between 0 and 1")
        if isinstance(value, int) and not isinstance(value, bool) and value < 1:
            raise ValueError("a row count must be at least 1")
        return value


class _RewardEntry(_Section):
    """One reward of the run. A plain string in the list means ``{name: ...}``."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    alias: str | None = Field(None, description="The name its metrics are logged under (to use a reward twice).")

    @property
    def key(self) -> str:
        return self.alias or self.name

    def to_item(self) -> RewardItem:
        """The typed reward item the runtime binds (grpo_host.rewards.binding.bind_reward)."""
        host = {name: getattr(self, name) for name in HOST_PARAMS}
        return RewardItem.from_params(self.name, self.params, self.alias or "", **host)


# The host params (timeout, weight, memory_mb, concurrency) are RewardItem's fields, each with
# its rule; the entry takes its fields, and their checks, from there.
if TYPE_CHECKING:
    RewardEntry = _RewardEntry
else:
    RewardEntry = create_model("RewardEntry", __base__=_RewardEntry, __module__=__name__,
                               __doc__=_RewardEntry.__doc__, **host_param_fields())


class PeftSection(_Section):
    """LoRA through PEFT."""

    enabled: bool = False
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: str | list[str] = Field("all-linear", description="'all-linear' or module names.")
    bias: Literal["none", "all", "lora_only"] = "none"
    modules_to_save: list[str] | None = None


class QuantizationSection(_Section):
    """4-bit loading through bitsandbytes (QLoRA); needs a CUDA GPU and `pip install grpo-host[quant]`."""

    load_in_4bit: bool = False
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"


class CheckpointingSection(_Section):
    dir: str | None = Field(None, description="Default: <output.dir>/checkpoints.")
    steps: int = Field(50, ge=1, description="Save a checkpoint every this many steps.")
    keep: int | None = Field(2, ge=1, description="How many checkpoints to keep (null: all).")
    resume: bool | str = Field(True, description="true: resume from the last checkpoint when one exists; "
                               "false: start over; a path: resume from that checkpoint.")


class EvalSection(_Section):
    enabled: bool = False
    steps: int = Field(50, ge=1, description="Evaluate every this many steps (needs data.eval_split).")


class OutputSection(_Section):
    dir: str | None = Field(None, description="Default: ./grpo-runs/<config name>.")
    save_model: bool = True
    merge_lora: bool = Field(True, description="Save the LoRA merged into the base model (the adapter is "
                             "saved too, under adapter/).")
    push_to_hub: bool = False
    hub_model_id: str | None = None
    hub_private: bool = True
    report: bool = Field(True, description="Write report.html and reward_curves.png at the end.")
    samples_per_log: int = Field(4, ge=0, description="Sample completions kept per logged step (samples.jsonl).")

    @model_validator(mode="after")
    def _hub(self) -> OutputSection:
        if self.push_to_hub and not self.hub_model_id:
            raise ValueError("push_to_hub needs hub_model_id (e.g. 'me/my-grpo-model')")
        return self


class GenerationSection(_Section):
    """How completions are sampled when TRL generates with transformers (no vLLM)."""

    speed: Literal["auto", "off", "static", "static-compile"] = Field(
        "auto", description="auto = static-compile on a CUDA GPU without FSDP/DeepSpeed (measured 4x TRL's "
        "default on an H200 for full fine-tuning, 8.8x for LoRA, which samples from a merged copy), TRL's "
        "default otherwise; "
        "off = TRL's default (dynamic KV cache, no compile); static = a static KV cache; "
        "static-compile = a static KV cache with transformers' compiled decode step (CUDA). "
        "Sampling only: the loss and log-probs are computed as before. Steps aside when grpo.use_vllm, "
        "grpo.cache_implementation or grpo.use_transformers_paged is set.")

    @field_validator("speed", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        return "off" if value is False else value  # YAML 1.1 reads a bare `off` as false


class WarmupSection(_Section):
    """Supervised steps before GRPO that teach the model the completion's shape (grpo_host/training/warmup.py)."""

    steps: int = Field(0, ge=0, description="Supervised steps on the training prompts before GRPO; 0: none. "
                       "The embedded default uses them: a random tiny model would write random bytes.")
    template: str = Field("<think>{working}</think> <answer>{answer}</answer>", description="The target "
                          "completion: a format string over the row's columns (builtin:arithmetic has "
                          "working and answer).")
    learning_rate: float = Field(3e-3, gt=0)
    batch_size: int = Field(32, ge=1)
    wrong_answers: float = Field(0.0, ge=0, le=1, description="Share of the warm-up's targets whose "
                                 "answer_column is replaced by a wrong answer: the warm-up then teaches the "
                                 "format but leaves the answers partly wrong, and GRPO's accuracy reward has "
                                 "work to do.")
    answer_column: str = Field("answer", description="The column wrong_answers replaces.")
    wrong_column: str | None = Field(None, description="The column that holds a row's wrong answer "
                                     "(builtin:arithmetic: near_miss, the answer plus one); unset: another "
                                     "row's answer.")

    @field_validator("template")
    @classmethod
    def _template(cls, value: str) -> str:
        return _format_string(value, "'<think>{working}</think> <answer>{answer}</answer>'")


class BackendSection(_Section):
    name: str = "accelerate"
    params: dict[str, Any] = Field(default_factory=dict)


class RuntimeSection(_Section):
    """Where the rewards run: this machine's worker pool, or Ray actors across a cluster."""

    executor: Literal["local", "ray"] = Field("local", description="local = worker processes on this "
                                              "machine; ray = Ray actors across a cluster "
                                              "(`pip install 'grpo-host[ray]'`).")
    address: str | None = Field(None, description="ray: the cluster to join, host:port or ray://host:port "
                                "(default: RAY_ADDRESS; with neither, a Ray running on this machine, else a new "
                                "local one).")
    workers: int | None = Field(None, ge=0, description="Reward workers: processes (local; 0 scores in the "
                                "training process) or actors (ray; default: the cluster's CPUs over "
                                "num_cpus_per_worker). Wins over reward_workers.")
    num_cpus_per_worker: float | None = Field(None, gt=0, description="ray: CPUs each actor reserves "
                                              "(default 1; 0.5 puts two on a core).")

    @model_validator(mode="after")
    def _per_executor(self) -> RuntimeSection:
        if self.executor == "local" and self.executor_options():
            raise ValueError(f"{next(iter(self.executor_options()))} applies to executor: ray only; "
                             "set runtime.executor: ray or remove it")
        if self.executor == "ray" and self.workers == 0:
            raise ValueError("workers: 0 (scoring in the training process) is for executor: local; "
                             "with ray give 1 or more actors, or leave it unset")
        return self

    def executor_options(self) -> dict[str, Any]:
        """What ``RewardSet``/``RewardRuntime`` take as ``executor_options``."""
        fields = ("address", "num_cpus_per_worker")
        return {k: getattr(self, k) for k in fields if getattr(self, k) is not None}


class RunConfig(_Section):
    """A grpo-host training run."""

    run_name: str | None = None
    seed: int = 42
    model: ModelSection = Field(default_factory=ModelSection)
    data: DataSection = Field(default_factory=DataSection)
    rewards: list[RewardEntry] = Field(min_length=1)
    grpo: dict[str, Any] = Field(default_factory=dict, description="Any trl.GRPOConfig field (num_generations, "
                                 "max_completion_length, beta, loss_type, scale_rewards, temperature, "
                                 "learning_rate, max_steps, ...); checked against GRPOConfig's fields, types and ranges "
                                 "when the config is loaded.")
    peft: PeftSection = Field(default_factory=PeftSection)
    quantization: QuantizationSection = Field(default_factory=QuantizationSection)
    precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto", description="Mixed precision: auto = bf16 on a GPU that supports it, else no.")
    gradient_checkpointing: bool = False
    generation: GenerationSection = Field(default_factory=GenerationSection)
    warmup: WarmupSection = Field(default_factory=WarmupSection)
    checkpointing: CheckpointingSection = Field(default_factory=CheckpointingSection)
    eval: EvalSection = Field(default_factory=EvalSection)
    output: OutputSection = Field(default_factory=OutputSection)
    backend: BackendSection = Field(default_factory=BackendSection)
    tracking: list[str] = Field(default_factory=list, description="Trackers to enable (from grpo_trackers "
                                "plugins), e.g. [mlflow].")
    tracking_params: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Per tracker settings, "
                                                       "passed in run_info['tracking_params'][name].")
    rewards_error_threshold: float = Field(0.10, ge=0.0, le=1.0, description="Stop the run when a reward's "
                                           "share of errors and timeouts passes this.")
    cpu_threads: int | None = Field(None, ge=1, description="Torch threads per training process on CPU "
                                    "(default: 1 for the built-in tiny model, whose matrices are too small to "
                                    "split, else torch's default). Ignored on GPUs.")
    reward_workers: int | None = Field(None, ge=0, description="Reward worker processes (default: the cores "
                                       "available; 0 scores in the training process).")
    runtime: RuntimeSection = Field(default_factory=RuntimeSection)
    launch: dict[str, Any] = Field(default_factory=dict, description="Options of `grpo-host launch TARGET` "
                                   "(e.g. launch.sagemaker: instance_type, ...); training does not read them.")
    redact_env: list[str] = Field(default_factory=list, description="More environment variables (names or "
                                  "glob patterns) whose values are replaced by *** in everything the run writes "
                                  "or prints; names with TOKEN, SECRET, PASSWORD, KEY or CREDENTIAL always are.")

    @field_validator("rewards", mode="before")
    @classmethod
    def _reward_strings(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("rewards")
    @classmethod
    def _unique_rewards(cls, value: list[RewardEntry]) -> list[RewardEntry]:
        keys = [r.key for r in value]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"{', '.join(dupes)} listed twice; give one an alias to use a reward twice")
        return value

    @field_validator("grpo")
    @classmethod
    def _grpo_owned(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if key in HOST_OWNED_GRPO_FIELDS:
                raise ValueError(f"{key!r} is set through {HOST_OWNED_GRPO_FIELDS[key]}, not grpo.{key}")
        # YAML 1.1 (PyYAML) reads `1e-5` as a string; every GRPOConfig field written so means a number.
        value = {k: float(v) if isinstance(v, str) and _EXPONENT.match(v.strip()) else v for k, v in value.items()}
        return grpo_values(value)[0]  # as GRPOConfig takes them; what is wrong is told by free_form_problems

    @model_validator(mode="after")
    def _cross(self) -> RunConfig:
        """Rules across sections, all told at once: refused here, before anything launches,
        rather than in the worker after the model is built."""
        problems: list[str] = []
        if self.quantization.load_in_4bit and not self.peft.enabled:
            problems.append("quantization.load_in_4bit trains through LoRA: set peft.enabled: true (QLoRA)")
        if self.quantization.load_in_4bit and self.warmup.steps:
            problems.append("warmup.steps trains every weight, which a 4-bit model (quantization.load_in_4bit) "
                            "cannot; set warmup.steps: 0")
        owner = next((k for k in GENERATION_OWNERS if self.grpo.get(k)), None)
        if owner and self.generation.speed not in ("auto", "off"):
            problems.append(f"generation.speed={self.generation.speed} and grpo.{owner} both choose how to "
                            f"generate; keep one (generation.speed: auto steps aside for grpo.{owner})")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    # -- derived -----------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> str:
        return self.checkpointing.dir or str(Path(self.output.dir or ".") / "checkpoints")

    def to_yaml(self) -> str:
        return dump_yaml(self.model_dump(mode="json"))


# -- loading -------------------------------------------------------------------------------------
def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of sections (model:, data:, rewards:, ...), "
                          f"not a {type(data).__name__}")
    return data


def load_config(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    output_dir: str | None = None,
    backend: str | None = None,
    base_dir: str | Path | None = None,
) -> RunConfig:
    """Read a run config (the embedded default when ``path`` is None), apply ``--set``
    overrides (a nested dict, see ``grpo_host.overrides.parse_sets``) and the CLI's
    ``--output-dir``/``--backend``, validate, and resolve the output dir to an absolute path."""
    source = str(path) if path is not None else "the embedded default config"
    raw = read_yaml(path if path is not None else DEFAULT_CONFIG)
    if overrides:
        raw = apply_overrides(raw, overrides)
    if output_dir:
        raw.setdefault("output", {})
        if not isinstance(raw["output"], dict):
            raise ConfigError("output must be a mapping (dir:, merge_lora:, ...)")
        raw["output"]["dir"] = output_dir
    if backend:
        raw.setdefault("backend", {})
        if not isinstance(raw["backend"], dict):
            raise ConfigError("backend must be a mapping (name:, params:)")
        raw["backend"]["name"] = backend
    config = validate_config(raw, source)
    base = Path(base_dir) if base_dir else Path.cwd()
    if not config.output.dir:
        stem = "default" if path is None else Path(path).stem
        config.output.dir = str(base / "grpo-runs" / stem)
    config.output.dir = str((base / config.output.dir).resolve())
    if config.checkpointing.dir:
        config.checkpointing.dir = str((base / config.checkpointing.dir).resolve())
    if config.run_name is None:
        config.run_name = Path(config.output.dir).name
    return config


def load_resolved(path: str | Path) -> RunConfig:
    """A config written by the host (paths already absolute): what the worker reads."""
    return validate_config(read_yaml(path), str(path))


def validate_config(raw: Mapping[str, Any], source: str = "the config") -> RunConfig:
    """The config, or one ConfigError listing every problem: the sections' own fields, the
    ``grpo`` pass-through and the free-form mappings (``model.builtin``, ...)."""
    problems = free_form_problems(raw)
    try:
        config = RunConfig.model_validate(dict(raw))
    except ValidationError as exc:
        lines = [line for err in exc.errors(include_url=False) for line in _describe(err, raw).splitlines()]
        raise ConfigError(_problems_text(source, lines + problems)) from None
    if problems:
        raise ConfigError(_problems_text(source, problems))
    return config


def _format_string(template: str, example: str) -> str:
    """A Python format string over a row's columns, or a ValueError that shows one."""
    import string

    try:
        list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"not a format string ({exc}); write the columns in braces, e.g. {example}, "
                         "and a literal brace as {{ or }}") from None
    return template


def _problems_text(source: str, lines: Sequence[str]) -> str:
    head = f"config error in {source}: " if len(lines) == 1 else f"config errors in {source}:\n  "
    return head + "\n  ".join(lines)


def apply_overrides(raw: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``--set`` values. ``rewards.<name>.<field>`` addresses a reward by name or alias."""
    result = copy.deepcopy(dict(raw))
    _merge(result, overrides, "")
    return result


def _merge(target: dict[str, Any], overrides: Mapping[str, Any], prefix: str) -> None:
    for key, value in overrides.items():
        path = f"{prefix}{key}"
        current = target.get(key)
        if key == "rewards" and not prefix and isinstance(value, dict) and isinstance(current, list):
            target[key] = _merge_rewards(current, value)
        elif isinstance(value, dict) and isinstance(current, dict):
            _merge(current, value, f"{path}.")
        elif isinstance(value, dict) and current is not None and not isinstance(current, dict):
            raise ConfigError(f"--set {path}.…: {path} is {current!r}, not a section with fields")
        else:
            target[key] = copy.deepcopy(value)


def _merge_rewards(entries: list[Any], overrides: Mapping[str, Any]) -> list[Any]:
    entries = [{"name": e} if isinstance(e, str) else copy.deepcopy(e) for e in entries]
    by_key = {}
    for entry in entries:
        if isinstance(entry, dict):
            by_key[entry.get("alias") or entry.get("name")] = entry
    for name, value in overrides.items():
        if name not in by_key:
            raise ConfigError(f"--set rewards.{name}.…: the run has no reward {name!r}; its rewards: "
                              f"{', '.join(map(str, by_key)) or '(none)'}{did_you_mean(str(name), map(str, by_key))}")
        if not isinstance(value, dict):
            raise ConfigError(f"--set rewards.{name}=…: set a field of it, e.g. rewards.{name}.weight=2")
        _merge(by_key[name], value, f"rewards.{name}.")
    return entries


# -- error messages ------------------------------------------------------------------------------
def format_validation_error(exc: ValidationError, source: str, raw: Mapping[str, Any]) -> str:
    return _problems_text(source, [_describe(err, raw) for err in exc.errors(include_url=False)])


def _describe(err: Mapping[str, Any], raw: Mapping[str, Any]) -> str:
    loc = [p for p in err.get("loc", ()) if not (isinstance(p, str) and p.startswith("function-"))]
    # pydantic puts the union member or literal tried at the end of loc; keep the field path.
    loc = [p for p in loc if not (isinstance(p, str) and ("[" in p or p in ("str", "int", "float", "bool", "list[str]")))]
    field = _dotted(loc, raw)
    kind = err.get("type", "")
    value = err.get("input")
    if kind == "extra_forbidden":
        parent_model = _model_at(loc[:-1])
        allowed = list(parent_model.model_fields) if parent_model else []
        name = str(loc[-1]) if loc else "?"
        return (f"{field}: unknown field {name!r}; allowed: {', '.join(allowed)}"
                f"{did_you_mean(name, allowed)}")
    if kind == "missing":
        return f"{field}: required field is missing"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"{field}: {value!r} is not allowed; allowed: {expected}"
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if kind == "value_error" and isinstance(value, Mapping):  # a section's own rule: the message says it all
        return msg if not loc else f"{field}: {msg}"
    allowed = _allowed_text(loc)
    return f"{field}: {value!r} is not valid ({msg}){allowed}"


def _dotted(loc: Sequence[Any], raw: Mapping[str, Any]) -> str:
    parts: list[str] = []
    node: Any = raw
    for part in loc:
        if isinstance(part, int) and parts and parts[-1] == "rewards" and isinstance(node, list):
            entry = node[part] if part < len(node) else None
            name = entry if isinstance(entry, str) else (entry or {}).get("name") if isinstance(entry, dict) else None
            parts[-1] = f"rewards[{part}]{f' ({name})' if name else ''}"
            node = entry
            continue
        parts.append(str(part))
        node = node.get(part) if isinstance(node, Mapping) else None
    return ".".join(parts) or "(top level)"


def _model_at(loc: Sequence[Any]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = RunConfig
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None or part not in model.model_fields:
            return None
        annotation = model.model_fields[part].annotation
        args = getattr(annotation, "__args__", ())
        candidates = [annotation, *args]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
    return model


def _allowed_text(loc: Sequence[Any]) -> str:
    """What the field takes, from its annotation and constraints: '; allowed: a number >= 1'."""
    if not loc:
        return ""
    model = _model_at(loc[:-1])
    name = loc[-1]
    if model is None or not isinstance(name, str) or name not in model.model_fields:
        return ""
    info = model.model_fields[name]
    annotation = _type_words(info.annotation)
    bounds = []
    for meta in info.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(meta, attr, None) is not None:
                bounds.append(f"{sign} {getattr(meta, attr)}")
    text = f"; allowed: {annotation}"
    if bounds:
        text += " " + " and ".join(bounds)
    return text


_WORDS = {int: "a whole number", float: "a number", bool: "true or false", str: "text",
          dict: "a mapping", list: "a list"}


def _type_words(annotation: Any) -> str:
    args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
    optional = type(None) in getattr(annotation, "__args__", ())
    if args and getattr(annotation, "__origin__", None) not in (list, dict):
        text = " or ".join(_WORDS.get(a, getattr(a, "__name__", str(a))) for a in args)
    else:
        origin = getattr(annotation, "__origin__", annotation)
        text = _WORDS.get(origin, getattr(annotation, "__name__", str(annotation)))
    return text + (" (or null)" if optional else "")


# -- the grpo passthrough ------------------------------------------------------------------------
@cache
def grpo_field_names() -> frozenset[str] | None:
    """GRPOConfig's fields (with TrainingArguments'), read from TRL's and transformers' source
    with ``ast``: a check in a fraction of a second instead of importing torch. None when the
    sources cannot be found (the worker then checks against the imported class)."""
    files = []
    for package, rel in (("trl", "trainer/grpo_config.py"), ("trl", "trainer/base_config.py"),
                         ("transformers", "training_args.py")):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / rel
        if path.is_file():
            files.append(path)
    if not files:
        return None
    names: set[str] = set()
    wanted = {"GRPOConfig", "_BaseConfig", "TrainingArguments"}
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name in wanted:
                for item in node.body:
                    if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                        if not item.target.id.startswith("_"):
                            names.add(item.target.id)
    return frozenset(names) if "num_generations" in names else None


def grpo_values(grpo: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``grpo`` with each value as GRPOConfig takes it (``'5'`` -> 5 for a whole-number field),
    and a line per problem: an unknown field, a wrong type, a value out of range or not a choice."""
    from grpo_host import trl_schema

    schema = trl_schema.grpo_fields()
    names = grpo_field_names() or frozenset(schema)  # the installed TRL's own names when found
    values: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in grpo.items():
        if key in HOST_OWNED_GRPO_FIELDS:
            values[key] = value  # refused by RunConfig's validator, which names the section to use
            continue
        if key not in names:
            problems.append(_unknown_grpo_field(str(key), names))
            values[key] = value
            continue
        if key in SECRET_GRPO_FIELDS and value:
            problems.append(f"grpo.{key}: a secret in the config lands in the run's files (training_args.bin); "
                            f"leave it out and export {SECRET_GRPO_FIELDS[key]} instead")
        spec = schema.get(key)
        if spec is None:  # a field of a newer TRL than the schema: TRL checks it when training starts
            values[key] = value
            continue
        taken, why = trl_schema.check_value(key, value, spec)
        if why:
            shown = taken if isinstance(value, str) and not isinstance(taken, str) else value  # '-1e-5' read as text
            close = did_you_mean(value, spec.get("choices") or []) if isinstance(value, str) else ""
            problems.append(f"grpo.{key}: {shown!r} is not valid ({why}){close}; allowed: "
                            f"{trl_schema.allowed_words(spec, key)}")
        values[key] = taken
    return values, problems


def _unknown_grpo_field(key: str, fields: Sequence[str] | frozenset[str]) -> str:
    close = difflib.get_close_matches(key, sorted(fields), n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    return (f"grpo.{key}: unknown GRPOConfig field{hint}; grpo takes any field of trl.GRPOConfig "
            f"(see `python -c \"import trl; help(trl.GRPOConfig)\"`)")


# -- the free-form mappings ----------------------------------------------------------------------
# model.builtin keys the host reads itself; Qwen2Config's token ids come from the tokenizer.
BUILTIN_MODEL_HOST_KEYS = ("tokenizer_vocab_size", "seed")
BUILTIN_MODEL_SET_BY_HOST = ("bos_token_id", "eos_token_id", "pad_token_id")
LAUNCH_TARGETS = ("sagemaker",)


def free_form_problems(raw: Mapping[str, Any]) -> list[str]:
    """Problems in the mappings a pydantic model cannot type: ``grpo``, ``model.builtin``,
    ``data.builtin``, ``launch`` and ``tracking_params``, each named with a did-you-mean."""
    problems: list[str] = []
    grpo = raw.get("grpo")
    if isinstance(grpo, Mapping):
        problems += grpo_values(grpo)[1]
    model = raw.get("model")
    builtin = model.get("builtin") if isinstance(model, Mapping) else None
    if isinstance(builtin, Mapping):
        problems += _builtin_model_problems(builtin)
    data = raw.get("data")
    data_builtin = data.get("builtin") if isinstance(data, Mapping) else None
    if isinstance(data_builtin, Mapping):
        import inspect

        from grpo_host.datasets import arithmetic_rows

        allowed = [p for p in inspect.signature(arithmetic_rows).parameters]
        unknown = [_unknown_key("data.builtin", str(k), allowed) for k in data_builtin if k not in allowed]
        problems += unknown or _builtin_data_problems(data_builtin)
    launch = raw.get("launch")
    if isinstance(launch, Mapping):
        problems += [_unknown_key("launch", str(k), LAUNCH_TARGETS) for k in launch if k not in LAUNCH_TARGETS]
        if isinstance(launch.get("sagemaker"), Mapping):
            from grpo_host.sagemaker.options import LaunchOptionsError, resolve_options

            try:
                resolve_options(launch["sagemaker"], {})
            except LaunchOptionsError as exc:
                problems.append(str(exc))
    tracking, params = raw.get("tracking"), raw.get("tracking_params")
    if isinstance(params, Mapping) and isinstance(tracking, list) and tracking:
        names = [str(t) for t in tracking]
        for key in params:
            if key not in names:
                problems.append(f"tracking_params.{key}: {key!r} is not a tracker of the run; tracking: "
                                f"{', '.join(names)}{did_you_mean(str(key), names)}")
    return problems


def _builtin_data_problems(builtin: Mapping[str, Any]) -> list[str]:
    """builtin:arithmetic's values, checked here rather than when the worker generates the rows."""
    from grpo_host.datasets import OPERATIONS

    problems: list[str] = []
    n = builtin.get("n", 1)
    try:
        ok = not isinstance(n, bool) and int(n) >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        problems.append(f"data.builtin.n: {n!r} is not valid; allowed: a whole number >= 1 (the rows generated)")
    top = builtin.get("max_operand", 0)
    if isinstance(top, bool) or not isinstance(top, int) or top < 0:
        problems.append(f"data.builtin.max_operand: {top!r} is not valid; allowed: a whole number >= 0")
    ops = builtin.get("operations", "+")
    if not isinstance(ops, str) or not ops or any(op not in OPERATIONS for op in ops):
        problems.append(f"data.builtin.operations: {ops!r} is not valid; allowed: a string of "
                        f"{''.join(OPERATIONS)}, e.g. '+-'")
    return problems


def _builtin_model_problems(builtin: Mapping[str, Any]) -> list[str]:
    from grpo_host import trl_schema

    fields = trl_schema.builtin_model_fields()
    allowed = [*BUILTIN_MODEL_HOST_KEYS, *(k for k in fields if k not in BUILTIN_MODEL_SET_BY_HOST)]
    problems = []
    for key, value in builtin.items():
        if key in BUILTIN_MODEL_SET_BY_HOST:
            problems.append(f"model.builtin.{key}: set by the host from the built-in tokenizer; leave it out")
        elif key in BUILTIN_MODEL_HOST_KEYS:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"model.builtin.{key}: {value!r} is not valid; allowed: a whole number >= 1")
        elif key not in fields:
            problems.append(_unknown_key("model.builtin", str(key), allowed, "(Qwen2Config fields and "
                                         "tokenizer_vocab_size, seed)"))
        else:
            _, why = trl_schema.check_value(f"model.builtin.{key}", value, fields[key])
            if why:
                problems.append(f"model.builtin.{key}: {value!r} is not valid ({why}); allowed: "
                                f"{trl_schema.allowed_words(fields[key])}")
    return problems


def _unknown_key(section: str, key: str, allowed: Sequence[str], what: str = "") -> str:
    close = did_you_mean(key, allowed)
    listed = ", ".join(allowed) if len(allowed) <= 12 else ", ".join(list(allowed)[:12]) + ", ..."
    return f"{section}.{key}: unknown field {key!r}{close}; allowed: {listed}{f' {what}' if what else ''}"


def check_grpo_fields(grpo: Mapping[str, Any], fields: Sequence[str] | frozenset[str] | None = None) -> None:
    """Refuse keys of ``grpo`` that GRPOConfig does not have, with a did-you-mean."""
    fields = grpo_field_names() if fields is None else fields
    if not fields:
        return
    unknown = [k for k in grpo if k not in fields]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, sorted(fields), n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        raise ConfigError(
            f"grpo.{key}: unknown GRPOConfig field{hint}; grpo takes any field of trl.GRPOConfig "
            f"(see `python -c \"import trl; help(trl.GRPOConfig)\"`)"
            + (f"; also unknown: {', '.join(unknown[1:])}" if len(unknown) > 1 else "")
        )


# -- output --------------------------------------------------------------------------------------
class _Dumper(yaml.SafeDumper):
    pass


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_presenter)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False)


def json_schema() -> dict[str, Any]:
    schema = RunConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "grpo-host run config"
    from grpo_host import trl_schema

    # Editors complete and check grpo: too; extra keys stay allowed (a newer TRL's fields).
    json_types = {"int": "integer", "float": "number", "bool": "boolean", "str": "string", "list": "array",
                  "dict": "object", "null": "null"}
    fields = {}
    for name, spec in trl_schema.grpo_fields().items():
        if name in HOST_OWNED_GRPO_FIELDS or "any" in spec["types"]:
            continue
        field: dict[str, Any] = {"type": [json_types[t] for t in spec["types"]]}
        if spec.get("choices"):
            field["enum"] = [*spec["choices"], *([None] if "null" in spec["types"] else [])]
            field.pop("type")
        fields[name] = field
    schema["properties"]["grpo"]["properties"] = fields
    return schema
