"""The job side of the Torchrun distribution: what each training process of a SageMaker job runs.

With a ``torchrun`` backend, the SageMaker SDK's Torchrun driver starts ``torchrun`` on every
instance (nodes, ranks and the main address from the job's cluster) with the job's entry
script, ``grpo_host_job.py``, which calls :func:`torchrun_main`. Each process is already one
worker of the distributed run, so it trains directly: the same config, the same SageMaker
overrides and the same worker as ``grpo-host train``, without a second launcher.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from grpo_host.errors import GrpoHostError

# Set by the host for the subprocess it watches; a process under torchrun has no such parent.
_HOST_ONLY_ENV = ("GRPO_HOST_DIE_WITH_PARENT", "GRPO_HOST_PROGRESS")


def torchrun_main(config_path: str = "run.yaml") -> int:
    from grpo_host.config import load_config
    from grpo_host.sagemaker.job_env import finish_job, prepare_job

    try:
        overrides = prepare_job(config_path)
        config = load_config(config_path, overrides)
        from grpo_host.training.launch import prepare

        # The backend's environment for its workers (precision, FSDP settings, ...), as it would
        # set it for the processes it launches itself.
        prepared = prepare(config, write=False)
        for key, value in prepared.env.items():
            if key not in _HOST_ONLY_ENV:
                os.environ.setdefault(key, value)
        resolved = Path(tempfile.mkdtemp(prefix="grpo-host-rank-")) / "run_config.yaml"
        resolved.write_text(config.to_yaml(), encoding="utf-8")
        from grpo_host.training.worker import main as worker_main

        code = worker_main(["--config", str(resolved)])
    except GrpoHostError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    if code == 0 and os.environ.get("RANK", "0") == "0":
        finish_job(config.output.dir)
    return code


if __name__ == "__main__":
    sys.exit(torchrun_main())
