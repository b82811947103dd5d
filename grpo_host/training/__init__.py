"""Training: the worker every backend launches, its model/data/reward builders, and the host
side that resolves a run config, asks the backend for a command and runs it.

Nothing here is imported by ``grpo_host`` itself; torch, transformers and trl are imported
inside the functions that need them, so ``grpo-host train --print-config`` stays instant.
"""
