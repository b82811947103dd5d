"""`grpo-host export verl|openrlhf`: the small Python file those trainers load, calling our rewards.

The file is a header (which rewards, with what params; or the URL of a reward server) and the
body of :mod:`grpo_host.interop.trainer_side`, copied verbatim. It defines both verl's
``compute_score(data_source, solution_str, ground_truth, extra_info)`` and OpenRLHF's
``reward_func(queries, prompts, labels)``; the trainer named only decides the instructions at
its top. With a URL it needs nothing but the standard library (and torch for OpenRLHF's tensors).
"""

from __future__ import annotations

import pprint
import shlex
from pathlib import Path
from typing import Any

from grpo_host.errors import GrpoHostError
from grpo_host.interop.end_tokens import DEFAULT_END_TOKENS

# Checked against the trainers' own code: verl 0.9.1 (verl/trainer/ppo/reward.py, its reward
# loop and reward managers) and OpenRLHF 0.11.0 (openrlhf/utils/agent.py, cli/train_ppo_ray.py).
TRAINERS = {
    "verl": (
        "verl's custom reward function (checked with verl 0.9.1). Point verl at it:\n\n"
        "    reward.custom_reward_function.path={path}\n"
        "    reward.custom_reward_function.name=compute_score\n\n"
        "(verl before its reward loop: custom_reward_function.path=..., which 0.9.1 still migrates.)\n"
        "Every reward manager of verl 0.9.1 (naive, the default; dapo, gdpo, rate_limited, remote)\n"
        "calls compute_score once per sample, from a thread pool; concurrent calls are scored as one\n"
        "batch. `score` is the weighted sum of the rewards that gave a score (0.0 when none did);\n"
        "each reward's value and a `<name>/failed` flag (error, timeout or not applicable) go to\n"
        "verl's reward_extra_info. `ground_truth` becomes the column {label_column!r} (a dict gives\n"
        "its keys), `extra_info`'s keys become columns, `data_source` the column 'data_source'.\n"
        "With reward.num_workers > 1 verl loads this file in each of its reward processes: without a\n"
        "server URL each starts its own worker pool (WORKERS below), so a server is the cheaper way."
    ),
    "openrlhf": (
        "OpenRLHF's custom reward function (checked with OpenRLHF 0.11.0). Point OpenRLHF at it:\n\n"
        "    --reward.remote_url {path} --data.label_key <your answer column>\n\n"
        "(OpenRLHF before 0.10.2: --remote_rm_url and --label_key.) OpenRLHF calls\n"
        "`reward_func(queries, prompts, labels)` once per sample from a thread pool; concurrent calls\n"
        "are scored as one batch. It returns `rewards` (the weighted sum of the rewards that gave a\n"
        "score, 0.0 when none did), `scores` (the same) and `extra_logs` (each reward's value and a\n"
        "`<name>/failed` flag). The completion is the query with its prompt cut off and its trailing\n"
        "EOS/pad tokens too (OpenRLHF decodes with skip_special_tokens=False); a label becomes the\n"
        "column {label_column!r} (a dict gives its keys)."
    ),
}
BODY_MARKER = "# ---- EXPORTED BODY"


def export_source(trainer: str, rewards: list[Any], *, path: str, url: str | None = None,
                  label_column: str = "answer", workers: int | None = None, timeout_s: float = 600.0,
                  end_tokens: list[str] | None = None, token_env: str | None = None, command: str = "") -> str:
    """The exported file's text."""
    from grpo_host import __version__
    from grpo_host.interop import trainer_side

    if trainer not in TRAINERS:
        raise GrpoHostError(f"unknown trainer {trainer!r}; export knows: {', '.join(TRAINERS)}")
    body = Path(trainer_side.__file__).read_text(encoding="utf-8")
    body = body[body.index(BODY_MARKER):]
    names = ", ".join(_name(r) for r in rewards) or "(the server's)"
    where = (f"The scores come from the grpo-host reward server at {url}\n(`grpo-host serve-rewards`); "
             "this file needs only the standard library there."
             + (f"\nIt sends the token in the environment variable {token_env} (set it where the trainer runs)."
                if token_env else "") if url else
             "The scores come from grpo-host's reward runtime in this process: grpo-host and the\n"
             "rewards' plugins must be installed where the trainer computes rewards.")
    how = TRAINERS[trainer].format(path=path, label_column=label_column)
    header = (
        f'"""grpo-host rewards for {trainer}: {names}.\n\n'
        f"Written by `{command or 'grpo-host export ' + trainer}` (grpo-host {__version__}).\n\n"
        f"{how}\n\n{where}\n"
        '"""\n\n'
        "from __future__ import annotations\n\n"
        "from typing import Any\n\n"
        f"REWARDS: list[Any] = {pprint.pformat(rewards, width=100, sort_dicts=False)}\n"
        f"URL: str | None = {url!r}\n"
        f"LABEL_COLUMN = {label_column!r}\n"
        f"WORKERS: int | None = {workers!r}\n"
        f"TIMEOUT_S = {float(timeout_s)!r}\n"
        "# Cut off the end of every completion before scoring (EOS and padding tokens).\n"
        f"END_TOKENS: list[str] = {list(DEFAULT_END_TOKENS if end_tokens is None else end_tokens)!r}\n"
        f"TOKEN_ENV: str | None = {token_env!r}\n\n"
    )
    return header + body


def _name(item: Any) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        return str(item.get("alias") or item.get("name"))
    return str(item[0])


def write_export(trainer: str, names: list[str], params: dict[str, dict[str, Any]], output: str | None, *,
                 url: str | None, label_column: str, workers: int | None, argv: list[str],
                 end_tokens: list[str] | None = None, token_env: str | None = None) -> Path:
    """Check the rewards (unless a server scores them), write the file, return its path."""
    if url and names:
        raise GrpoHostError("with --url the server's rewards score (the ones `grpo-host serve-rewards` was "
                            "started with); leave out the reward names")
    if token_env and not url:
        raise GrpoHostError("--token-env is for a file that calls a reward server: give --url too")
    if not url and not names:
        raise GrpoHostError("name the rewards to export (NAME[,NAME...]), or give --url of a reward server")
    rewards: list[Any] = [{"name": n, "params": params.get(n, {})} if params.get(n) else n for n in names]
    if rewards:
        from grpo_host.interop.scoring import bind_rewards

        bind_rewards(rewards)  # unknown names and bad params fail here, not in the trainer
    target = Path(output or f"grpo_host_{trainer}_reward.py").resolve()
    text = export_source(trainer, rewards, path=str(target), url=url, label_column=label_column, workers=workers,
                         end_tokens=end_tokens, token_env=token_env, command=shlex.join(["grpo-host", *argv]))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target
