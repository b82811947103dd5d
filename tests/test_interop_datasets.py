"""Data sources: the `grpo_datasets` hook, the registry's rules, `grpo-host datasets`,
`try-reward --dataset`, and a run config naming one (`data.source` + `data.params`)."""

from __future__ import annotations

import json
import sys

import pytest

from grpo_host.config import DataSection
from grpo_host.datasets import DatasetSpec
from grpo_host.errors import (
    GrpoHostError,
    NameConflictError,
    PluginParamError,
    RewardParamError,
    UnknownNameError,
)
from grpo_host.plugins.manager import PluginManager

from .conftest import run_cli, write_distribution

SOURCE = """
    import grpo_host
    from grpo_host import DatasetSpec, Param

    def squares(size, seed, difficulty):
        for i in range(size):
            n = seed + i * (difficulty + 1)
            yield {{"prompt": f"What is {{n}} squared?", "answer": str(n * n)}}

    @grpo_host.reward(name="ends-with-answer")
    def ends_with_answer(completion: str, answer: str, **columns) -> float:
        return 1.0 if completion.strip().endswith(answer) else 0.0

    @grpo_host.hookimpl
    def grpo_datasets():
        return [DatasetSpec(
            name="{name}", description="Squares of n.", rows=squares,
            params=(Param("size", "int", 4), Param("seed", "int", 0), Param("difficulty", "int", 0)),
            columns=("answer",), rewards=("ends-with-answer",),
        )]
"""


@pytest.fixture
def squares(plugin_dir):
    write_distribution(plugin_dir, "grpo-data-squares", {"squares_plugin": SOURCE.format(name="squares")},
                       {"squares": "squares_plugin"}, "2.0.0")
    return plugin_dir


def test_plugin_data_source_is_registered_and_listed(squares):
    manager = PluginManager()
    spec = manager.get_dataset("squares")
    assert (spec.plugin, spec.plugin_version) == ("grpo-data-squares", "2.0.0")
    record = next(p for p in manager.plugins if p.name == "grpo-data-squares")
    assert record.datasets == ["squares"] and record.rewards == ["ends-with-answer"]
    assert "arithmetic" in manager.datasets  # the host's own
    listing = run_cli("datasets", "--json")
    assert listing.returncode == 0, listing.stderr
    rows = {d["name"]: d for d in json.loads(listing.stdout)["datasets"]}
    assert rows["squares"]["params"] == [
        {"name": "size", "type": "int", "default": 4, "help": ""},
        {"name": "seed", "type": "int", "default": 0, "help": ""},
        {"name": "difficulty", "type": "int", "default": 0, "help": ""},
    ]
    assert rows["squares"]["columns"] == ["prompt", "answer"] and rows["squares"]["rewards"] == ["ends-with-answer"]
    assert rows["arithmetic"]["plugin"] == "grpo-host"
    table = run_cli("datasets", "squar")
    assert table.returncode == 0 and "squares" in table.stdout and "arithmetic" not in table.stdout
    plugins = {p["name"]: p for p in json.loads(run_cli("plugins", "--json").stdout)["plugins"]}
    assert plugins["grpo-data-squares"]["datasets"] == ["squares"]


def test_draw_checks_params_and_rows():
    spec = DatasetSpec("t", "", rows=lambda size, flag: ({"prompt": str(i), "flag": flag} for i in range(size)),
                       params=(_param("size", "int", 3), _param("flag", "bool | None", None)))
    assert [r["prompt"] for r in spec.draw()] == ["0", "1", "2"]
    assert len(list(spec.draw({"size": 100}, limit=5))) == 5
    with pytest.raises(PluginParamError, match="data source 't' has no param 'sise'.*did you mean 'size'") as info:
        list(spec.draw({"sise": 2}))
    assert info.value.kind == "data source" and not isinstance(info.value, RewardParamError)
    with pytest.raises(PluginParamError, match="data source 't' param 'size': 'three' is not a valid int"):
        list(spec.draw({"size": "three"}))
    with pytest.raises(PluginParamError, match="True is not a valid int"):
        list(spec.draw({"size": True}))
    assert list(spec.draw({"size": 1, "flag": None}))[0]["flag"] is None
    broken = DatasetSpec("b", "", rows=lambda: [{"question": "no prompt"}], plugin="grpo-data-b")
    with pytest.raises(GrpoHostError, match=r"'b' \(grpo-data-b\) gave row 0 without a 'prompt'"):
        list(broken.draw())


