"""Data sources: the record a plugin returns from ``grpo_datasets()``, and the host's built-in one.

A data source yields rows: dicts with a ``prompt`` and the reference columns its rewards read
(``answer``, ...), generated procedurally or read from files, shaped by declared params (size,
seed, difficulty, ...). A run config names one as ``data.source`` with ``data.params``;
``grpo-host datasets`` lists them; ``grpo-host try-reward --dataset`` scores against their rows.
Nothing here imports anything heavy: a data source imports its generator when it draws.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from grpo_host._version import __version__
from grpo_host.errors import GrpoHostError
from grpo_host.params import Param, check_declared, resolve


@dataclass(frozen=True)
class DatasetSpec:
    """A data source.

    ``rows(**params)`` returns an iterable of dicts, each with a ``prompt`` (text or chat
    messages) and the reference ``columns`` its rewards read; it is called with every declared
    param (defaults overlaid with what the user set). ``rewards`` names the rewards that score
    its rows, shown by ``grpo-host datasets`` so a user knows what to put under ``rewards:``.
    """

    name: str
    description: str
    rows: Callable[..., Iterable[Mapping[str, Any]]]
    params: Sequence[Param] = field(default_factory=tuple)
    columns: Sequence[str] = field(default_factory=tuple)
    rewards: Sequence[str] = field(default_factory=tuple)
    # Filled in by the registry: the distribution that provided it.
    plugin: str = ""
    plugin_version: str = ""

    def resolve_params(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults overlaid with ``params``, each validated against its declared type;
        ``PluginParamError`` (kind "data source") otherwise."""
        return resolve("data source", self.name, self.params, params)

    def check_declared(self) -> list[str]:
        """Raise ``PluginParamError`` for a param declaration that cannot work; return warnings."""
        return check_declared("data source", self.name, self.params)

    def draw(self, params: Mapping[str, Any] | None = None, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """The source's rows (at most ``limit``), each checked to be a dict with a ``prompt``."""
        resolved = self.resolve_params(params)
        try:
            rows: Iterable[Any] = self.rows(**resolved)
        except GrpoHostError:
            raise
        except (TypeError, ValueError, AssertionError) as exc:
            raise GrpoHostError(
                f"data source {self.name!r} ({self.plugin or 'unknown plugin'}) refused params "
                f"{resolved}: {type(exc).__name__}: {exc}"
            ) from None
        if limit is not None:
            rows = itertools.islice(rows, limit)
        for number, row in enumerate(rows):
            if not isinstance(row, Mapping) or "prompt" not in row:
                raise GrpoHostError(
                    f"data source {self.name!r} ({self.plugin or 'unknown plugin'}) gave row {number} "
                    f"without a 'prompt': {row!r:.120}; report it to the plugin's authors"
                )
            yield dict(row)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "plugin": self.plugin,
            "version": self.plugin_version,
            "description": self.description,
            "params": [p.to_json() for p in self.params],
            "columns": ["prompt", *self.columns],
            "rewards": list(self.rewards),
        }


# -- the host's built-in data source -------------------------------------------------------------
OPERATIONS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def arithmetic_rows(
    n: int = 2000, seed: int = 0, max_operand: int = 20, operations: str = "+-"
) -> list[dict[str, str]]:
    """``n`` questions like "What is 12 + 7?" with their answers, reproducible from ``seed``; also the
    ``expression`` ("12 + 7"), the worked step ``working`` ("12 + 7 = 19") and ``near_miss`` (the
    answer plus one, "20"), from which the default run's warm-up builds its targets."""
    unknown = [op for op in operations if op not in OPERATIONS]
    if unknown or not operations:
        raise ValueError(f"data.builtin.operations: {operations!r}; use a string of {''.join(OPERATIONS)}")
    rng = random.Random(seed)
    rows = []
    for _ in range(int(n)):
        a, b, op = rng.randint(0, max_operand), rng.randint(0, max_operand), rng.choice(operations)
        answer = OPERATIONS[op](a, b)
        rows.append({"prompt": f"What is {a} {op} {b}?", "answer": str(answer), "expression": f"{a} {op} {b}",
                     "working": f"{a} {op} {b} = {answer}", "near_miss": str(answer + 1)})
    return rows


def _arithmetic(size: int, seed: int, max_operand: int, operations: str) -> list[dict[str, str]]:
    return arithmetic_rows(n=size, seed=seed, max_operand=max_operand, operations=operations)


ARITHMETIC = DatasetSpec(
    name="arithmetic",
    description='Generated questions like "What is 12 + 7?" with their answers (the embedded default\'s data).',
    rows=_arithmetic,
    params=(
        Param("size", int, 2000, "How many rows."),
        Param("seed", int, 0, "The generator's seed: the same seed gives the same rows."),
        Param("max_operand", int, 20, "The largest operand; larger is harder."),
        Param("operations", str, "+-", "The operations to draw from: any of + - *."),
    ),
    columns=("answer", "expression", "working", "near_miss"),
    rewards=("accuracy", "format"),
    plugin="grpo-host",
)


def builtin_datasets() -> list[DatasetSpec]:
    return [replace(ARITHMETIC, plugin_version=__version__)]
