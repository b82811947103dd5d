"""The training worker: the one entry point every backend launches.

``python -m grpo_host.training.worker --config RESOLVED.yaml`` reads a run config written by
the host (or by hand) and trains with TRL's ``GRPOTrainer``. :func:`run` is the run's table of
contents; each stage is a function of its own module under ``grpo_host/training/``, taking what
the earlier stages built and returning a small record the later ones read:

- ``process.start_process``: accelerate's process state, logging, redaction (``Process``);
- ``finished.end_if_finished``: a finished run this config would not extend is not trained;
- ``outputs.find_resume``: the checkpoint to resume from (``Resume``), checked before the model;
- ``parts.bind_parts``: the reward set and trackers, before the model so a bad one fails fast;
- ``inputs.build_inputs``: data, model, tokenizer, the backend's setup, ``GRPOConfig`` (``Inputs``);
- ``outputs.prepare_output_dir``: run_config.yaml, reward_provenance.json, the step records;
- ``warmup.warm_up``: supervised steps before GRPO (a fresh run only);
- ``trainer.build_trainer``: GRPOTrainer, the host's callbacks, the generation path (``Session``);
- ``trainer.train``: the trackers' start, training, the reward set closed (``Outcome``);
- ``results.save_model``: the model or adapter (merged where it can be);
- ``results.summarize``: run.json, the report, the trackers' end, the Hub push, the host's last line.

Launched as several processes (``accelerate launch``, ``torchrun``), every process trains and
only the main one writes shared files. A new training feature goes in the stage whose record
it needs, or as a new stage here.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from grpo_host.config import RunConfig, load_resolved
from grpo_host.errors import GrpoHostError
from grpo_host.training.finished import end_if_finished
from grpo_host.training.inputs import build_inputs
from grpo_host.training.outputs import find_resume, prepare_output_dir
from grpo_host.training.parts import bind_parts
from grpo_host.training.process import set_threads, start_process
from grpo_host.training.results import save_model, summarize
from grpo_host.training.trainer import build_trainer, train
from grpo_host.training.warmup import warm_up


def run(config: RunConfig) -> dict[str, Any]:
    process = start_process(config)
    done = end_if_finished(config, is_main=process.is_main)
    if done is not None:
        return done
    resume = find_resume(config)  # a wrong checkpoint path fails before anything is built
    parts = bind_parts(config, process)
    set_threads(config)
    inputs = build_inputs(config, process, parts.manager, parts.reward_set.weights)
    prepare_output_dir(config, resume, parts.reward_set.provenance(), is_main=process.is_main)
    process.wait_for_everyone()
    if resume.checkpoint is None:  # a resumed run's weights come from its checkpoint
        warm_up(
            config, inputs.built, inputs.train_ds, output_dir=process.output_dir if process.is_main else None
        )
    session = build_trainer(config, process, parts, inputs)
    outcome = train(config, process, parts, inputs, session, resume)
    save_model(config, process, inputs, session)
    summary = summarize(config, process, parts, inputs, session, resume, outcome)
    process.wait_for_everyone()
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m grpo_host.training.worker", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument(
        "--config", required=True, help="A resolved run config (YAML), as `grpo-host train` writes it."
    )
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
