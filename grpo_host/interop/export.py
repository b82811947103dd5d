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

TRAINERS = {
    "verl": (
        "verl's custom reward function. Point verl at it:\n\n"
        "    custom_reward_function.path={path}\n"
        "    custom_reward_function.name=compute_score\n\n"
        "It works with the naive reward manager (one sample per call) and the batch one\n"
        "(reward_model.reward_manager=batch: lists of samples per call). `score` is the weighted\n"
        "sum of the rewards that gave a score (0.0 when none did); each reward's value and a\n"
        "`<name>/failed` flag (error, timeout or not applicable) go to verl's reward_extra_info.\n"
        "`ground_truth` becomes the column {label_column!r} (a dict gives its keys), `extra_info`'s\n"
        "keys become columns, `data_source` the column 'data_source'."
    ),
    "openrlhf": (
        "OpenRLHF's custom reward function. Point OpenRLHF at it:\n\n"
        "    --remote_rm_url {path} --label_key <your answer column>\n\n"
        "`reward_func(queries, prompts, labels)` returns `rewards` (the weighted sum of the rewards\n"
        "that gave a score, 0.0 when none did), `scores` (the same) and `extra_logs` (each reward's\n"
        "value and a `<name>/failed` flag). The completion is the query with its prompt cut off;\n"
        "a label becomes the column {label_column!r} (a dict gives its keys)."
    ),
}
BODY_MARKER = "# ---- EXPORTED BODY"


def export_source(trainer: str, rewards: list[Any], *, path: str, url: str | None = None,
                  label_column: str = "answer", workers: int | None = None, timeout_s: float = 600.0,
                  command: str = "") -> str:
    """The exported file's text."""
    from grpo_host import __version__
    from grpo_host.interop import trainer_side

    if trainer not in TRAINERS:
        raise GrpoHostError(f"unknown trainer {trainer!r}; export knows: {', '.join(TRAINERS)}")
    body = Path(trainer_side.__file__).read_text(encoding="utf-8")
    body = body[body.index(BODY_MARKER):]
    names = ", ".join(_name(r) for r in rewards) or "(the server's)"
    where = (f"The scores come from the grpo-host reward server at {url}\n(`grpo-host serve-rewards`); "
             "this file needs only the standard library there." if url else
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
        f"TIMEOUT_S = {float(timeout_s)!r}\n\n"
    )
    return header + body


def _name(item: Any) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        return str(item.get("alias") or item.get("name"))
    return str(item[0])


def write_export(trainer: str, names: list[str], params: dict[str, dict[str, Any]], output: str | None, *,
                 url: str | None, label_column: str, workers: int | None, argv: list[str]) -> Path:
    """Check the rewards (unless a server scores them), write the file, return its path."""
    if url and names:
        raise GrpoHostError("with --url the server's rewards score (the ones `grpo-host serve-rewards` was "
                            "started with); leave out the reward names")
    if not url and not names:
        raise GrpoHostError("name the rewards to export (NAME[,NAME...]), or give --url of a reward server")
    rewards: list[Any] = [{"name": n, "params": params.get(n, {})} if params.get(n) else n for n in names]
    if rewards:
        from grpo_host.interop.scoring import bind_rewards

        bind_rewards(rewards)  # unknown names and bad params fail here, not in the trainer
    target = Path(output or f"grpo_host_{trainer}_reward.py").resolve()
    text = export_source(trainer, rewards, path=str(target), url=url, label_column=label_column, workers=workers,
                         command=shlex.join(["grpo-host", *argv]))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target
