"""Step time of the same tiny GRPO run through `grpo-host train` and through a plain TRL script.

Both sides train the built-in tiny Qwen2 (the same cached weights and tokenizer) on the same
arithmetic prompts with the same GRPOConfig, and score with the same reward code: the host
through its reward runtime (worker pool, timeouts, outcome counts, metrics.jsonl, progress),
the plain script by calling the reward plugins' functions in a loop in the trainer's process,
as a hand-written TRL script would. Runs alternate (host, plain, host, plain, ...) so load
from other work on the machine falls on both. Reported: the median wall time per step after
the warm-up steps (from the step records), TRL's own ``step_time``, and host / plain.

    python bench/train_overhead.py --rounds 3 --steps 40
    python bench/train_overhead.py --plain-only --steps 5     # the plain side alone (a smoke test)
    python bench/train_overhead.py --before /tmp/grpo-before --rounds 3 --steps 20

``--before DIR`` compares this host with an earlier checkout of it instead of plain TRL
(``git worktree add /tmp/grpo-before <commit>``; the same venv and plugins): both sides are
``grpo-host train``, alternated; reported per step and for the whole command (start-up,
warm-up, model build, save), after / before.

The plain side is this file run with ``--plain-worker``; it writes its per-step times as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


# -- the plain TRL side ----------------------------------------------------------------------------
def plain_rewards(config):
    """The run's rewards as plain TRL reward functions: the plugins' code, called in a loop in
    the trainer's process (a function reward called per completion; a class reward built once
    with its params, then its ``score`` called per completion)."""
    from grpo_host.plugins.manager import get_plugin_manager

    manager = get_plugin_manager()
    funcs = []
    for entry in config.rewards:
        spec = manager.get_reward(entry.name)
        params = spec.resolve_params(entry.params)
        if spec.kind == "class":
            if spec.batched:
                raise SystemExit(f"reward {entry.name!r} scores whole batches; this bench takes per-sample rewards")
            score, extra = spec.target(**params).score, {}
        else:
            score, extra = spec.target, params

        def fn(prompts, completions, _score=score, _extra=extra, _spec=spec, completion_ids=None, **columns):
            for key in ("trainer_state", "log_extra", "log_metric", "environments"):
                columns.pop(key, None)
            out = []
            for i, completion in enumerate(completions):
                text = completion[-1]["content"] if isinstance(completion, list) else completion
                kwargs = {k: v[i] for k, v in columns.items()
                          if isinstance(v, list) and (_spec.accepts_any_column or k in _spec.columns)}
                value = _score(text, **kwargs, **_extra)
                value = getattr(value, "value", value)
                out.append(None if value is None else float(value))
            return out

        fn.__name__ = entry.key
        funcs.append(fn)
    return funcs


def plain_worker(config_path: str, times_path: str) -> None:
    import torch
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from grpo_host.config import load_resolved
    from grpo_host.training.data import load_datasets
    from grpo_host.training.model import build_model
    from grpo_host.training.process import cpu_threads

    config = load_resolved(config_path)
    threads = cpu_threads(config)  # the same thread count as the host's worker
    if threads:
        torch.set_num_threads(threads)
    built = build_model(config)
    train_ds, _ = load_datasets(config.data, built.tokenizer)
    stamps: list[float] = []
    step_times: list[float] = []
    logged: list[dict] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps.append(time.monotonic())

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "step_time" in logs:
                step_times.append(float(logs["step_time"]))
                logged.append({k: v for k, v in logs.items() if isinstance(v, (int, float))})

    args = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="plain-trl-"),
        seed=config.seed,
        logging_steps=1,
        report_to="none",
        disable_tqdm=True,
        save_strategy="no",
        gradient_checkpointing=config.gradient_checkpointing,
        bf16=torch.cuda.is_available() and config.precision in ("auto", "bf16"),
        use_cpu=not torch.cuda.is_available(),
        reward_weights=[r.weight for r in config.rewards],
        **config.grpo,
    )
    trainer = GRPOTrainer(
        model=built.model,
        reward_funcs=plain_rewards(config),
        args=args,
        train_dataset=train_ds,
        processing_class=built.tokenizer,
        peft_config=built.peft_config,
        callbacks=[Clock()],
    )
    start = time.monotonic()
    trainer.train()
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    Path(times_path).write_text(json.dumps({"start": start, "stamps": stamps, "step_time": step_times,
                                            "records": logged, "peak_allocated_gib": peak}))


# -- the driver ------------------------------------------------------------------------------------
def host_run(workdir: Path, steps: int, sets: list[str], pythonpath: str | None = None) -> dict:
    out = workdir / f"host-{time.monotonic_ns()}"
    cmd = [sys.executable, "-m", "grpo_host", "train", "--output-dir", str(out),
           "--set", f"grpo.max_steps={steps}", "--set", "checkpointing.steps=100000",
           "--set", "output.report=false", "--set", "output.save_model=false"]
    for item in sets:
        cmd += ["--set", item]
    started = time.monotonic()
    env = {**os.environ, "PYTHONPATH": pythonpath} if pythonpath else None  # ahead of the editable install
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"grpo-host train failed:\n{proc.stdout[-3000:]}")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    elapsed = [r["elapsed"] for r in records]
    return {"walls": [b - a for a, b in zip(elapsed, elapsed[1:], strict=False)],
            "step_time": [r["step_time"] for r in records], "total": time.monotonic() - started,
            "config": out / "run_config.yaml", "records": records,
            "peak_allocated_gib": max((r["memory/peak_allocated_gib"] for r in records
                                       if "memory/peak_allocated_gib" in r), default=None)}


def plain_run(workdir: Path, config_path: Path) -> dict:
    times = workdir / f"plain-{time.monotonic_ns()}.json"
    started = time.monotonic()
    proc = subprocess.run([sys.executable, __file__, "--plain-worker", str(config_path), str(times)],
                          capture_output=True, text=True, cwd=workdir)
    if proc.returncode != 0:
        raise RuntimeError(f"plain TRL run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    data = json.loads(times.read_text())
    stamps = data["stamps"]
    return {"walls": [b - a for a, b in zip(stamps, stamps[1:], strict=False)], "step_time": data["step_time"],
            "total": time.monotonic() - started, "records": data["records"],
            "peak_allocated_gib": data["peak_allocated_gib"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5, help="Steps left out of each run's median.")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="More config overrides (both sides).")
    parser.add_argument("--plain-worker", nargs=2, metavar=("CONFIG", "TIMES"), help=argparse.SUPPRESS)
    parser.add_argument("--plain-only", action="store_true")
    parser.add_argument("--json", dest="json_out", help="Write the figures here too.")
    parser.add_argument("--before", help="An earlier checkout of the host: compare with it instead of plain TRL.")
    args = parser.parse_args()
    if args.plain_worker:
        plain_worker(*args.plain_worker)
        return
    os.environ.setdefault("GRPO_HOST_CACHE", str(Path(tempfile.gettempdir()) / "grpo-host-bench-cache"))
    workdir = Path(tempfile.mkdtemp(prefix="train-overhead-"))
    if args.before:
        before_after(workdir, args)
        return
    # One host run first resolves the config (and builds the cached model) for both sides.
    if args.plain_only:
        from grpo_host.cli.common import parse_sets
        from grpo_host.config import load_config

        config = load_config(None, parse_sets([f"grpo.max_steps={args.steps}", *args.sets]),
                             output_dir=str(workdir / "cfg"))
        path = workdir / "plain.yaml"
        path.write_text(config.to_yaml())
        result = plain_run(workdir, path)
        print(json.dumps(result, indent=1, default=str))
        return
    host_walls, plain_walls, host_st, plain_st = [], [], [], []
    config_path = None
    for round_ in range(args.rounds):
        host = host_run(workdir, args.steps, args.sets)
        config_path = config_path or host["config"]
        plain = plain_run(workdir, config_path)
        hw, pw = host["walls"][args.warmup:], plain["walls"][args.warmup:]
        host_walls += hw
        plain_walls += pw
        host_st += host["step_time"][args.warmup:]
        plain_st += plain["step_time"][args.warmup:]
        print(f"round {round_ + 1}: host {statistics.median(hw) * 1000:.1f} ms/step, "
              f"plain TRL {statistics.median(pw) * 1000:.1f} ms/step "
              f"(ratio {statistics.median(hw) / statistics.median(pw):.3f})", flush=True)
    figures = {
        "steps_per_run": args.steps, "rounds": args.rounds, "warmup": args.warmup,
        "host_wall_ms": statistics.median(host_walls) * 1000,
        "plain_wall_ms": statistics.median(plain_walls) * 1000,
        "host_step_time_ms": statistics.median(host_st) * 1000,
        "plain_step_time_ms": statistics.median(plain_st) * 1000,
    }
    figures["ratio_wall"] = figures["host_wall_ms"] / figures["plain_wall_ms"]
    figures["ratio_step_time"] = figures["host_step_time_ms"] / figures["plain_step_time_ms"]
    print(json.dumps(figures, indent=2))
    print(f"host / plain TRL, median wall time per step: {figures['ratio_wall']:.3f} "
          f"({(figures['ratio_wall'] - 1) * 100:+.1f}%)")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(figures, indent=2))


def before_after(workdir: Path, args: argparse.Namespace) -> None:
    """This host against ``args.before``, alternated: median wall per step and per command."""
    before = str(Path(args.before).resolve())
    check = subprocess.run([sys.executable, "-c", "import grpo_host; print(grpo_host.__file__)"], cwd=workdir,
                           env={**os.environ, "PYTHONPATH": before}, capture_output=True, text=True, check=True)
    assert check.stdout.startswith(before), f"--before is not what runs: {check.stdout}"
    walls: dict[str, list[float]] = {"before": [], "after": []}
    totals: dict[str, list[float]] = {"before": [], "after": []}
    for round_ in range(args.rounds):
        for side, path in (("before", before), ("after", None)):
            run = host_run(workdir, args.steps, args.sets, pythonpath=path)
            walls[side] += run["walls"][args.warmup:]
            totals[side].append(run["total"])
            print(f"round {round_ + 1} {side}: {statistics.median(run['walls'][args.warmup:]) * 1000:.1f} ms/step, "
                  f"{run['total']:.1f} s for the command", flush=True)
    figures = {side: {"wall_per_step_ms": statistics.median(walls[side]) * 1000,
                      "command_s": statistics.median(totals[side])} for side in walls}
    figures["ratio_per_step"] = figures["after"]["wall_per_step_ms"] / figures["before"]["wall_per_step_ms"]
    figures["ratio_command"] = figures["after"]["command_s"] / figures["before"]["command_s"]
    print(json.dumps({"steps_per_run": args.steps, "rounds": args.rounds, **figures}, indent=2))
    print(f"after / before: {figures['ratio_per_step']:.3f} per step, {figures['ratio_command']:.3f} per command")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
