"""Golden tests for rewards: the golden-file format, the harness that scores golden cases,
conformance checks and reward-hacking probes through the reward runtime, and the pytest plugin.

Importing this package costs nothing (the pytest plugin lives under it); the names below load
on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from grpo_host._lazy import lazy_getattr

_LAZY = {
    "GoldenCase": "grpo_host.golden.loader",
    "GoldenFile": "grpo_host.golden.loader",
    "GoldenFileError": "grpo_host.golden.loader",
    "load_golden_file": "grpo_host.golden.loader",
    "find_golden_file": "grpo_host.golden.loader",
    "load_golden_for": "grpo_host.golden.loader",
    "run_golden_case": "grpo_host.golden.harness",
    "RewardHarness": "grpo_host.golden.harness",
    "CheckResult": "grpo_host.golden.harness",
    "GoldenResult": "grpo_host.golden.harness",
    "PROBE_NAMES": "grpo_host.golden.probes",
}

__all__ = [  # noqa: F822 - the lazy names resolve through __getattr__
    "GoldenCase", "GoldenFile", "GoldenFileError", "load_golden_file", "find_golden_file", "load_golden_for",
    "run_golden_case", "RewardHarness", "CheckResult", "GoldenResult", "PROBE_NAMES",
]


__getattr__ = lazy_getattr('grpo_host.golden', _LAZY, globals())


if TYPE_CHECKING:  # pragma: no cover
    from grpo_host.golden.harness import CheckResult, GoldenResult, RewardHarness, run_golden_case
    from grpo_host.golden.loader import (
        GoldenCase,
        GoldenFile,
        GoldenFileError,
        find_golden_file,
        load_golden_file,
        load_golden_for,
    )
    from grpo_host.golden.probes import PROBE_NAMES
