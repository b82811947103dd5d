"""`grpo-host datasets`: the installed data sources, their params and the columns they give."""

from __future__ import annotations

import click

from grpo_host.cli.common import console, echo_json


@click.command("datasets")
@click.argument("patterns", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def datasets_cmd(patterns: tuple[str, ...], as_json: bool) -> None:
    """List installed data sources (those whose name contains a PATTERN, if given).

    A run trains on one with `data: {source: NAME, params: {...}}`; `grpo-host try-reward
    REWARD --dataset NAME` scores completions against its rows.
    """
    from grpo_host.plugins.manager import get_plugin_manager

    specs = sorted(get_plugin_manager().datasets.values(), key=lambda s: s.name)
    if patterns:
        specs = [s for s in specs if any(p.lower() in s.name.lower() for p in patterns)]
    if as_json:
        echo_json({"datasets": [s.to_json() for s in specs]})
        return
    from rich.table import Table

    table = Table(title="grpo-host data sources")
    for column in ("data source", "plugin", "description", "params (type = default)", "columns", "rewards"):
        table.add_column(column, overflow="fold")
    for s in specs:
        params = "\n".join(f"{p.name}: {p.text} = {p.default!r}" for p in s.params)
        table.add_row(s.name, f"{s.plugin} {s.plugin_version}".strip(), s.description, params,
                      ", ".join(["prompt", *s.columns]), ", ".join(s.rewards))
    console().print(table)


COMMANDS = (datasets_cmd,)


def dataset_rows(name: str, n: int, sets: tuple[str, ...], completion: str | None, input_path: str | None,
                 columns: tuple[str, ...], prompt: str | None) -> tuple[list[dict], tuple[str, ...]]:
    """For `try-reward --dataset`: ``n`` rows of data source ``name``, each with the completion
    (``{column}`` filled from the row) to score, and the ``--set`` items left for the rewards."""
    from grpo_host.cli.common import parse_sets
    from grpo_host.errors import GrpoHostError
    from grpo_host.plugins.manager import get_plugin_manager

    if input_path is not None or columns or prompt is not None:
        raise GrpoHostError("--dataset gives the prompts and columns: leave out --input, --prompt and --column")
    if n < 1:
        raise GrpoHostError(f"--n must be at least 1, got {n}")
    spec = get_plugin_manager().get_dataset(name)
    mine = tuple(s.removeprefix("dataset.") for s in sets if s.startswith("dataset."))
    rest = tuple(s for s in sets if not s.startswith("dataset."))
    params = parse_sets(mine, "--set dataset.")
    if "size" in {p.name for p in spec.params} and "size" not in params:
        params["size"] = n  # draw no more than shown
    text = "<answer>{answer}</answer>" if completion is None else completion
    rows = []
    for row in spec.draw(params, limit=n):
        filled = text
        for key, value in row.items():  # only exact {column} marks: LaTeX braces stay as written
            if f"{{{key}}}" in filled and not isinstance(value, (dict, list)):
                filled = filled.replace(f"{{{key}}}", "" if value is None else str(value))
        rows.append({**row, "completion": filled})
    if completion is None and not any("answer" in r for r in rows):
        raise GrpoHostError(f"data source {name!r} has no 'answer' column to build a completion from; "
                            f"give --completion TEXT ({{column}} marks are filled from each row)")
    return rows, rest
