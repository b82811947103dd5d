"""The GRPOConfig schema shipped with the host matches the installed TRL, and its ranges hold.

The schema lets the run config's ``grpo:`` section be checked without importing torch; if TRL
is upgraded and the schema is not regenerated (``python -m grpo_host.trl_schema --write``),
``test_schema_matches_the_installed_trl`` fails and says how to fix it.
"""

from __future__ import annotations

import json

import pytest

from grpo_host import trl_schema
from grpo_host.trl_schema import RANGES, check_value, grpo_fields


@pytest.mark.slow  # imports trl and transformers
def test_schema_matches_the_installed_trl():
    fresh = json.loads(json.dumps(trl_schema.generate()))
    shipped = trl_schema.load_schema()
    hint = "regenerate it: python -m grpo_host.trl_schema --write"
    assert fresh["generated_from"] == shipped["generated_from"], hint
    assert fresh == shipped, hint


def test_ranges_name_real_fields_and_hold_for_trl_defaults():
    fields = grpo_fields()
    for name, bounds in RANGES.items():
        assert name in fields, f"RANGES.{name} is not a GRPOConfig field"
        default = fields[name].get("default")
        if isinstance(default, (int, float)):
            assert bounds.holds(default), f"TRL's own default {name}={default} is outside {bounds.words()}"
            assert check_value(name, default, fields[name])[1] is None, name


def test_the_schema_knows_the_fields_and_their_types():
    fields = grpo_fields()
    assert fields["max_steps"]["types"] == ["int"]
    assert fields["learning_rate"]["types"] == ["float"]
    assert (
        "cosine" in fields["lr_scheduler_type"]["choices"]
    )  # an enum | str field: its values are the choices
    assert {"null", "str", "list"} <= set(fields["report_to"]["types"])
    assert "hidden_size" in trl_schema.builtin_model_fields()


@pytest.mark.parametrize(
    "name, value, taken, why",
    [
        ("max_steps", 5, 5, None),
        ("max_steps", "5", 5, None),
        ("max_steps", 5.0, 5, None),
        ("max_steps", 5.5, 5.5, "not a whole number"),
        ("max_steps", -1, -1, None),
        ("max_steps", -5, -5, "out of range"),
        ("max_steps", 0, 0, "out of range"),
        ("max_steps", "", "", "not a number"),
        ("max_steps", True, True, "true/false is not allowed"),
        ("max_steps", None, None, "null is not allowed"),
        ("learning_rate", "1e-5", 1e-5, None),
        ("learning_rate", 1, 1.0, None),
        ("learning_rate", float("nan"), None, "not a finite number"),
        ("temperature", 0.0, 0.0, "out of range"),
        ("top_p", 1.5, 1.5, "out of range"),
        ("lr_scheduler_type", "cosine", "cosine", None),
        ("lr_scheduler_type", "cosin", "cosin", "not one of the choices"),
        ("report_to", ["none"], ["none"], None),
        ("report_to", None, None, None),
        ("max_completion_length", None, None, None),
        ("max_completion_length", {"a": 1}, {"a": 1}, "a mapping is not allowed"),
    ],
)
def test_check_value(name, value, taken, why):
    got, problem = check_value(name, value, grpo_fields()[name])
    assert problem == why
    if taken is not None:
        assert got == taken and type(got) is type(taken)


def test_allowed_words():
    fields = grpo_fields()
    assert trl_schema.allowed_words(fields["max_steps"], "max_steps") == (
        "a whole number >= 1 (or -1: train for num_train_epochs instead)"
    )
    assert trl_schema.allowed_words(fields["top_p"], "top_p") == "a number > 0 and <= 1"
    assert trl_schema.allowed_words(fields["max_completion_length"], "max_completion_length") == (
        "a whole number >= 1 (or null)"
    )
