"""`grpo-host rewards`, `try-reward`, `test-rewards` and `new-reward`: the reward author's commands."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import click

from grpo_host.cli.common import console, echo_json, parse_sets, parse_value
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


@click.command("rewards")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_rewards_cmd(as_json: bool) -> None:
    """List installed rewards with their params, types and defaults."""
    from grpo_host.plugins.manager import get_plugin_manager

    rewards = sorted(get_plugin_manager().rewards.values(), key=lambda s: s.name)
    if as_json:
        echo_json({"rewards": [s.to_json() for s in rewards]})
        return
    from rich.table import Table

    table = Table(title="grpo-host rewards")
    for column in ("reward", "plugin", "version", "description", "params (type = default)"):
        table.add_column(column, overflow="fold")
    for s in rewards:
        params = [f"{p.name}: {p.text} = {p.default!r}" for p in s.params.values()]
        host = s.host_param_defaults()
        params.append(", ".join(
            f"{k} = {v:g}" if k == "timeout" else f"{k} = runtime cap" if v is None else f"{k} = {v}"
            for k, v in host.items()))
        table.add_row(s.name, s.plugin, s.plugin_version, s.description, "\n".join(params))
    console().print(table)


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
@click.option("--dataset", metavar="NAME", help="Draw rows from this data source; --completion (default "
              "'<answer>{answer}</answer>', {column} filled per row) is scored against each. "
              "--set dataset.PARAM=VALUE sets its params.")
@click.option("--n", "n_rows", type=int, default=5, show_default=True, help="Rows to draw with --dataset.")
def try_reward_cmd(names: str, input_path: str | None, completion: str | None, prompt: str | None,
                   columns: tuple[str, ...], sets: tuple[str, ...], as_json: bool, explain: bool,
                   workers: int | None, dataset: str | None, n_rows: int) -> None:
    """Score completions by hand with rewards NAME[,NAME...], no model needed."""
    from grpo_host.interop.scoring import total_score
    from grpo_host.plugins.manager import get_plugin_manager
    from grpo_host.rewards.runtime import RewardRuntime, bind_reward, prepare_samples

    reward_names = [n.strip() for n in names.split(",") if n.strip()]
    if dataset is not None:
        from grpo_host.cli.datasets_cmd import dataset_rows

        rows, sets = dataset_rows(dataset, n_rows, sets, completion, input_path, columns, prompt)
    elif (input_path is None) == (completion is None):
        raise GrpoHostError("give either --input FILE.jsonl (or - for stdin) or --completion TEXT")
    elif completion is not None:
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
    manager = get_plugin_manager()
    bound = [bind_reward((name, params[name]), manager=manager) for name in reward_names]
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
    if explain:
        _print_explanations(bound, samples, per_row)


def _print_explanations(bound: list[Any], samples: list[dict[str, Any]], per_row: list[dict]) -> None:
    """Per row and reward: what the reward was given, and what it extracted and compared."""
    from grpo_host.rewards.spec import spec_kwargs

    out = console()
    for i, (sample, rewards) in enumerate(zip(samples, per_row, strict=True)):
        for reward in bound:
            result = rewards[reward.name]
            score = "-" if result.score is None else f"{result.score:.6g}"
            out.print(f"[bold]row {i} · {reward.name}[/]: {score} ({result.outcome}, {result.seconds * 1000:.1f} ms)")
            try:
                given = spec_kwargs(reward.spec, sample)
            except KeyError as exc:
                given = {"completion": sample.get("completion", "")}
                out.print(f"  missing input: {exc.args[0]}", markup=False, highlight=False)
            text = given.pop("completion", "")
            lines = [f"completion: {_clip(text)} ({len(text)} characters)"]
            lines += [f"{key}: {_clip(value)}" for key, value in given.items() if value is not None]
            host = f"timeout={reward.timeout:g}s" + (f" concurrency={reward.concurrency}" if reward.spec.is_async else "")
            lines.append(f"params: {json.dumps(reward.params, default=repr)}  {host}")
            out.print("  read      " + "\n            ".join(lines), markup=False, highlight=False)
            if result.details:
                width = max(len(k) for k in result.details)
                shown = [f"{k.ljust(width)} = {_clip(v)}" for k, v in result.details.items() if not _is_text_block(v)]
                # Text of several lines (a judge's rendered prompt and reply) is shown whole, as written.
                for key, value in result.details.items():
                    if _is_text_block(value):
                        text = value if len(value) <= TEXT_BLOCK_LIMIT else value[:TEXT_BLOCK_LIMIT] + "\n[...]"
                        shown.append(f"{key.ljust(width)} =\n" + "\n".join(f"{' ' * 12}| {line}" for line in text.splitlines()))
                out.print("  compared  " + "\n            ".join(shown), markup=False, highlight=False)
            else:
                out.print("  compared  (the reward attached no details; return grpo_host.Score(value, "
                          "extracted=..., gold=...) to show what it compared)", markup=False, highlight=False)


TEXT_BLOCK_LIMIT = 8000


def _is_text_block(value: Any) -> bool:
    return isinstance(value, str) and "\n" in value


def _clip(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=repr, ensure_ascii=False)
    text = repr(text) if isinstance(value, str) else text
    return text if len(text) <= limit else text[: limit - 20] + f"... ({len(text)} chars)"


def _print_table(rows: list[dict], per_row: list[dict], weights: dict[str, float], explain: bool) -> None:
    from rich.table import Table

    from grpo_host.interop.scoring import total_score

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
            # --explain prints the details in full below the table.
            shown = {k: v for k, v in r.details.items() if k == "error"}
            if shown:
                cell += "\n" + "\n".join(f"{k}: {v}" for k, v in shown.items())
            cells.append(cell)
        total = total_score(rewards, weights)
        text = row["completion"] if isinstance(row["completion"], str) else json.dumps(row["completion"])
        table.add_row(str(i), text[:300], *cells, "-" if total is None else f"{total:.4g}")
    console().print(table)


@click.command("test-rewards")
@click.argument("names", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="One JSON document with every check.")
@click.option("--checks", "kinds", multiple=True, type=click.Choice(["golden", "conformance", "probes"]),
              help="Run only these kinds of checks (repeatable; default: all three).")
@click.option("-v", "--verbose", is_flag=True, help="List every check, not only the failures.")
def test_rewards_cmd(names: tuple[str, ...], as_json: bool, kinds: tuple[str, ...], verbose: bool) -> None:
    """Run the golden cases, conformance checks and hacking probes of installed rewards.

    With no NAME, every installed reward. Exits 1 when any case, check or probe fails.
    `pytest reward_tests` runs the same checks as test items.
    """
    from grpo_host.golden.harness import CHECK_KINDS, RewardHarness, select_rewards
    from grpo_host.plugins.manager import get_plugin_manager

    # Every plugin is tried in a child first: the suite must report a plugin that kills its
    # process, not die with it.
    specs, problems = select_rewards(get_plugin_manager(recheck=True), list(names))
    reports = []
    out = console(stderr=True)
    for spec in specs:
        if not as_json:
            out.print(f"[dim]testing {spec.name} ...[/]")
        with RewardHarness(spec) as harness:
            reports.append((spec, harness.run_checks(kinds or CHECK_KINDS)))
    failed = any(c.failed for c in problems) or any(c.failed for _, checks in reports for c in checks)
    if as_json:

        echo_json({
            "ok": not failed,
            "problems": [p.to_json() | {"reward": p.reward} for p in problems],
            "rewards": [_reward_summary(spec, checks) | {"checks": [c.to_json() for c in checks]}
                        for spec, checks in reports],
        })
    else:
        _print_test_report(problems, reports, verbose)
    if failed:
        sys.exit(1)


def _reward_summary(spec: Any, checks: list[Any]) -> dict[str, Any]:
    def count(kind: str, status: str) -> int:
        return sum(1 for c in checks if c.kind == kind and c.status == status)

    golden = [c for c in checks if c.kind == "golden"]
    return {
        "name": spec.name,
        "plugin": spec.plugin,
        "version": spec.plugin_version,
        "cases": len(golden),
        "passed": count("golden", "passed"),
        "failed": count("golden", "failed") + count("setup", "failed"),
        "conformance": {s: count("conformance", s) for s in ("passed", "failed", "skipped")},
        "probes": {"flagged": count("probe", "failed"), "intended": count("probe", "intended"),
                   "passed": count("probe", "passed"), "skipped": count("probe", "skipped")},
        "ok": not any(c.failed for c in checks),
    }


def _print_test_report(problems: list[Any], reports: list[tuple[Any, list[Any]]], verbose: bool) -> None:
    from rich.table import Table

    out = console()
    from rich import box

    table = Table(title="grpo-host test-rewards", box=box.SIMPLE_HEAD)
    # The plugin and its version are in --json; the table stays narrow enough for 80 columns.
    for column in ("reward", "cases", "passed", "failed", "conformance", "probes flagged", "result"):
        table.add_column(column, justify="right" if column in ("cases", "passed", "failed") else "left", no_wrap=True)
    for spec, checks in reports:
        s = _reward_summary(spec, checks)
        conf, probes = s["conformance"], s["probes"]
        conformance = f"{conf['passed']}/{sum(conf.values())}"
        if conf["failed"]:
            conformance = f"[red]{conf['failed']} failed[/]"
        elif conf["skipped"]:
            conformance += f" ({conf['skipped']} skipped)"
        flagged = f"[red]{probes['flagged']}[/]" if probes["flagged"] else "0"
        if probes["intended"]:
            flagged += f" ({probes['intended']} intended)"
        if not sum(conf.values()):  # not run (--checks)
            conformance = "-"
        if not sum(probes.values()):
            flagged = "-"
        table.add_row(
            spec.name, str(s["cases"]), str(s["passed"]),
            f"[red]{s['failed']}[/]" if s["failed"] else "0", conformance, flagged,
            "[green]PASS[/]" if s["ok"] else "[red]FAIL[/]",
        )
    out.print(table)

    def say(head: str, text: str) -> None:  # messages keep their own line breaks
        out.print(head, end=" ", highlight=False)
        out.print(text, markup=False, highlight=False, soft_wrap=True)

    for problem in problems:
        say("[red]FAIL[/]", f"{problem.reward}: {problem.message}")
    for spec, checks in reports:
        for check in checks:
            if check.failed:
                say("[red]FAIL[/]", f"{spec.name} {check.kind} {check.name}\n{check.message}")
            elif check.status == "intended":
                say("[yellow]intended[/]", f"{spec.name} probe {check.name}: {check.data.get('reason', '')}")
            elif verbose:
                color = {"passed": "green", "skipped": "yellow"}.get(check.status, "white")
                say(f"[{color}]{check.status}[/]", f"{spec.name} {check.kind} {check.name}: {check.message}")
    total = sum(1 for _, checks in reports for c in checks) + len(problems)
    bad = sum(1 for _, checks in reports for c in checks if c.failed) + len(problems)
    color = "red" if bad else "green"
    out.print(f"[{color}]{len(reports)} reward(s), {total} checks, {bad} failed[/]")


@click.command("new-reward")
@click.argument("name")
@click.option("--dir", "directory", default=".", show_default=True, help="Where to create the plugin's folder.")
def new_reward_cmd(name: str, directory: str) -> None:
    """Scaffold a reward plugin distribution grpo-reward-NAME.

    It holds a pyproject with the entry point, a module with one decorated reward, golden
    cases, a README, and tests that run them: `pip install -e` it, then `pytest` in it.
    """
    from grpo_host.scaffold import create_reward_plugin

    plugin = create_reward_plugin(name, directory)
    click.echo(f"created {plugin.distribution} in {plugin.root}")
    for path in plugin.files:
        click.echo(f"  {path.relative_to(plugin.root)}")
    click.echo(
        "next:\n"
        f"  pip install -e {plugin.root}\n"
        f"  cd {plugin.root} && pytest    # golden cases, conformance checks, hacking probes\n"
        "  grpo-host rewards              # lists it\n"
        f"  grpo-host try-reward {plugin.reward} --completion '<answer>4</answer>' --column answer=4 --explain"
    )


COMMANDS = (list_rewards_cmd, try_reward_cmd, test_rewards_cmd, new_reward_cmd)
