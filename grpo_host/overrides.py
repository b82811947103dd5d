"""``KEY=VALUE`` overrides: values read as YAML scalars, dotted keys turned into nested dicts.

One way for every place that takes overrides: ``--set`` on the command line (``train``,
``launch``, ``try-reward``, ``datasets``) and a SageMaker job's hyperparameters
(``grpo_host.sagemaker.job_env``). Below the config and the CLI, so both can use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from grpo_host.errors import GrpoHostError


def parse_value(text: str) -> Any:
    """`--set` values are YAML scalars: 3 is an int, 0.5 a float, true a bool, [a, b] a list."""
    import yaml

    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text
    if isinstance(value, dict) and not text.lstrip().startswith("{"):
        return text  # `Q: {question}` is a template, not a mapping; mappings are written {a: 1}
    if isinstance(value, str):
        # YAML 1.1 reads 1e-5 (no dot) as a string; a learning rate is meant as a number.
        try:
            return float(value) if value.strip().lower() not in ("nan", "inf", "-inf", "infinity") else value
        except ValueError:
            return value
    return value


def set_dotted(tree: dict[str, Any], key: str, value: Any, *, replace: bool = False) -> None:
    """``tree["a"]["b"] = value`` for the key ``a.b``, making the dicts on the way.

    A part of the key that already holds a value (not a dict) raises ``ValueError`` naming
    it, unless ``replace``: then the dict takes its place (a later, more specific setting wins).
    """
    node = tree
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            if not replace:
                raise ValueError(part)
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def parse_sets(items: Sequence[str], option: str = "--set") -> dict[str, Any]:
    """`a.b=1` pairs -> a nested dict `{"a": {"b": 1}}`."""
    tree: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise GrpoHostError(f"{option} expects KEY=VALUE (dotted keys allowed), got {item!r}")
        try:
            set_dotted(tree, key.strip(), parse_value(raw))
        except ValueError as exc:
            raise GrpoHostError(f"{option} {item!r}: {str(exc)!r} was already given a value") from None
    return tree