def _param(name, type_, default):
    from grpo_host import Param

    return Param(name, type_, default)


def test_two_claims_on_one_name_conflict_and_unknown_names_suggest(plugin_dir):
    write_distribution(plugin_dir / "a", "grpo-data-a", {"data_a": SOURCE.format(name="arithmetic")}, {"a": "data_a"})
    sys.path.insert(0, str(plugin_dir / "a"))
    try:
        manager = PluginManager()
    finally:
        sys.path.remove(str(plugin_dir / "a"))
    with pytest.raises(NameConflictError, match="grpo-host and grpo-data-a"):
        manager.get_dataset("arithmetic")
    with pytest.raises(UnknownNameError, match="did you mean 'arithmetic'"):
        PluginManager(load_entry_points=False).get_dataset("arithmetc")


def test_a_hook_returning_garbage_marks_the_plugin_broken(plugin_dir):
    source = "import grpo_host\n\n@grpo_host.hookimpl\ndef grpo_datasets():\n    return ['not a spec']\n"
    write_distribution(plugin_dir, "grpo-data-junk", {"data_junk": source}, {"junk": "data_junk"})
    record = next(p for p in PluginManager().plugins if p.name == "grpo-data-junk")
    assert record.status == "broken" and "not a grpo_host.datasets.DatasetSpec" in record.error


def test_try_reward_draws_from_a_data_source(squares):
    done = run_cli("try-reward", "ends-with-answer", "--dataset", "squares", "--n", "3", "--set", "dataset.seed=2",
                   "--json")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == 3 and all(r["total"] == 0.0 for r in rows)  # '<answer>4</answer>' ends with '>'
    done = run_cli("try-reward", "ends-with-answer", "--dataset", "squares", "--n", "2",
                   "--completion", "I get {answer}", "--set", "dataset.difficulty=1", "--json")
    assert [json.loads(line)["total"] for line in done.stdout.splitlines()] == [1.0, 1.0]
    done = run_cli("try-reward", "ends-with-answer", "--dataset", "squares", "--set", "dataset.sise=1")
    assert done.returncode == 2 and "did you mean 'size'" in done.stderr
    done = run_cli("try-reward", "ends-with-answer", "--dataset", "squares", "--completion", "x", "--column", "a=1")
    assert done.returncode == 2 and "leave out --input, --prompt and --column" in done.stderr


def test_try_reward_on_the_builtin_arithmetic(squares):
    done = run_cli("try-reward", "ends-with-answer", "--dataset", "arithmetic", "--n", "4",
                   "--completion", "= {answer}", "--json")
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["total"] for line in done.stdout.splitlines()] == [1.0] * 4


def test_run_config_names_a_data_source(squares):
    from grpo_host.plugins.manager import get_plugin_manager
    from grpo_host.training.data import _load

    get_plugin_manager(refresh=True)
    try:
        data = _load(DataSection(source="squares", params={"size": 5, "seed": 1}), "train")
        assert data["prompt"][:2] == ["What is 1 squared?", "What is 2 squared?"] and data["answer"][4] == "25"
        builtin = _load(DataSection(source="arithmetic", params={"size": 3}), "train")
        assert len(builtin) == 3 and set(builtin.column_names) == {"prompt", "answer", "expression", "working", "near_miss"}
        with pytest.raises(GrpoHostError, match="data.source 'squares'.*no param 'sise'"):
            _load(DataSection(source="squares", params={"sise": 5}), "train")
        with pytest.raises(GrpoHostError, match="data.params is for a data source"):
            _load(DataSection(source="rows.jsonl", params={"size": 5}), "train")
    finally:
        get_plugin_manager(refresh=True)


def test_train_refuses_a_misspelled_data_source_before_launch(tmp_path):
    done = run_cli("train", "--set", "data.source=arithmetc", "--output-dir", str(tmp_path), "--print-command")
    assert done.returncode == 2, done.stdout
    assert "no data source 'arithmetc' (did you mean 'arithmetic'?)" in done.stderr
    done = run_cli("train", "--set", "data.source=arithmetic", "--set", "data.params.size=50",
                   "--output-dir", str(tmp_path), "--print-command")
    assert done.returncode == 0, done.stderr
