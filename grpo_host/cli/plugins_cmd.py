"""`grpo-host plugins` and `backends`: the installed plugins and training backends, as tables or JSON.

(`grpo-host rewards`, the installed rewards, is with the other reward commands in ``rewards_cmd``.)
"""

from __future__ import annotations

import click

from grpo_host.cli.common import console, echo_json


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--recheck", is_flag=True, help="Try every plugin in a child process first, even trusted or "
              "quarantined ones (a plugin that kills its process is listed as broken with the reason).")
def plugins_cmd(as_json: bool, recheck: bool) -> None:
    """List installed plugins: version, status, errors, what each registered.

    A plugin new or changed since the last start is tried in a child process before it is
    imported here, so a plugin that exits, crashes or hangs at import is listed as broken.
    """
    from grpo_host.plugins.manager import get_plugin_manager

    manager = get_plugin_manager(recheck=recheck)
    conflicts = [
        {"kind": kind, "name": name, "plugins": owners, "message": manager.conflict_message(kind, name)}
        for (kind, name), owners in sorted(manager.conflicts.items())
    ]
    if as_json:
        echo_json({"plugins": [p.to_json() for p in manager.plugins], "conflicts": conflicts,
                   "warnings": manager.warnings})
        return
    from rich.table import Table

    table = Table(title="grpo-host plugins")
    for column in ("plugin", "version", "status", "rewards", "backends", "trackers", "error"):
        table.add_column(column, overflow="fold")
    colors = {"ok": "green", "broken": "red", "blocked": "yellow"}
    for p in manager.plugins:
        table.add_row(
            p.name, p.version, f"[{colors[p.status]}]{p.status}[/]", ", ".join(p.rewards),
            ", ".join(p.backends), ", ".join(p.trackers), p.error or "",
        )
    out = console()
    out.print(table)
    for c in conflicts:
        out.print("[red]conflict:[/]", end=" ")
        out.print(c["message"], markup=False, highlight=False)


@click.command("backends")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def backends_cmd(as_json: bool) -> None:
    """List installed training backends with their params."""
    from grpo_host.plugins.manager import get_plugin_manager

    backends = sorted(get_plugin_manager().backends.values(), key=lambda s: s.name)
    rows = [
        {
            "name": b.name, "plugin": b.plugin, "version": b.plugin_version, "description": b.description,
            "params": [p.to_json() for p in b.params],
        }
        for b in backends
    ]
    if as_json:
        echo_json({"backends": rows})
        return
    from rich.table import Table

    table = Table(title="grpo-host backends")
    for column in ("backend", "plugin", "version", "description", "params (type = default)"):
        table.add_column(column, overflow="fold")
    for row in rows:
        params = "\n".join(f"{p['name']}: {p['type']} = {p['default']!r}" for p in row["params"])
        table.add_row(row["name"], row["plugin"], row["version"], row["description"], params)
    console().print(table)


COMMANDS = (plugins_cmd, backends_cmd)
