"""`grpo-host try-reward`, `test-rewards` and `new-reward`: the reward author's commands."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import click

from grpo_host.cli.common import console, parse_sets, parse_value
from grpo_host.errors import GrpoHostError


def _read_rows(path: str) -> Iterator[dict[str, Any]]:
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8")  # noqa: SIM115
    with stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise GrpoHostError(f"{path}:{number}: not a JSON line ({exc.msg}); each line must be one JSON object")
            if not isinstance(row, dict) or "completion" not in row:
                raise GrpoHostError(f"{path}:{number}: each row needs a 'completion' key, got {line.strip()[:80]!r}")
            yield row


def _reward_params(names: list[str], sets: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    tree = parse_sets(sets)
    params: dict[str, dict[str, Any]] = {name: {} for name in names}
    for key, value in tree.items():
        if key in params and isinstance(value, dict):
            params[key].update(value)
        elif len(names) == 1:  # `--set target=20` when only one reward is tried
            params[names[0]][key] = value
        else:
            raise GrpoHostError(f"--set {key}=...: say which reward, as REWARD.param=value (rewards: {', '.join(names)})")
    return params


def total_score(rewards: dict[str, Any], weights: dict[str, float]) -> float | None:
    """As TRL sums rewards: weighted, skipping the ones that gave no score."""
    scores = [weights[name] * r.score for name, r in rewards.items() if r.outcome == "ok"]
    return sum(scores) if scores else None


@click.command("try-reward")
@click.argument("names")
@click.option("--input", "input_path", metavar="FILE.jsonl|-", help="Rows of {completion, prompt, <columns>}.")
@click.option("--completion", help="Score one completion given here.")
@click.option("--prompt", help="The prompt of the single completion.")
@click.option("--column", "columns", multiple=True, metavar="KEY=VALUE", help="A dataset column of the single sample.")
@click.option("--set", "sets", multiple=True, metavar="REWARD.PARAM=VALUE", help="Set a reward param.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per row.")
@click.option("--explain", is_flag=True, help="Show what each reward extracted and compared.")
@click.option("--workers", type=int, default=None, help="Worker processes (default: the cores available).")
def try_reward_cmd(names: str, input_path: str | None, completion: str | None, prompt: str | None,
                   columns: tuple[str, ...], sets: tuple[str, ...], as_json: bool, explain: bool,
                   workers: int | None) -> None:
    """Score completions by hand with rewards NAME[,NAME...], no model needed."""
    from grpo_host.rewards.runtime import RewardRuntime, prepare_samples
    from grpo_host.rewards.trl_adapter import resolve_reward_item

    reward_names = [n.strip() for n in names.split(",") if n.strip()]
    if (input_path is None) == (completion is None):
        raise GrpoHostError("give either --input FILE.jsonl (or - for stdin) or --completion TEXT")
    if completion is not None:
        row: dict[str, Any] = {}
        for item in columns:
            key, sep, value = item.partition("=")
            if not sep:
                raise GrpoHostError(f"--column expects KEY=VALUE, got {item!r}")
            row[key] = parse_value(value) if value.strip() else value
        row["completion"] = completion
        if prompt is not None:
            row["prompt"] = prompt
        rows = [row]
    else:
        rows = list(_read_rows(input_path))
    params = _reward_params(reward_names, sets)
    bound = [resolve_reward_item((name, params[name])) for name in reward_names]
    weights = {b.name: b.weight for b in bound}
    keys = sorted({k for r in rows for k in r if k != "completion"})
    samples = prepare_samples([r["completion"] for r in rows], {k: [r.get(k) for r in rows] for k in keys})
    with RewardRuntime(bound, workers=workers) as runtime:
        results = runtime.score(samples)
    per_row = [{name: results[name][i] for name in results} for i in range(len(rows))]
    if as_json:
        for i, rewards in enumerate(per_row):
            click.echo(json.dumps({
                "row": i,
                "rewards": {name: r.to_json() for name, r in rewards.items()},
                "total": total_score(rewards, weights),
            }, default=str))
        return
    _print_table(rows, per_row, weights, explain)


def _print_table(rows: list[dict], per_row: list[dict], weights: dict[str, float], explain: bool) -> None:
    from rich.table import Table

    table = Table(show_lines=True)
    table.add_column("row", justify="right")
    table.add_column("completion", overflow="fold", max_width=50)
    names = list(per_row[0]) if per_row else []
    for name in names:
        table.add_column(name, overflow="fold")
    table.add_column("total", justify="right")
    colors = {"ok": "green", "not_applicable": "yellow", "error": "red", "timeout": "red"}
    for i, (row, rewards) in enumerate(zip(rows, per_row, strict=True)):
        cells = []
        for name in names:
            r = rewards[name]
            score = "-" if r.score is None else f"{r.score:.4g}"
            cell = f"{score} [{colors[r.outcome]}]{r.outcome}[/] {r.seconds * 1000:.1f} ms"
            shown = r.details if explain else {k: v for k, v in r.details.items() if k == "error"}
            if shown:
                cell += "\n" + "\n".join(f"{k}: {v}" for k, v in shown.items())
            cells.append(cell)
        total = total_score(rewards, weights)
        text = row["completion"] if isinstance(row["completion"], str) else json.dumps(row["completion"])
        table.add_row(str(i), text[:300], *cells, "-" if total is None else f"{total:.4g}")
    console().print(table)


@click.command("test-rewards")
@click.argument("names", nargs=-1)
def test_rewards_cmd(names: tuple[str, ...]) -> None:
    """Run the golden cases and conformance checks of installed rewards."""
    raise GrpoHostError("test-rewards is not available yet in this version")


@click.command("new-reward")
@click.argument("name")
@click.option("--dir", "directory", default=".", help="Where to create the plugin.")
def new_reward_cmd(name: str, directory: str) -> None:
    """Scaffold a reward plugin distribution grpo-reward-NAME."""
    raise GrpoHostError("new-reward is not available yet in this version")


COMMANDS = (try_reward_cmd, test_rewards_cmd, new_reward_cmd)
