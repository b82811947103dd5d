"""GRPOConfig's fields as data, so that the run config's ``grpo:`` section is checked when it is loaded.

``trl_schema.json`` (package data) lists every field of ``trl.GRPOConfig`` (with the
``TrainingArguments`` fields it inherits): its types, default and allowed choices, read from
the classes themselves, and the fields of ``transformers.Qwen2Config`` for ``model.builtin``.
Reading it costs a JSON load instead of importing torch, transformers and trl, so
``grpo-host train --print-config`` and ``train`` refuse a bad value in a fraction of a second,
before a model is built. ``RANGES`` adds the bounds that TRL and transformers check late or
assume without checking (a negative learning rate, a zero temperature, ``max_steps: -5``).

Regenerate the file after upgrading TRL: ``python -m grpo_host.trl_schema --write``;
``tests/test_trl_schema.py`` regenerates it from the installed TRL and compares.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import re
import sys
import types
import typing
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).with_name("trl_schema.json")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class Range:
    """Bounds of a number field; ``also`` lists special values outside them (``max_steps: -1``)."""

    low: float | None = None
    low_open: bool = False
    high: float | None = None
    high_open: bool = False
    also: tuple[tuple[float, str], ...] = ()

    def holds(self, value: float) -> bool:
        if any(value == special for special, _ in self.also):
            return True
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))

    def words(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {_plain(self.low)}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {_plain(self.high)}")
        text = " and ".join(parts)
        for special, meaning in self.also:
            text += f" (or {_plain(special)}: {meaning})"
        return text


# Bounds TRL and transformers rely on. Where they check at all, it is in __post_init__ (after
# torch is imported) or in the first training step; a negative learning rate is never checked.
RANGES: dict[str, Range] = {
    "learning_rate": Range(low=0),
    "temperature": Range(low=0, low_open=True),
    "top_p": Range(low=0, low_open=True, high=1),
    "top_k": Range(low=0),
    "min_p": Range(low=0, high=1),
    "repetition_penalty": Range(low=0, low_open=True),
    "max_steps": Range(low=1, also=((-1, "train for num_train_epochs instead"),)),
    "num_train_epochs": Range(low=0, low_open=True),
    "num_generations": Range(low=2),
    "num_generations_eval": Range(low=2),
    "per_device_train_batch_size": Range(low=1),
    "per_device_eval_batch_size": Range(low=1),
    "gradient_accumulation_steps": Range(low=1),
    "generation_batch_size": Range(low=1),
    "steps_per_generation": Range(low=1),
    "num_iterations": Range(low=1),
    "max_completion_length": Range(low=1),
    "beta": Range(low=0),
    "epsilon": Range(low=0),
    "epsilon_high": Range(low=0),
    "weight_decay": Range(low=0),
    "warmup_steps": Range(low=0),
    "max_grad_norm": Range(low=0),
    "adam_beta1": Range(low=0, high=1, high_open=True),
    "adam_beta2": Range(low=0, high=1, high_open=True),
    "adam_epsilon": Range(low=0),
    "logging_steps": Range(low=0, low_open=True),
    "dataloader_num_workers": Range(low=0),
}

_WORDS = {
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "str": "text",
    "list": "a list",
    "dict": "a mapping",
    "null": "null",
}


# -- reading and checking --------------------------------------------------------------------------
@cache
def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def grpo_fields() -> dict[str, dict[str, Any]]:
    return load_schema()["grpo_config"]


def builtin_model_fields() -> dict[str, dict[str, Any]]:
    return load_schema()["qwen2_config"]


def allowed_words(spec: dict[str, Any], name: str | None = None) -> str:
    """What a field takes, in words: 'a whole number >= 1 (or -1: ...)', "one of 'a', 'b'"."""
    kinds = [k for k in spec.get("types", []) if k != "null"]
    if spec.get("choices"):
        words = "one of " + ", ".join(repr(c) for c in spec["choices"])
        kinds = [k for k in kinds if k != "str"]
        if kinds:
            words += " or " + " or ".join(_WORDS.get(k, k) for k in kinds)
    elif "any" in kinds or not kinds:
        words = "any value"
    else:
        words = " or ".join(_WORDS.get(k, k) for k in kinds)
    bounds = RANGES.get(name) if name else None
    if bounds is not None:
        words += " " + bounds.words()
    if "false" in spec.get("literals", []):
        words += " or false"
    if "null" in spec.get("types", []):
        words += " (or null)"
    return words


def check_value(name: str, value: Any, spec: dict[str, Any]) -> tuple[Any, str | None]:
    """``(value as the field takes it, None)`` or ``(value, why it is refused)``.

    YAML and ``--set`` give bool, int, float, str, list, dict or None; a number written as text
    ('1e-5', '5') is taken as the number a number field means.
    """
    kinds = set(spec.get("types", []))
    if "any" in kinds:
        return value, None
    choices = spec.get("choices") or []
    if value is None:
        return (value, None) if "null" in kinds else (value, "null is not allowed")
    if isinstance(value, bool):
        if "bool" in kinds or (value is False and "false" in spec.get("literals", [])):
            return value, None
        return value, "true/false is not allowed"
    if isinstance(value, str) and not ({"int", "float"} & kinds and "str" not in kinds):
        if choices and value not in choices:
            return value, "not one of the choices"
        if "str" in kinds or value in choices:
            return value, None
        return value, "text is not allowed"
    if isinstance(value, str):  # a number field given text
        if not _NUMBER.match(value.strip()):
            return value, "not a number"
        value = float(value) if "float" in kinds else _whole(value.strip())
        if value is None:
            return value, "not a whole number"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return value, "not a finite number"
        if "float" in kinds:
            value = float(value) if isinstance(value, float) or "int" not in kinds else value
        elif "int" in kinds:
            if isinstance(value, float) and not value.is_integer():
                return value, "not a whole number"
            value = int(value)
        else:
            return value, "a number is not allowed"
        bounds = RANGES.get(name)
        if bounds is not None and not bounds.holds(value):
            return value, "out of range"
        return value, None
    if isinstance(value, list):
        return (value, None) if "list" in kinds else (value, "a list is not allowed")
    if isinstance(value, dict):
        return (value, None) if "dict" in kinds else (value, "a mapping is not allowed")
    return value, f"a {type(value).__name__} is not allowed"


def _whole(text: str) -> int | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


# -- generating (imports trl: used by --write and by the test, never at CLI start) -------------------
def generate() -> dict[str, Any]:
    """The schema, read from the installed TRL and transformers."""
    import importlib.metadata

    from transformers import Qwen2Config
    from trl import GRPOConfig

    grpo = {f.name: _field_spec(f) for f in dataclasses.fields(GRPOConfig) if not f.name.startswith("_")}
    if dataclasses.is_dataclass(Qwen2Config):
        qwen = {f.name: _field_spec(f) for f in dataclasses.fields(Qwen2Config) if not f.name.startswith("_")}
    else:  # transformers < 5: the config's fields are its __init__ parameters
        import inspect

        params = inspect.signature(Qwen2Config.__init__).parameters
        qwen = {name: {"types": ["any"]} for name in params if name not in ("self", "kwargs")}
    return {
        "generated_from": {
            "trl": importlib.metadata.version("trl"),
            "transformers": importlib.metadata.version("transformers"),
        },
        "grpo_config": dict(sorted(grpo.items())),
        "qwen2_config": dict(sorted(qwen.items())),
    }


def _field_spec(field: dataclasses.Field) -> dict[str, Any]:
    kinds: set[str] = set()
    choices: list[str] = []
    literals: list[str] = []
    _walk(field.type, kinds, choices, literals)
    meta = dict(field.metadata or {})
    if "choices" in meta:
        choices = [str(c) for c in meta["choices"]]
    spec: dict[str, Any] = {"types": sorted(kinds)}
    if choices:
        spec["choices"] = sorted(dict.fromkeys(choices))
    if literals:
        spec["literals"] = sorted(dict.fromkeys(literals))
    default = field.default
    if default is not dataclasses.MISSING and _json_plain(default):
        spec["default"] = default.value if isinstance(default, enum.Enum) else default
    return spec


def _walk(tp: Any, kinds: set[str], choices: list[str], literals: list[str]) -> None:
    origin = typing.get_origin(tp)
    if tp is type(None) or tp is None:
        kinds.add("null")
    elif origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            _walk(arg, kinds, choices, literals)
    elif origin is typing.Literal:
        for arg in typing.get_args(tp):
            if arg is False or arg is True:
                literals.append(str(arg).lower())
            elif arg is None:
                kinds.add("null")
            else:
                kinds.add(type(arg).__name__)
                choices.append(str(arg))
    elif isinstance(tp, type) and issubclass(tp, enum.Enum):
        # transformers turns the text into the enum and refuses any other value.
        kinds.add("str")
        choices.extend(str(m.value) for m in tp)
    elif tp is bool:
        kinds.add("bool")
    elif tp is int:
        kinds.add("int")
    elif tp is float:
        kinds.add("float")
    elif tp is str:
        kinds.add("str")
    elif tp in (list, tuple) or origin in (list, tuple):
        kinds.add("list")
    elif tp is dict or origin is dict:
        kinds.add("dict")
    else:
        kinds.add("any")  # a class (ParallelismConfig, ...): leave it to TRL
    # `IntervalStrategy | str`: the enum's values are the whole choice, the str only its spelling;
    # `str | list[DebugOption]`: a free text too, so the list's choices do not bind the text.


def _json_plain(value: Any) -> bool:
    if isinstance(value, enum.Enum):
        return True
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return not (isinstance(value, float) and not math.isfinite(value))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = json.dumps(generate(), indent=1, sort_keys=False) + "\n"
    if "--write" in args:
        SCHEMA_FILE.write_text(text, encoding="utf-8")
        print(f"wrote {SCHEMA_FILE}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
