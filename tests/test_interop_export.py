"""`grpo-host export verl|openrlhf`: the files load the way those trainers load them, and return
grpo-host's scores (in-process runtime; the server form is tested in test_interop_server.py)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from .conftest import run_cli, write_distribution

PLUGIN = """
    import grpo_host

    @grpo_host.reward(name="exp-match")
    def exp_match(completion: str, bonus: float = 0.0, **columns) -> float:
        '''1.0 (+ bonus) when the answer column is the completion's last word.'''
        answer = columns.get("answer")
        if answer is None:
            return None
        words = completion.split()
        return (1.0 + bonus) if words and words[-1] == str(answer) else 0.0

    @grpo_host.reward(name="exp-source")
    def exp_source(completion: str, **columns) -> float:
        '''1.0 when a data_source column came with the sample (verl's), else not applicable.'''
        return 1.0 if columns.get("data_source") else None
"""


@pytest.fixture
def plugin(plugin_dir):
    from grpo_host.manager import get_plugin_manager

    write_distribution(plugin_dir, "grpo-reward-export-probe", {"export_probe": PLUGIN}, {"probe": "export_probe"})
    get_plugin_manager(refresh=True)  # the exported file, loaded in this process, looks rewards up there
    yield plugin_dir
    get_plugin_manager(refresh=True)


def load_like(path, name: str):
    """As verl (`load_extern_type`) and OpenRLHF load a custom reward file: by path."""
    spec = importlib.util.spec_from_file_location(name, str(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_verl_file_returns_our_scores(plugin, tmp_path):
    target = tmp_path / "verl_reward.py"
    done = run_cli("export", "verl", "exp-match,exp-source", "--set", "exp-match.bonus=0.5", "--workers", "1",
                   "-o", str(target))
    assert done.returncode == 0, done.stderr
    assert f"custom_reward_function.path={target}" in done.stdout
    text = target.read_text()
    assert "compute_score" in text and "exp-match" in text and "'bonus': 0.5" in text
    module = load_like(target, "custom_module")
    # The naive reward manager: one sample per call, extra_info's keys become columns.
    right = module.compute_score("gsm8k", "so it is 42", "42", {"split": "train", "index": 0})
    assert right == {"score": 2.5, "exp-match": 1.5, "exp-match/failed": 0.0, "exp-source": 1.0, "exp-source/failed": 0.0}
    assert module.compute_score("gsm8k", "so it is 41", "42", None)["score"] == 1.0
    # A dict ground_truth gives its keys as columns.
    assert module.compute_score(None, "x 7", {"answer": "7"}, None) == {
        "score": 1.5, "exp-match": 1.5, "exp-match/failed": 0.0, "exp-source": 0.0, "exp-source/failed": 1.0}
    # The batch reward manager: lists in, a list of dicts out.
    batch = module.compute_score(data_sources=["a", "b", "c"], solution_strs=["1", "2", "three"],
                                 ground_truths=["1", "3", "three"], extra_infos=[{}, {}, {}])
    assert [b["score"] for b in batch] == [2.5, 1.0, 2.5]


def test_openrlhf_file_returns_our_scores(plugin, tmp_path):
    torch = pytest.importorskip("torch")
    target = tmp_path / "reward_func.py"
    done = run_cli("export", "openrlhf", "exp-match", "--workers", "1", "-o", str(target))
    assert done.returncode == 0, done.stderr
    assert f"--remote_rm_url {target}" in done.stdout
    module = load_like(target, "reward_func")
    prompts = ["<|user|>6*7?<|assistant|>", "<|user|>6*7?<|assistant|>", "<|user|>say 42<|assistant|>"]
    queries = [prompts[0] + "it is 42", prompts[1] + "it is 41", prompts[2] + "no"]
    out = module.reward_func(queries, prompts, ["42", "42", None])
    assert isinstance(out["rewards"], torch.Tensor)
    assert out["rewards"].tolist() == [1.0, 0.0, 0.0]
    assert torch.equal(out["scores"], out["rewards"])
    assert out["extra_logs"]["exp-match/failed"].tolist() == [0.0, 0.0, 1.0]  # no label: not applicable


def test_export_refuses_unknown_rewards_and_bad_params(plugin, tmp_path):
    done = run_cli("export", "verl", "exp-mtch", "-o", str(tmp_path / "x.py"))
    assert done.returncode == 2 and "did you mean 'exp-match'" in done.stderr
    done = run_cli("export", "verl", "exp-match", "--set", "exp-match.bonnus=1", "-o", str(tmp_path / "x.py"))
    assert done.returncode == 2 and "no param 'bonnus'" in done.stderr
    done = run_cli("export", "openrlhf", "-o", str(tmp_path / "x.py"))
    assert done.returncode == 2 and "name the rewards" in done.stderr
    assert not (tmp_path / "x.py").exists()


def test_exported_file_is_importable_without_side_effects(plugin, tmp_path):
    """Importing the file (what a trainer does at start-up) starts no worker pool and imports no torch."""
    target = tmp_path / "r.py"
    assert run_cli("export", "verl", "exp-match", "-o", str(target)).returncode == 0
    probe = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location('m', sys.argv[1]); "
             "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
             "print(json.dumps([m.REWARDS, m.URL, 'torch' in sys.modules, 'grpo_host.rewards.runtime' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", "import json; " + probe, str(target)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [["exp-match"], None, False, False]
