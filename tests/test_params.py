"""One param model for every kind of plugin: ``grpo_host.Param`` (a real annotation, or the text
form older plugins wrote), one validation (pydantic), one error that names the kind.

Happy paths for a reward, a backend and a data source; then hostile declarations (a type text
that is no type, a default not of its own type, a name twice) refused at registration with the
plugin named, and hostile values (wrong types from YAML and ``--set``, huge and deeply nested
ones) refused before anything launches, in messages that name kind, plugin, param and type.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any, Literal

import pytest

import grpo_host
from grpo_host.backends import BackendParam, BackendSpec
from grpo_host.datasets import DatasetSpec
from grpo_host.errors import BrokenPluginError, PluginParamError, RewardParamError
from grpo_host.params import Param, annotation_from_text, conforms, resolve, type_text, validate
from grpo_host.plugins.manager import PluginManager
from tests.conftest import run_cli, write_distribution


def backend(*params: Param, name: str = "probe") -> BackendSpec:
    return BackendSpec(name=name, description="", build_command=lambda argv, params, env: list(argv), params=params)


# -- the model ---------------------------------------------------------------------------------
def test_the_public_names_are_one_record():
    assert grpo_host.Param is Param is BackendParam
    assert "Param" in grpo_host.__all__
    from grpo_host.rewards.spec import ParamInfo

    assert ParamInfo is Param


@pytest.mark.parametrize(
    ("annotation", "text"),
    [
        (int, "int"),
        (int | None, "int | None"),
        (int | Literal["auto"], "int | 'auto'"),
        (Literal["auto", "no", "bf16"], "'auto' | 'no' | 'bf16'"),
        (list[str], "list[str]"),
        (list[str] | Literal["auto"], "list[str] | 'auto'"),
        (dict[str, float], "dict[str, float]"),
        (tuple[str, ...], "tuple[str, ...]"),
        (Any, "Any"),
    ],
)
def test_a_type_is_shown_as_text_and_that_text_reads_back_as_the_same_type(annotation, text):
    assert type_text(annotation) == text
    assert Param("p", annotation, None).text == text
    read = annotation_from_text(text)
    assert type_text(read) == text
    declared = Param("p", text, None)  # the text form older plugins use
    assert declared.checked and declared.text == text and type_text(declared.type) == text


def test_text_types_are_checked_like_real_ones():
    """A third-party backend still declaring ``"int"`` gets its values validated and typed."""
    old = backend(Param("workers", "int", 1), Param("mode", "'fast' | 'slow'", "fast"),
                  Param("tags", "list[str] | None", None), Param("rate", "float", 0.5))
    assert old.check_params({"workers": "8", "rate": 2, "tags": ["a"]}) == {
        "workers": 8, "mode": "fast", "tags": ["a"], "rate": 2.0}
    with pytest.raises(PluginParamError) as info:
        old.check_params({"mode": "medium"})
    assert "backend 'probe' param 'mode': 'medium' is not a valid 'fast' | 'slow'" in str(info.value)
    assert annotation_from_text("typing.Optional[typing.Literal['a', 1]]") == Literal["a", 1] | None
    assert annotation_from_text("Sequence[tuple[int, str]]") is not None


# -- happy paths, one per kind -------------------------------------------------------------------
def test_a_backend_gets_typed_params_with_its_defaults():
    spec = backend(Param("workers", int | Literal["auto"], "auto", "How many."), Param("verbose", bool, False))
    assert spec.check_params({}) == {"workers": "auto", "verbose": False}
    assert spec.check_params({"workers": 4, "verbose": "true"}) == {"workers": 4, "verbose": True}
    assert spec.params[0].to_json() == {"name": "workers", "type": "int | 'auto'", "default": "auto",
                                        "help": "How many."}


def test_a_data_source_draws_with_validated_params():
    seen = []

    def rows(size, level):
        seen.append((size, level))
        return [{"prompt": str(i)} for i in range(size)]

    spec = DatasetSpec("squares", "", rows=rows, params=(Param("size", int, 2), Param("level", float | None, None)))
    assert len(list(spec.draw({"size": "3", "level": 1}))) == 3
    assert seen == [(3, 1.0)] and isinstance(seen[0][1], float)


def test_a_reward_validates_its_params_with_its_own_hints_and_raises_the_reward_kind():
    @grpo_host.reward("scaled")
    def scaled(completion: str, scale: float = 1.0, unit: Literal["chars", "words"] = "chars") -> float:
        return scale

    spec = scaled.__grpo_reward__
    assert spec.resolve_params({"scale": "2"}) == {"scale": 2.0, "unit": "chars"}
    assert spec.to_json()["params"] == [{"name": "scale", "type": "float", "default": 1.0},
                                        {"name": "unit", "type": "Literal['chars', 'words']", "default": "chars"}]
    with pytest.raises(RewardParamError, match="reward 'scaled' param 'unit': 'lines' is not a valid") as info:
        spec.resolve_params({"unit": "lines"})
    # Code written for rewards keeps catching RewardParamError; it is the reward kind of the one error.
    assert isinstance(info.value, PluginParamError)
    assert (info.value.kind, info.value.owner, info.value.param) == ("reward", "scaled", "unit")
    with pytest.raises(RewardParamError, match="has no param 'scal'.*timeout.*did you mean 'scale'"):
        spec.resolve_params({"scal": 2})


def test_backend_and_data_source_errors_name_their_kind_and_are_not_reward_errors():
    for kind, check in (("backend", backend(Param("n", int, 1), name="b").check_params),
                        ("data source", DatasetSpec("d", "", rows=list, params=(Param("n", int, 1),)).resolve_params)):
        with pytest.raises(PluginParamError) as info:
            check({"n": "many"})
        assert not isinstance(info.value, RewardParamError)
        assert info.value.kind == kind and info.value.param == "n"
        assert str(info.value).startswith(f"{kind} '{info.value.owner}' param 'n': 'many' is not a valid int")


# -- hostile declarations: refused at registration, the plugin named ------------------------------
class _Plugin:
    def __init__(self, backends=(), datasets=()):
        self._backends, self._datasets = list(backends), list(datasets)

    @grpo_host.hookimpl
    def grpo_backends(self):
        return self._backends

    @grpo_host.hookimpl
    def grpo_datasets(self):
        return self._datasets


def _manager(plugin: _Plugin) -> PluginManager:
    manager = PluginManager(load_entry_points=False)
    manager.register(plugin, "grpo-backend-hostile", "1.2")
    return manager


@pytest.mark.parametrize(
    ("param", "needle"),
    [
        (Param("n", int, "eight"), "param 'n': its default 'eight' is not a int"),
        (Param("n", "int", None), "its default None is not a int"),
        (Param("n", "list[str]", ["a", 2]), "its default ['a', 2] is not a list[str]"),
        (Param("n", bool, 0), "its default 0 is not a bool"),
    ],
)
def test_a_declaration_that_cannot_work_is_refused_naming_the_plugin(param, needle, capsys):
    good = backend(Param("n", int, 1), name="fine")
    manager = _manager(_Plugin(backends=[backend(param, name="bad"), good]))
    assert "bad" not in manager.backends and "fine" in manager.backends  # the plugin's other backend stays
    warned = capsys.readouterr().err
    assert "grpo-backend-hostile 1.2: backend 'bad' not registered" in warned and needle in warned
    with pytest.raises(BrokenPluginError, match="backend 'bad' is not available") as info:
        manager.get_backend("bad")
    assert needle in str(info.value) and "plugin grpo-backend-hostile 1.2" in str(info.value)


def test_a_param_declared_twice_or_not_as_a_param_is_refused():
    manager = _manager(_Plugin(datasets=[
        DatasetSpec("twice", "", rows=list, params=(Param("n", int, 1), Param("n", int, 2))),
        DatasetSpec("tuple", "", rows=list, params=(("n", "int", 1),)),  # type: ignore[arg-type]
    ]))
    assert "declared twice" in manager.refused[("dataset", "twice")]
    assert "declared as tuple, not a grpo_host.Param" in manager.refused[("dataset", "tuple")]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("BoardOptions", "its type text 'BoardOptions' names 'BoardOptions', a type the host does not know"),
        ("int |", "its type text 'int |' does not parse"),
        ("HOST:PORT", "its type text 'HOST:PORT' does not parse"),
        ("int[str]", "its type text 'int[str]' subscripts int, which takes no [...]"),
        ("__import__('os').system('false')", "its type text \"__import__('os').system('false')\" is not a type"),
        ("int | f(x)", "its type text 'int | f(x)' is not a type ('f(x)' is not one)"),
        ("int >= 1", "its type text 'int >= 1' is not a type"),
    ],
)
def test_a_type_text_the_host_cannot_read_is_shown_as_written_and_passed_unchecked_with_a_warning(
        text, needle, capsys):
    """Types were free text once: such a plugin keeps working, and its author is told what to write."""
    sentinel = object()
    manager = _manager(_Plugin(datasets=[DatasetSpec("odd", "", rows=list, params=(Param("shape", text, 7),))]))
    assert "odd" in manager.datasets
    warned = capsys.readouterr().err
    assert f"grpo-backend-hostile 1.2: data source 'odd' param 'shape': {needle}" in warned.replace("\n", " ")
    assert "passed unchecked; declare a Python type" in warned
    spec = manager.get_dataset("odd")
    assert spec.params[0].to_json() == {"name": "shape", "type": text, "default": 7, "help": ""}
    assert not spec.params[0].checked
    assert spec.resolve_params({"shape": sentinel}) == {"shape": sentinel}


def test_a_type_text_is_read_never_run(tmp_path):
    marker = tmp_path / "ran"
    param = Param("n", f"__import__('pathlib').Path({str(marker)!r}).touch() or int", 1)
    assert not marker.exists() and not param.checked and param.type is Any


# -- hostile values ------------------------------------------------------------------------------
def test_a_bool_is_not_a_number_and_a_fraction_is_not_an_int():
    for value, needle in ((True, "True is not a valid int | 'auto' (a true/false"),
                          (2.5, "2.5 is not a valid int | 'auto' (Input should be a valid integer, got a number "
                                "with a fractional part)")):
        with pytest.raises(PluginParamError) as info:
            validate("backend", "accelerate", "num_processes", value, int | Literal["auto"])
        assert needle in str(info.value)
    assert validate("backend", "b", "flag", True, bool | Literal["auto"]) is True


def test_huge_and_deeply_nested_values_get_a_short_error_quickly():
    deep: list = []
    node = deep
    for _ in range(100_000):
        node.append([])
        node = node[0]
    start = time.perf_counter()
    cases = [("9" * 1_000_000, int), (deep, list[str]), (deep, dict[str, int]), (["x"] * 200_000 + [1], list[str]),
             ({str(i): i for i in range(100_000)} | {"k": "v"}, dict[str, int])]
    for value, annotation in cases:
        with pytest.raises(PluginParamError) as info:
            validate("data source", "d", "p", value, annotation)
        assert len(str(info.value)) < 400, str(info.value)[:400]
        assert str(info.value).startswith("data source 'd' param 'p': ")
    assert "at [200000]: Input should be a valid string" in str(
        pytest.raises(PluginParamError, validate, "data source", "d", "p", ["x"] * 200_000 + [1], list[str]).value)
    assert validate("data source", "d", "p", deep, Any) is deep  # unchecked: passed as given
    assert len(validate("data source", "d", "p", list(range(200_000)), list[int])) == 200_000
    assert time.perf_counter() - start < 30  # generous: a loaded 2-core machine; pydantic takes ~1 s here


def test_conforms_reads_json_shapes():
    assert conforms([1, 2], tuple[int, ...]) and conforms(1, float) and not conforms(True, int)
    assert conforms({"a": [1]}, dict[str, list[int]]) and not conforms({"a": ["x"]}, dict[str, list[int]])
    assert not conforms("abc", list[str]) and conforms(None, int | None) and not conforms(1, Literal[True])


def test_resolve_lists_what_it_knows_when_a_name_is_wrong():
    with pytest.raises(PluginParamError, match=r"backend 'b' has no param 'nmu'; its params: num \(did you mean 'num'\?\)"):
        resolve("backend", "b", [Param("num", int, 1)], {"nmu": 2})


# -- through the CLI, as a user meets them -------------------------------------------------------
PROBE = '''
import pathlib
import grpo_host
from grpo_host import Param
from grpo_host.backends import BackendSpec

def build(argv, params, env):
    pathlib.Path(params["marker"]).write_text(repr(params["workers"]))
    return ["true"]

@grpo_host.hookimpl
def grpo_backends():
    return [BackendSpec("probe", "writes a marker", build,
                        params=(Param("workers", int, 1), Param("marker", str, "marker.txt")))]
'''


def test_a_wrong_backend_param_from_set_or_yaml_is_refused_before_anything_launches(plugin_dir, tmp_path):
    write_distribution(plugin_dir / "probe", "grpo-backend-probe", {"probe_backend": PROBE}, {"probe": "probe_backend"})
    env = {"PYTHONPATH": f"{plugin_dir / 'probe'}:{sys.path[0]}"}
    marker = tmp_path / "marker.txt"
    done = run_cli("train", "--backend", "probe", "--output-dir", str(tmp_path / "run"), "--set",
                   "backend.params.workers=eight", "--set", f"backend.params.marker={marker}", env=env)
    assert done.returncode == 2, done.stderr
    assert "backend 'probe' param 'workers': 'eight' is not a valid int" in done.stderr
    assert not marker.exists()  # build_command never ran
    config = tmp_path / "run.yaml"
    config.write_text("rewards: [accuracy]\nbackend:\n  name: accelerate\n  params:\n    num_processes: [8]\n")
    done = run_cli("train", str(config), "--output-dir", str(tmp_path / "run2"), "--print-command")
    assert done.returncode == 2 and done.stdout == ""
    assert "backend 'accelerate' param 'num_processes': [8] is not a valid int | 'auto'" in done.stderr
    config.write_text("rewards: [accuracy]\nbackend:\n  name: accelerate\n  params:\n    num_processes: '1'\n    cpu: true\n")
    done = run_cli("train", str(config), "--output-dir", str(tmp_path / "run3"), "--print-command")
    assert done.returncode == 0, done.stderr  # "1" from YAML is the int 1: one plain process
    assert "accelerate.commands.launch" not in done.stdout and "grpo_host.training.worker" in done.stdout


def test_a_wrong_data_source_param_is_refused_by_try_reward_and_train(tmp_path):
    done = run_cli("try-reward", "accuracy", "--dataset", "arithmetic", "--set", "dataset.size=lots", "--n", "2")
    assert done.returncode == 2
    assert "data source 'arithmetic' param 'size': 'lots' is not a valid int" in done.stderr
    done = run_cli("train", "--output-dir", str(tmp_path / "run"), "--print-command", "--set",
                   "data.source=arithmetic", "--set", "data.params.max_operand=[1]")
    assert done.returncode == 2 and done.stdout == ""
    assert "data.params: data source 'arithmetic' param 'max_operand': [1] is not a valid int" in done.stderr


@pytest.mark.parametrize("argv", [["plugins", "--json"], ["backends", "--json"], ["datasets", "--json"], ["--help"]])
def test_listing_does_not_import_pydantic(argv):
    """Checking declarations at registration is pydantic-free; values are validated on use."""
    code = (f"import sys\nsys.argv = ['grpo-host', *{argv!r}]\nfrom grpo_host.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('PYDANTIC', 'pydantic' in sys.modules, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "PYDANTIC False" in done.stderr, done.stderr[-2000:]
    assert done.stdout.strip()
