"""`grpo-host export verl|openrlhf`: the files load and are called the way verl 0.9.1 and
OpenRLHF 0.11.0 load and call them (read from their code: verl's `load_extern_object` and reward
managers' `run_in_executor` per sample; OpenRLHF's `spec_from_file_location("reward_func", ...)`
and `asyncio.to_thread(reward_func, [q], [p], [l])` per sample), and return grpo-host's scores
(in-process runtime; the server form is tested in test_interop_server.py)."""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import json
import os
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
    from grpo_host.plugins.manager import get_plugin_manager

    write_distribution(plugin_dir, "grpo-reward-export-probe", {"export_probe": PLUGIN}, {"probe": "export_probe"})
    get_plugin_manager(refresh=True)  # the exported file, loaded in this process, looks rewards up there
    yield plugin_dir
    get_plugin_manager(refresh=True)


def load_like(path, name: str):
    """As OpenRLHF loads a custom reward file: by path, under the name it gives."""
    spec = importlib.util.spec_from_file_location(name, str(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def verl_custom_reward_fn(path, name: str = "compute_score", reward_kwargs: dict | None = None):
    """verl 0.9.1's `get_custom_reward_fn`: `load_extern_object(module_path, object_name)` (a module
    named `custom_module_<hash>`, not put in sys.modules), wrapped by `partial(_call_with_kwargs,
    raw_fn, reward_kwargs)` that merges the config's reward_kwargs into each call's kwargs."""
    spec = importlib.util.spec_from_file_location(f"custom_module_{hash(os.path.abspath(path))}", str(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert spec.name not in sys.modules
    raw_fn = getattr(module, name)
    assert not asyncio.iscoroutinefunction(raw_fn)  # the `remote` manager refuses async ones

    def call_with_kwargs(raw, extra, *args, **kwargs):
        return raw(*args, **{**kwargs, **extra})

    return functools.partial(call_with_kwargs, raw_fn, dict(reward_kwargs or {}))


def verl_reward_loop(compute_score, rows: list[dict]) -> list[dict]:
    """verl 0.9.1's reward loop: `asyncio.gather` of one `run_single` per sample; the naive
    manager runs a sync compute_score in the loop's default thread pool, with keyword arguments,
    `extra_info` carrying `num_turns` and `rollout_reward_scores`."""
    async def run_single(row: dict) -> dict:
        extra_info = dict(row.get("extra_info") or {})
        extra_info["num_turns"] = None
        extra_info["rollout_reward_scores"] = {}
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(None, lambda: compute_score(
            data_source=row["data_source"], solution_str=row["solution_str"], ground_truth=row["ground_truth"],
            extra_info=extra_info))
        return {"reward_score": result["score"], "reward_extra_info": dict(result)}

    async def gather() -> list[dict]:
        return await asyncio.gather(*(run_single(row) for row in rows))

    return asyncio.run(gather())


def test_verl_file_returns_our_scores(plugin, tmp_path):
    target = tmp_path / "verl_reward.py"
    done = run_cli("export", "verl", "exp-match,exp-source", "--set", "exp-match.bonus=0.5", "--workers", "1",
                   "-o", str(target))
    assert done.returncode == 0, done.stderr
    assert f"reward.custom_reward_function.path={target}" in done.stdout
    text = target.read_text()
    assert "compute_score" in text and "exp-match" in text and "'bonus': 0.5" in text
    assert "verl 0.9.1" in text and "reward.custom_reward_function.name=compute_score" in text
    assert "reward_manager=batch" not in text  # verl 0.9.1 has no batch reward manager
    compute_score = verl_custom_reward_fn(target, reward_kwargs={})
    # One sample per call, keyword arguments; extra_info's keys become columns.
    right = compute_score(data_source="gsm8k", solution_str="so it is 42", ground_truth="42",
                          extra_info={"split": "train", "index": 0})
    assert right == {"score": 2.5, "exp-match": 1.5, "exp-match/failed": 0.0, "exp-source": 1.0, "exp-source/failed": 0.0}
    assert compute_score(data_source="gsm8k", solution_str="so it is 41", ground_truth="42", extra_info=None)["score"] == 1.0
    # A dict ground_truth gives its keys as columns.
    assert compute_score(data_source=None, solution_str="x 7", ground_truth={"answer": "7"}, extra_info=None) == {
        "score": 1.5, "exp-match": 1.5, "exp-match/failed": 0.0, "exp-source": 0.0, "exp-source/failed": 1.0}
    # The list form of verl's old batch manager: lists in, a list of dicts out.
    batch = compute_score(data_sources=["a", "b", "c"], solution_strs=["1", "2", "three"],
                          ground_truths=["1", "3", "three"], extra_infos=[{}, {}, {}])
    assert [b["score"] for b in batch] == [2.5, 1.0, 2.5]


def test_verl_reward_loop_calls_score_right_and_together(plugin, tmp_path):
    """64 samples at once through verl 0.9.1's reward-loop pattern: each gets its own score, the
    same keys for every sample (verl stacks reward_extra_info), end tokens cut off, numpy values
    (verl's non-tensor batch is numpy) taken as plain ones."""
    np = pytest.importorskip("numpy")
    target = tmp_path / "verl_reward.py"
    assert run_cli("export", "verl", "exp-match", "--workers", "2", "-o", str(target)).returncode == 0
    compute_score = verl_custom_reward_fn(target)
    rows = [{"data_source": "gsm8k", "solution_str": f"it is {i}" + ("<|im_end|>" if i % 4 == 0 else ""),
             "ground_truth": np.str_(i if i % 3 else i + 1), "extra_info": {"index": np.int64(i)}}
            for i in range(64)]
    out = verl_reward_loop(compute_score, rows)
    assert [o["reward_score"] for o in out] == [1.0 if i % 3 else 0.0 for i in range(64)]
    assert {tuple(sorted(o["reward_extra_info"])) for o in out} == {("exp-match", "exp-match/failed", "score")}


def test_openrlhf_file_returns_our_scores(plugin, tmp_path):
    torch = pytest.importorskip("torch")
    target = tmp_path / "reward_func.py"
    done = run_cli("export", "openrlhf", "exp-match", "--workers", "1", "-o", str(target))
    assert done.returncode == 0, done.stderr
    assert f"--reward.remote_url {target} --data.label_key" in done.stdout  # OpenRLHF 0.10.2+ flags
    assert "--reward.remote_url" in target.read_text() and "OpenRLHF 0.11.0" in target.read_text()
    module = load_like(target, "reward_func")
    prompts = ["<|user|>6*7?<|assistant|>", "<|user|>6*7?<|assistant|>", "<|user|>say 42<|assistant|>"]
    queries = [prompts[0] + "it is 42", prompts[1] + "it is 41", prompts[2] + "no"]
    out = module.reward_func(queries, prompts, ["42", "42", None])
    assert isinstance(out["rewards"], torch.Tensor)
    assert out["rewards"].tolist() == [1.0, 0.0, 0.0]
    assert torch.equal(out["scores"], out["rewards"])
    assert out["extra_logs"]["exp-match/failed"].tolist() == [0.0, 0.0, 1.0]  # no label: not applicable


def test_openrlhf_calls_one_sample_per_thread_with_eos(plugin, tmp_path):
    """OpenRLHF 0.11's SingleTurnAgentExecutor: `reward_func([query], [prompt], [label])` in
    `asyncio.to_thread`, every rollout at once, the query decoded with skip_special_tokens=False
    (so it ends in EOS); then `torch.tensor([reward])` and `extra_logs` values `.flatten()[0]`."""
    torch = pytest.importorskip("torch")
    target = tmp_path / "reward_func.py"
    assert run_cli("export", "openrlhf", "exp-match", "--workers", "2", "-o", str(target)).returncode == 0
    reward_func = load_like(target, "reward_func").reward_func
    prompt = "<|im_start|>user\nsay {0}<|im_end|>\n<|im_start|>assistant\n"

    async def rollout(i: int) -> tuple[int, dict]:
        query = prompt.format(i) + f"sure: {i if i % 2 else i + 1}<|im_end|>"
        return i, await asyncio.to_thread(reward_func, [query], [prompt.format(i)], [str(i)])

    async def gather():
        return await asyncio.gather(*(rollout(i) for i in range(32)))

    for i, info in asyncio.run(gather()):
        expected = 1.0 if i % 2 else 0.0
        assert torch.tensor([info["rewards"]]).flatten().tolist() == [expected]
        assert info["extra_logs"]["exp-match"].flatten()[0].item() == expected


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


def test_end_tokens_options(plugin, tmp_path):
    """The default list, a local tokenizer's tokens (its JSON files: no transformers), or none."""
    module = tmp_path / "r.py"
    assert run_cli("export", "verl", "exp-match", "-o", str(module)).returncode == 0
    assert load_like(module, "m").END_TOKENS[:2] == ["<|im_end|>", "<|endoftext|>"]
    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "tokenizer_config.json").write_text(json.dumps({"eos_token": {"content": "<my_eos>"}, "pad_token": "<pad>",
                                                           "added_tokens_decoder": {"7": {"content": "<eom>"}}}))
    (tok / "generation_config.json").write_text(json.dumps({"eos_token_id": [7]}))
    assert run_cli("export", "verl", "exp-match", "--tokenizer", str(tok), "-o", str(module)).returncode == 0
    loaded = load_like(module, "m")
    assert loaded.END_TOKENS == ["<my_eos>", "<pad>", "<eom>"]
    assert loaded.strip_end_tokens("x 7<eom><pad><pad>", loaded.END_TOKENS) == "x 7"
    assert run_cli("export", "verl", "exp-match", "--keep-end-tokens", "-o", str(module)).returncode == 0
    assert load_like(module, "m").END_TOKENS == []
    empty = tmp_path / "empty"
    empty.mkdir()
    done = run_cli("export", "verl", "exp-match", "--tokenizer", str(empty), "-o", str(module))
    assert done.returncode != 0 and "names no eos_token or pad_token" in done.stderr



@pytest.mark.parametrize("args", [["--help"], ["serve-rewards", "--help"], ["export", "--help"]])
def test_cli_start_imports_no_http_stack(args):
    """uvicorn and its parser and loop load when a server starts, not with the CLI."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "grpo_host", *args], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    imported = {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line}
    assert "grpo_host" in imported and not imported & {"uvicorn", "httptools", "uvloop", "aiohttp", "h11"}
    if args[0] == "serve-rewards":
        assert "--token-env" in result.stdout and "--keep-end-tokens" in result.stdout
    if args[0] == "export":
        assert "--tokenizer" in result.stdout
