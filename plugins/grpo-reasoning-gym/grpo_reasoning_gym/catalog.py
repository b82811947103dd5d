"""The catalogue of reasoning-gym's tasks: names, descriptions, config params, difficulty levels.

Importing reasoning-gym takes seconds, and ``grpo_datasets()`` runs for every ``grpo-host``
command, so the plugin describes its tasks from ``catalog.json``, written from the installed
reasoning-gym by ``python -m grpo_reasoning_gym.catalog`` (rerun it after upgrading
reasoning-gym; a test checks the file matches the installed version).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
import typing
from functools import cache
from pathlib import Path
from typing import Any

CATALOG_PATH = Path(__file__).with_name("catalog.json")
# Tasks that cannot stand alone: `composite` mixes other tasks and needs their specs as its config.
SKIPPED = {"composite": "mixes other tasks; train on each task's own data source instead"}
COMMON = ("size", "seed")  # every task's; the data source declares them itself


@cache
def load_catalog() -> dict[str, Any]:
    return json.loads(CATALOG_PATH.read_text(encoding="utf-8"))


def build_catalog() -> dict[str, Any]:
    """Describe every task of the installed reasoning-gym (imports it: seconds)."""
    from importlib import metadata

    from reasoning_gym.factory import CURRICULA, DATASETS

    tasks = {}
    for name in sorted(DATASETS):
        if name in SKIPPED:
            continue
        dataset_cls, config_cls = DATASETS[name]
        hints = _hints(config_cls)
        params = []
        for f in dataclasses.fields(config_cls):
            if f.name in COMMON or not f.init:
                continue
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            params.append({"name": f.name, "type": _type_text(hints.get(f.name, f.type)), "default": _plain(default)})
        levels = None
        if name in CURRICULA:
            attributes = CURRICULA[name]().attributes
            levels = max((len(a.levels) for a in attributes.values()), default=1)
        tasks[name] = {"description": _first_line(dataset_cls) or _first_line(config_cls) or name,
                       "params": params, "difficulty_levels": levels}
    return {"reasoning_gym_version": metadata.version("reasoning-gym"), "tasks": tasks}


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - an unresolvable annotation is shown as written
        return {}


def _type_text(hint: Any) -> str:
    if isinstance(hint, str):
        return hint
    if hint in (int, float, str, bool):
        return hint.__name__
    if hint is type(None):
        return "None"
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " | ".join(_type_text(a) for a in typing.get_args(hint))
    if isinstance(hint, type):  # tuple, datetime.time, an enum or a config class of the task
        return hint.__name__
    return str(hint).replace("typing.", "")


def _plain(value: Any) -> Any:
    """A default as JSON: tuples become lists, anything else unusual its repr."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _first_line(obj: Any) -> str:
    doc = (obj.__doc__ or "").strip()
    return doc.splitlines()[0].strip().rstrip(".") + "." if doc else ""


def main() -> None:
    catalog = build_catalog()
    CATALOG_PATH.write_text(json.dumps(catalog, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {CATALOG_PATH}: {len(catalog['tasks'])} tasks of reasoning-gym "
          f"{catalog['reasoning_gym_version']}", file=sys.stderr)


if __name__ == "__main__":
    main()
