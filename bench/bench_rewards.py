"""Rewards used by the runtime benchmark: one nearly free, one that burns CPU per sample."""

import grpo_host


@grpo_host.reward(name="bench-cheap")
def cheap(completion: str, target: int = 64, **columns) -> float:
    """Closeness to a target length: microseconds per sample."""
    return -abs(len(completion) - target) / target


@grpo_host.reward(name="bench-heavy")
def heavy(completion: str, rounds: int = 20_000, **columns) -> float:
    """A CPU-bound score (a hash chain): about a millisecond per sample."""
    value = 0
    for i in range(rounds):
        value = (value * 31 + i + len(completion)) % 1_000_003
    return value / 1_000_003
