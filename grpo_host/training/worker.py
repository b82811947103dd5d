"""The training worker: the one entry point every backend launches.

``python -m grpo_host.training.worker --config RESOLVED.yaml`` reads a run config written by
the host (or by hand), builds the model, tokenizer, data sets and rewards, and trains with
TRL's ``GRPOTrainer``. It resumes from the last complete checkpoint when one exists, and
writes into the output dir: the model and tokenizer, ``run_config.yaml``,
``reward_provenance.json``, ``metrics.jsonl``, ``samples.jsonl``, ``run.json`` (the summary)
and the report. Launched as several processes (``accelerate launch``, ``torchrun``), every
process trains and only the main one writes shared files.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import logging
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from grpo_host.config import ConfigError, RunConfig, check_grpo_fields, load_resolved
from grpo_host.errors import GrpoHostError

log = logging.getLogger("grpo_host.training")

CONFIG_FILE = "run_config.yaml"
PROVENANCE_FILE = "reward_provenance.json"
SUMMARY_FILE = "run.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


# -- checkpoints -----------------------------------------------------------------------------------
def complete_checkpoints(folder: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the checkpoints that finished saving, oldest first.

    The trainer writes ``trainer_state.json`` last, so a checkpoint cut short by a hard kill
    lacks it (or holds a truncated one) and is skipped.
    """
    folder = Path(folder)
    found = []
    if not folder.is_dir():
        return found
    for child in folder.iterdir():
        match = _CHECKPOINT.match(child.name)
        if not match or not child.is_dir():
            continue
        try:
            json.loads((child / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        found.append((int(match.group(1)), child))
    return sorted(found)


def resume_point(config: RunConfig) -> Path | None:
    resume = config.checkpointing.resume
    if isinstance(resume, str):
        path = Path(resume)
        if not (path / "trainer_state.json").is_file():
            raise ConfigError(f"checkpointing.resume: {resume!r} is not a complete checkpoint folder "
                              "(no trainer_state.json); give a checkpoint-N folder, true or false")
        return path
    if resume is False:
        return None
    done = complete_checkpoints(config.checkpoint_dir)
    return done[-1][1] if done else None


# -- the GRPOConfig ------------------------------------------------------------------------------
def grpo_args(config: RunConfig, precision: str, reward_weights: list[float], has_eval: bool,
              backend_args: dict[str, Any] | None = None) -> Any:
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
    if not _cuda():
        values["use_cpu"] = True
    values.update(backend_args or {})  # the backend's own fields (FSDP settings), last
    try:
        return GRPOConfig(**values)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"grpo: TRL refused the settings: {exc}")


def _coerce(field: dataclasses.Field, value: Any) -> Any:
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


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# -- the run -------------------------------------------------------------------------------------
def run(config: RunConfig) -> dict[str, Any]:
    from accelerate import PartialState

    # On CPUs the processes must join a gloo group: without cpu=True accelerate sees no GPU
    # and treats every process as a world of one.
    state = PartialState(cpu=not _cuda())
    is_main = state.is_main_process
    logging.basicConfig(level=logging.INFO if is_main else logging.WARNING, format="%(message)s", force=True)
    _quiet()
    output_dir = Path(config.output.dir)
    check_grpo_fields(config.grpo)  # fast, before anything heavy
    from grpo_host.observability.redact import configure as configure_redaction
    from grpo_host.observability.redact import redact

    configure_redaction(config.redact_env)
    done = _finished(config, is_main)
    if done is not None:
        return done

    from grpo_host.plugins.manager import get_plugin_manager
    from grpo_host.rewards.trl_adapter import RewardSet, resolve_reward_item

    manager = get_plugin_manager()
    bound = [resolve_reward_item(entry.to_item(), manager) for entry in config.rewards]
    runtime = config.runtime
    workers = config.reward_workers if runtime.workers is None else runtime.workers
    if workers is None and runtime.executor == "local":  # the cores are shared by this machine's ranks
        workers = max(1, _cores() // max(1, _local_world_size()))
    # Built before the model, so a wrong executor setting (Ray missing, its address down) fails fast.
    reward_set = RewardSet(bound, workers=workers, error_threshold=config.rewards_error_threshold,
                           executor=runtime.executor, executor_options=runtime.executor_options())
    from grpo_host.tracking import TrackerSet

    trackers = TrackerSet.from_names(config.tracking, manager) if is_main else TrackerSet()

    from grpo_host.observability.callbacks import observability_callbacks
    from grpo_host.training.callbacks import (
        METRICS_FILE,
        BeforeAfterProbe,
        NonFiniteGuard,
        RunRecorder,
        emit_progress,
        truncate_jsonl,
    )
    from grpo_host.training.data import load_raw_datasets, shape_datasets
    from grpo_host.training.model import build_model, resolve_precision

    threads = cpu_threads(config)
    if threads:
        import torch

        torch.set_num_threads(threads)
        log.info("CPU: %d torch thread(s) per process", threads)
    with state.main_process_first():  # opened and checked before the model is built
        raw_data = load_raw_datasets(config.data)
    emit_progress("phase", text="building the model")
    with state.main_process_first():  # the built-in model is built once, then read by all
        built = build_model(config, state.local_process_index if _cuda() else None)
        train_ds, eval_ds = shape_datasets(*raw_data, config.data, built.tokenizer)
    precision = resolve_precision(config.precision)
    backend = _backend_setup(config, manager, built.model)
    args = grpo_args(config, precision, reward_set.weights, eval_ds is not None, backend.trainer_args)

    checkpoint = resume_point(config)
    resumed_step = int(_CHECKPOINT.match(checkpoint.name).group(1)) if checkpoint and _CHECKPOINT.match(checkpoint.name) else None
    if is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        if config.checkpointing.resume is False:
            for _, old in complete_checkpoints(config.checkpoint_dir):
                shutil.rmtree(old, ignore_errors=True)
        (output_dir / CONFIG_FILE).write_text(redact(config.to_yaml()), encoding="utf-8")
        (output_dir / PROVENANCE_FILE).write_text(json.dumps(redact(reward_set.provenance()), indent=2),
                                                  encoding="utf-8")
        from grpo_host.training.callbacks import EVAL_METRICS_FILE, SAMPLES_FILE

        for name in (METRICS_FILE, SAMPLES_FILE, EVAL_METRICS_FILE):
            if resumed_step is not None:
                truncate_jsonl(output_dir / name, resumed_step)
            else:
                (output_dir / name).unlink(missing_ok=True)
        if checkpoint is not None:
            log.info("resuming from %s", checkpoint)
    state.wait_for_everyone()
    if checkpoint is None:  # a resumed run's weights come from its checkpoint
        from grpo_host.training.warmup import warm_up

        warm_up(config, built, train_ds, output_dir=output_dir if is_main else None)

    from transformers import PrinterCallback
    from trl import GRPOTrainer

    recorder = RunRecorder(output_dir, reward_set, is_main=is_main, trackers=trackers,
                           samples_per_log=config.output.samples_per_log)
    if _cuda():
        recorder.metric_sources.append(_peak_memory)
    emit_progress("phase", text="starting the trainer")
    trainer = GRPOTrainer(
        model=built.model,
        reward_funcs=reward_set.callables(),
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=built.tokenizer,
        peft_config=built.peft_config,
        callbacks=[*backend.callbacks, recorder, *observability_callbacks(recorder, reward_set, is_main=is_main),
                   NonFiniteGuard(),
                   BeforeAfterProbe(output_dir, reward_set, train_ds, built.tokenizer, is_main=is_main,
                                    world_size=state.num_processes, max_new_tokens=args.max_completion_length)],
    )
    trainer.remove_callback(PrinterCallback)  # the recorder prints one readable line per step
    generation = apply_generation_speed(trainer, config, built)
    if generation["path"] == "static-compile":
        recorder.metric_sources.append(compile_counters)
    _refuse_silent_unsharded(trainer)
    run_info = {
        "run_name": config.run_name,
        "output_dir": str(output_dir),
        "config": config.model_dump(mode="json"),
        "rewards": reward_set.provenance(),
        "tracking_params": config.tracking_params,
        "world_size": state.num_processes,
        "resumed_from": str(checkpoint) if checkpoint else None,
        "model": {"id": config.model.id, "dtype": built.dtype, "attention": built.attention,
                  "quantized": built.quantized},
        "generation": generation,
    }
    trackers.start(run_info)
    started = time.time()
    status = "FAILED"
    try:
        result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        reward_set.close()
        if status != "FINISHED":
            trackers.finish(str(output_dir), status=status)
    emit_progress("phase", text="saving the model")
    _save(trainer, built, config, output_dir, is_main)
    summary: dict[str, Any] = {}
    if is_main:
        from grpo_host.observability.report import read_jsonl, reward_rise, write_report

        records = read_jsonl(output_dir / METRICS_FILE)
        summary = {
            "run_name": config.run_name,
            "output_dir": str(output_dir),
            "model_dir": str(output_dir),
            "final_step": trainer.state.global_step,
            "max_steps": trainer.state.max_steps,
            "num_train_epochs": trainer.state.num_train_epochs,
            "resumed_from_step": resumed_step,
            "train_seconds": round(time.time() - started, 2),
            "train_runtime": result.metrics.get("train_runtime"),
            "world_size": state.num_processes,
            "device": str(args.device),
            "dtype": built.dtype,
            "attention": built.attention,
            "precision": precision,
            "generation": generation,
            "reward_rise": reward_rise(records),
            "rewards": [r.name for r in reward_set.rewards],
        }
        (output_dir / SUMMARY_FILE).write_text(json.dumps(redact(summary), indent=2), encoding="utf-8")
        if config.output.report:
            emit_progress("phase", text="writing the report")
            summary["report"] = {k: str(v) for k, v in write_report(output_dir).items()}
            (output_dir / SUMMARY_FILE).write_text(json.dumps(redact(summary), indent=2), encoding="utf-8")
        trackers.finish(str(output_dir))
        if config.output.push_to_hub:
            _push(config, output_dir)
        emit_progress("end", **summary)
    state.wait_for_everyone()
    return summary


def _finished(config: RunConfig, is_main: bool) -> dict[str, Any] | None:
    """The summary of a finished run this config would not extend: then nothing is trained
    (the host checks first; this covers a worker launched by hand or by a job)."""
    from grpo_host.training.finished import finished_message, finished_run

    done = finished_run(config)
    if done is not None and is_main:
        log.info("%s", finished_message(done, config.output.dir))
        from grpo_host.training.callbacks import emit_progress

        emit_progress("end", **done)
    return done


def _save(trainer: Any, built: Any, config: RunConfig, output_dir: Path, is_main: bool) -> None:
    if not config.output.save_model:
        return
    if built.peft_config is None:
        trainer.save_model(str(output_dir))  # model, tokenizer; gathers shards where needed
        return
    trainer.save_model(str(output_dir / "adapter"))
    if not (config.output.merge_lora and is_main):
        return
    if built.quantized:
        log.info("kept the LoRA adapter only (in adapter/): merging into a 4-bit base would lose precision; "
                 "merge it into the full-precision base with peft's merge_and_unload")
        return
    model = trainer.accelerator.unwrap_model(trainer.model)
    if getattr(trainer, "is_fsdp_enabled", False):
        # Sharded weights cannot be merged by one process: merge the saved adapter into a fresh base.
        model = _adapter_on_fresh_base(built, config, output_dir / "adapter")
    merged = model.merge_and_unload()
    merged.save_pretrained(str(output_dir))
    built.tokenizer.save_pretrained(str(output_dir))


def _adapter_on_fresh_base(built: Any, config: RunConfig, adapter_dir: Path) -> Any:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(
        built.source, dtype=getattr(torch, built.dtype), trust_remote_code=config.model.trust_remote_code,
        **({"revision": config.model.revision} if config.model.revision else {}))
    return PeftModel.from_pretrained(base, str(adapter_dir))


def _push(config: RunConfig, output_dir: Path) -> None:
    from huggingface_hub import HfApi

    api = HfApi()
    repo = config.output.hub_model_id
    api.create_repo(repo, private=config.output.hub_private, exist_ok=True)
    api.upload_folder(folder_path=str(output_dir), repo_id=repo, ignore_patterns=["checkpoints/*"])
    log.info("pushed the model to https://huggingface.co/%s", repo)


# -- generation speed ----------------------------------------------------------------------------
_GENERATION_OWNERS = ("use_vllm", "cache_implementation", "use_transformers_paged")


def generation_choice(config: RunConfig, *, cuda: bool, sharded: bool) -> tuple[str, str]:
    """``(path, why)`` for ``generation.speed``: path is ``off``, ``static`` or ``static-compile``.

    The auto rule follows what bench/README.md measured (one H200, 0.5B shape): a static KV
    cache lets transformers compile the decode step (CUDA graphs), several times TRL's default
    tokens/s, because the default loop pays per-token launch overhead, not math. That holds for
    full fine-tuning, LoRA and QLoRA (LoRA/QLoRA sample from a merged copy where one fits:
    :func:`apply_generation_speed`); FSDP/DeepSpeed keep TRL's default unless asked explicitly.
    """
    speed = config.generation.speed
    owner = next((k for k in _GENERATION_OWNERS if config.grpo.get(k)), None)
    if owner:
        if speed not in ("auto", "off"):
            raise ConfigError(f"generation.speed={speed} and grpo.{owner} both choose how to generate; "
                              f"keep one (generation.speed: auto steps aside for grpo.{owner})")
        return "off", f"grpo.{owner} is set: TRL's own generation settings apply"
    if speed != "auto":
        why = "set in the config"
        if speed == "static-compile" and not cuda:
            why += " (no CUDA GPU: transformers compiles only there, so this runs as a static cache alone)"
        return speed, why
    if not cuda:
        return "off", "auto on CPU: TRL's default (transformers compiles the decode step only on GPUs)"
    if sharded:
        return "off", "auto with FSDP/DeepSpeed: TRL's default (the fast path is untested on sharded weights)"
    kind = "QLoRA" if config.quantization.load_in_4bit else "LoRA" if config.peft.enabled else None
    return "static-compile", "auto on a CUDA GPU" + (f" ({kind})" if kind else "") + \
        ": static KV cache with a compiled decode step"


# A merged sampling copy is taken only while it leaves most of the GPU to training.
_COPY_SHARE_OF_FREE = 0.5
_SAMPLING_ENV = "GRPO_HOST_LORA_SAMPLING"  # merged | adapters: forces one (bench/gpu_sampling.py)


def apply_generation_speed(trainer: Any, config: RunConfig, built: Any) -> dict[str, str]:
    """Set the trainer's generation config for ``generation.speed``; say which path and why.

    TRL builds ``trainer.generation_config`` once, with ``disable_compile=True``, and passes it
    to every ``model.generate`` call; changing it after the trainer is built is the one place
    that reaches sampling without touching how the loss or the log-probs are computed (those run
    the model's ordinary forward on the sampled ids). Compiled decoding stays valid while the
    optimizer updates the weights: it updates them in place, so the captured graphs read the
    new values. With LoRA/QLoRA the policy samples from a merged copy (:func:`lora_sampling`).
    """
    sharded = bool(getattr(trainer, "is_fsdp_enabled", False) or getattr(trainer, "is_deepspeed_enabled", False))
    path, why = generation_choice(config, cuda=_cuda(), sharded=sharded)
    gen = getattr(trainer, "generation_config", None)
    if path != "off" and gen is None:
        path, why = "off", "TRL generates without a transformers generation config here (vLLM)"
    result = {"path": path, "why": why}
    if path != "off":
        gen.cache_implementation = "static"
        gen.disable_compile = path != "static-compile"
        kwargs = getattr(trainer, "generation_kwargs", None)
        if isinstance(kwargs, dict):  # TRL's copy of the same settings (used on transformers < 5)
            kwargs["cache_implementation"] = "static"
        if hasattr(gen, "max_cache_len") and os.environ.get("GRPO_HOST_STATIC_CACHE_LEN", "").lower() != "off":
            gen.max_cache_len = static_cache_length(trainer)
            result["max_cache_len"] = gen.max_cache_len
        if built.peft_config is not None:
            result["sampling"], result["sampling_why"] = lora_sampling(trainer, config, built)
    log.info("generation: %s (%s)%s", path, why,
             f"; sampling from {result['sampling']} ({result['sampling_why']})" if "sampling" in result else "")
    if path == "off" and not config.grpo.get("use_vllm") and importlib.util.find_spec("vllm") is not None:
        log.info("generation: vllm is installed; grpo.use_vllm: true makes TRL generate with it instead")
    return result


_PROMPTS_MEASURED = 2048
_CACHE_ROUND = 64


def static_cache_length(trainer: Any) -> int | None:
    """The static KV cache's length: the longest prompt of (the first rows of) the training data
    plus ``max_completion_length``, rounded up to 64 tokens.

    transformers sizes a static cache for the call at hand and reallocates it, and recompiles
    the decode step, whenever a later batch has a longer prompt; with prompts of varying length
    that is a recompile every few steps. Sized once for the data, the cache is reused. A prompt
    longer than any measured still works: transformers grows the cache that once."""
    data = getattr(trainer, "train_dataset", None)
    tok = getattr(trainer, "processing_class", None)
    completion = getattr(trainer, "max_completion_length", None)
    if data is None or tok is None or not completion or "prompt" not in getattr(data, "column_names", ()):
        return None
    longest = 0
    for i in range(min(len(data), _PROMPTS_MEASURED)):
        prompt = data[i]["prompt"]
        try:
            ids = (tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=False)
                   if isinstance(prompt, list) else tok(prompt)["input_ids"])
        except Exception:  # noqa: BLE001 - a prompt TRL will shape itself (images, tools): leave sizing to it
            return None
        longest = max(longest, len(ids))
    return -(-(longest + completion) // _CACHE_ROUND) * _CACHE_ROUND


def lora_sampling(trainer: Any, config: RunConfig, built: Any) -> tuple[str, str]:
    """``("merged copy" | "adapters", why)``: where a LoRA/QLoRA policy samples from.

    bench/README.md measured a merged bf16 copy (base weights, 4-bit ones dequantized, plus the
    adapters' deltas, rewritten before every generate) against decoding through the adapters:
    the copy decodes like a fully fine-tuned model. It costs one bf16 copy of the base weights,
    so it is taken only where that fits in half the free GPU memory; otherwise, and for adapter
    kinds it cannot merge, the policy samples through its adapters.
    """
    import torch

    from grpo_host.training import sampling_copy

    model = trainer.accelerator.unwrap_model(trainer.model)
    forced = os.environ.get(_SAMPLING_ENV, "").strip().lower()
    if forced not in ("", "merged", "adapters"):
        raise ConfigError(f"{_SAMPLING_ENV}={forced!r}: use merged or adapters (or leave it unset)")
    if forced == "adapters":
        return "adapters", f"{_SAMPLING_ENV}=adapters"
    reason = sampling_copy.unsupported(model)
    if reason:
        return "adapters", f"no merged copy: {reason}"
    dtype = getattr(torch, config.quantization.compute_dtype if built.quantized else built.dtype, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        dtype = torch.float32
    need = sampling_copy.copy_bytes(model, dtype)
    if _cuda() and forced != "merged":
        free, _ = torch.cuda.mem_get_info()
        if need > _COPY_SHARE_OF_FREE * free:
            return "adapters", (f"a merged copy needs {need / 2**30:.1f} GiB, over half the "
                                f"{free / 2**30:.1f} GiB free")
    sampling_copy.attach(model, sampling_copy.MergedSampler(model, dtype))
    return "merged copy", f"{need / 2**30:.2f} GiB, {str(dtype).removeprefix('torch.')}, refreshed before each generate"


def compile_counters() -> dict[str, int]:
    """torch.compile's running totals in this process (a frame compiled after warm-up is a
    recompile): logged each step on the compiled path so a run shows whether it recompiles."""
    from torch._dynamo.utils import counters

    return {"generation/compiled_frames": int(counters["frames"]["ok"]),
            "generation/graph_breaks": int(sum(counters["graph_break"].values())),
            "generation/cudagraph_skips": int(counters["inductor"].get("cudagraph_skips", 0))}


def _backend_setup(config: RunConfig, manager: Any, model: Any) -> Any:
    """What the run's backend applies inside this process (BackendSpec.prepare_worker)."""
    from grpo_host.backends import WorkerSetup

    spec = manager.backends.get(config.backend.name)
    if spec is None or spec.prepare_worker is None:
        return WorkerSetup()
    return spec.prepare_worker(spec.check_params(dict(config.backend.params)), model, config)


def _peak_memory() -> dict[str, float]:
    """This process's peak CUDA memory so far (allocated by tensors, and reserved by the cache)."""
    import torch

    return {"memory/peak_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3),
            "memory/peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 3)}


def _quiet() -> None:
    """Per-shard and per-map progress bars and transformers' own deprecation notes about the
    fields TRL still uses would bury the step lines; the host draws its own progress."""
    import warnings

    import datasets
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    warnings.filterwarnings("ignore", message=r".*gradient_checkpointing.* is deprecated", category=FutureWarning)


def cpu_threads(config: RunConfig) -> int | None:
    """Torch threads for a CPU run: tiny matrices run fastest on one thread (more threads
    spin against each other, badly so on a shared machine)."""
    if _cuda():
        return None
    if config.cpu_threads:
        return config.cpu_threads
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    from grpo_host.config import BUILTIN_MODEL

    return 1 if config.model.id == BUILTIN_MODEL else None


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _refuse_silent_unsharded(trainer: Any) -> None:
    """An accelerate FSDP config on a machine where accelerate does not apply it (it does so on
    GPUs only) would train unsharded, as plain data parallel, while the user believes in FSDP."""
    asked = os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true")
    if asked and not getattr(trainer, "is_fsdp_enabled", False):
        kind = trainer.accelerator.distributed_type
        raise GrpoHostError(
            f"the accelerate config asks for FSDP, but accelerate did not enable it here (distributed type "
            f"{kind}): the run would train unsharded. On CPUs use --backend torchrun-fsdp, which shards "
            "over gloo; on GPUs check the config file's distributed_type and fsdp_config."
        )


def _local_world_size() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE") or os.environ.get("WORLD_SIZE") or 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grpo_host.training.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="A resolved run config (YAML), as `grpo-host train` writes it.")
    options = parser.parse_args(argv)
    if os.environ.get("GRPO_HOST_DIE_WITH_PARENT") == "1":
        from grpo_host.training.launch import _die_with_parent

        _die_with_parent()  # a launcher or host killed hard takes this process with it
    from grpo_host.observability.redact import redact_std_streams

    redact_std_streams()  # its prints, logging and tracebacks; the host redacts what it relays too
    try:
        run(load_resolved(options.config))
    except GrpoHostError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
