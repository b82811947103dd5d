"""`--set KEY=VALUE` parsing shared by `train` and `try-reward`."""

import pytest

from grpo_host.cli.common import parse_sets
from grpo_host.errors import GrpoHostError


def test_dotted_keys_nest_and_values_are_typed():
    tree = parse_sets(["grpo.learning_rate=1e-5", "grpo.beta=0.04", "model.id=Qwen/Qwen2.5-0.5B",
                       "grpo.num_generations=8", "peft.enabled=true", "rewards=[format, accuracy]", "x.name=nan"])
    assert tree == {
        "grpo": {"learning_rate": 1e-5, "beta": 0.04, "num_generations": 8},
        "model": {"id": "Qwen/Qwen2.5-0.5B"}, "peft": {"enabled": True}, "rewards": ["format", "accuracy"],
        "x": {"name": "nan"},
    }


@pytest.mark.parametrize("bad", ["novalue", "=3", "a=1 a.b=2"])
def test_malformed_pairs_say_what_is_expected(bad):
    with pytest.raises(GrpoHostError, match="KEY=VALUE|already given"):
        parse_sets(bad.split(" "))
