"""reasoning-gym's tasks as grpo-host data sources, and their scorers as one reward.

Each row carries ``rg_source``: a small JSON object naming how it was generated (task, size,
seed, difficulty, the config params set, index). reasoning-gym generates an entry from the
seed and its index alone, so the reward regenerates the exact entry, with its metadata in
reasoning-gym's own types, instead of trusting a JSON round trip (tuples in ARC grids would
not survive one). Datasets and entries are cached per worker: a GRPO group's completions
share one entry.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache, lru_cache
from typing import Any

import grpo_host
from grpo_host import DatasetSpec, Param
from grpo_host.params import conforms
from grpo_reasoning_gym.catalog import load_catalog

PREFIX = "reasoning-gym:"
REWARD = "reasoning-gym"
DEFAULT_SIZE = 500  # reasoning-gym's own default
COMMON_PARAMS = (
    Param("size", int, DEFAULT_SIZE, "How many rows."),
    Param("seed", int, 0, "The generator's seed: the same seed gives the same rows."),
)


def dataset_specs() -> list[DatasetSpec]:
    """One data source per task in the catalogue (no reasoning-gym import)."""
    specs = []
    for task, info in load_catalog()["tasks"].items():
        params = list(COMMON_PARAMS)
        levels = info.get("difficulty_levels")
        if levels:
            params.append(Param("difficulty", int | None, None,
                                f"reasoning-gym's curriculum level, 0 (easiest) to {levels - 1}; sets the "
                                "task's ranges (params set here still win). None: the task's defaults."))
        # A task's own `difficulty` would be shadowed by the curriculum level above (draw_rows
        # takes that one): listed once, as the level.
        params += [_task_param(p) for p in info["params"] if not (levels and p["name"] == "difficulty")]
        specs.append(DatasetSpec(
            name=PREFIX + task,
            description=f"reasoning-gym {task}: {info['description']}",
            rows=_rows_for(task),
            params=tuple(params),
            columns=("answer", "rg_source"),
            rewards=(REWARD,),
        ))
    return specs


def _task_param(p: dict[str, Any]) -> Param:
    """A task's config param, typed from the catalogue's text. The task's own types (an enum, a
    config class) and defaults its annotation does not cover (upstream's ``tuple[str]`` for a
    tuple of any length, ``int`` for 0.2) are passed unchecked: reasoning-gym checks them."""
    param = Param(p["name"], p["type"], p["default"])
    if param.checked and conforms(param.default, param.type):
        return param
    return Param(p["name"], Any, p["default"], text=p["type"])


def _rows_for(task: str):
    def rows(**params: Any) -> Iterator[dict[str, Any]]:
        return draw_rows(task, **params)

    rows.__qualname__ = f"rows[{task}]"
    return rows


def draw_rows(task: str, size: int = DEFAULT_SIZE, seed: int = 0, difficulty: int | None = None,
              **config: Any) -> Iterator[dict[str, Any]]:
    defaults = {p["name"]: p["default"] for p in load_catalog()["tasks"][task]["params"]}
    # Params left at the catalogue's default are left out: reasoning-gym applies its own, in its own types.
    config = {k: v for k, v in config.items() if v != defaults.get(k)}
    source = {"task": task, "size": size, "seed": seed, "difficulty": difficulty, "config": config}
    dataset = make_dataset(json.dumps(source, sort_keys=True))
    for index in range(len(dataset)):
        entry = dataset[index]
        answer = entry.get("answer")
        yield {
            "prompt": entry["question"],
            "answer": None if answer is None else str(answer),
            "rg_source": json.dumps({**source, "index": index}, sort_keys=True),
        }


@lru_cache(maxsize=64)
def make_dataset(source_json: str) -> Any:
    """The reasoning-gym dataset an ``rg_source`` (without its index) describes."""
    import reasoning_gym
    from reasoning_gym.factory import CURRICULA

    source = json.loads(source_json)
    task, config = source["task"], dict(source.get("config") or {})
    base = {"size": source["size"], "seed": source["seed"]}
    if source.get("difficulty") is not None:
        if task not in CURRICULA:
            raise ValueError(f"reasoning-gym task {task!r} has no difficulty levels; leave difficulty out")
        import dataclasses

        curriculum = CURRICULA[task]()
        curriculum.set_global_level(int(source["difficulty"]))
        base = dataclasses.asdict(curriculum.generate_configuration(base))
    return reasoning_gym.create_dataset(task, **{**base, **config})


@lru_cache(maxsize=4096)
def _entry(source_json: str) -> dict[str, Any]:
    source = json.loads(source_json)
    index = source.pop("index")
    return make_dataset(json.dumps(source, sort_keys=True))[index]


@cache
def _scorer(task: str) -> Any:
    import reasoning_gym

    return reasoning_gym.get_score_answer_fn(task)


@grpo_host.reward(name=REWARD, timeout=20.0, score_range=(0.0, 1.0))
class ReasoningGymScore:
    """reasoning-gym's own scorer for the row's task, on the answer in <answer> tags.

    Reads the ``rg_source`` column that the ``reasoning-gym:<task>`` data sources give each row,
    regenerates the exact entry, and calls the task's ``score_answer(answer, entry)`` (1.0 right,
    0.0 wrong, partial credit where the task defines it). ``answer_tag`` names the tag the
    answer is read from (the last one wins, as reasoning-gym's ``extract_answer`` does); an
    empty ``answer_tag`` scores the whole completion.
    """

    def __init__(self, answer_tag: str = "answer"):
        import reasoning_gym  # noqa: F401 - seconds to import: here, at build, not in a sample's budget

        self.answer_tag = answer_tag

    def score(self, completion: str, rg_source: Any, **columns: Any) -> grpo_host.Score:
        from reasoning_gym.utils import extract_answer

        key = rg_source if isinstance(rg_source, str) else json.dumps(rg_source, sort_keys=True)
        try:
            task = json.loads(key)["task"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ValueError(f"rg_source must be the JSON a reasoning-gym data source gives each row, got {key[:80]!r}")
        entry = _entry(key)
        answer = extract_answer(completion, tag_name=self.answer_tag) if self.answer_tag else completion.strip()
        value = float(_scorer(task)(answer, entry))
        return grpo_host.Score(value, task=task, extracted=answer, gold=entry.get("answer"))
