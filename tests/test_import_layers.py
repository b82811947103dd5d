"""The host's import graph, read statically (ast), every import counted: at module top, inside
functions, under ``TYPE_CHECKING``.

Two rules. No import circle inside ``grpo_host``: each module stands above what it imports.
The CLI is the top floor: no module outside ``grpo_host/cli`` (``__main__`` aside) and no
first-party plugin imports ``grpo_host.cli``. The checker itself is tested on a package built
here with a circle (through a function-level import) and a CLI import, so it cannot pass by
reading nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Circles once waiting on other work; none is left. The test fails on a new circle, and on an
# entry here that is no longer one, so this can only stay empty.
KNOWN_CIRCLES: dict[frozenset[str], str] = {}


def module_files(package_dir: Path) -> dict[str, Path]:
    """``{dotted module name: file}`` for every module of the package at ``package_dir``."""
    base = package_dir.parent
    found = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(base).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules among ``known`` that the file imports, anywhere in it."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:  # `from a import b`: the submodule a.b when there is one, else a
                targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    edges = set()
    for target in targets:
        while target and target not in known:  # `import a.b.c` with only `a.b` a module of ours
            target = target.rpartition(".")[0]
        if target and target != name:
            edges.add(target)
    return edges


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    files = module_files(package_dir)
    known = set(files)
    return {name: imports_of(name, path, known) for name, path in files.items()}


def circles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.add(frozenset(component))
    return found


def cli_importers(graph: dict[str, set[str]], cli: str) -> list[tuple[str, str]]:
    """``(importer, imported)`` pairs where a module outside the CLI package imports it."""

    def in_cli(name: str) -> bool:
        return name == cli or name.startswith(cli + ".")

    top = cli.rpartition(".")[0]
    return sorted(
        (name, target)
        for name, targets in graph.items()
        for target in targets
        if in_cli(target) and not in_cli(name) and name != f"{top}.__main__"
    )


# -- the host ---------------------------------------------------------------------------------
def test_no_import_circle_in_grpo_host():
    found = circles(import_graph(ROOT / "grpo_host"))
    new = found - set(KNOWN_CIRCLES)
    gone = set(KNOWN_CIRCLES) - found
    assert not new, "import circles: " + "; ".join(" <-> ".join(sorted(c)) for c in new)
    assert not gone, "no longer circles, take them off KNOWN_CIRCLES: " + "; ".join(
        " <-> ".join(sorted(c)) for c in gone
    )


def test_nothing_below_the_cli_imports_it():
    graph = import_graph(ROOT / "grpo_host")
    assert "grpo_host.cli.common" in graph and graph["grpo_host.__main__"] == {"grpo_host.cli"}
    assert cli_importers(graph, "grpo_host.cli") == []


# The reward runtime sits below the plugin system: it is handed a RewardLookup (the plugin
# manager) by whoever binds, so a worker, a Ray actor or a test binds rewards without importing
# plugin discovery, and the plugin manager can import the reward spec without a way back up.
RUNTIME_MAY_IMPORT = {"grpo_host.errors", "grpo_host.params"}


def reaches_outside(graph: dict[str, set[str]], package: str, allowed: set[str]) -> list[tuple[str, str]]:
    """``(importer, imported)`` pairs where a module of ``package`` imports outside it and ``allowed``."""

    def inside(name: str) -> bool:
        return name == package or name.startswith(package + ".")

    return sorted(
        (name, target)
        for name, targets in graph.items()
        if inside(name)
        for target in targets
        if not inside(target) and target not in allowed
    )


def test_the_reward_runtime_does_not_import_the_plugin_system():
    graph = import_graph(ROOT / "grpo_host")
    assert "grpo_host.rewards.binding" in graph and "grpo_host.plugins.installed" in graph
    assert reaches_outside(graph, "grpo_host.rewards", RUNTIME_MAY_IMPORT) == []


def test_first_party_plugins_do_not_import_the_cli():
    offenders = []
    for package_dir in sorted(p.parent for p in (ROOT / "plugins").glob("*/*/__init__.py")):
        known = set(module_files(package_dir)) | set(module_files(ROOT / "grpo_host"))
        for name, path in module_files(package_dir).items():
            offenders += [(name, t) for t in imports_of(name, path, known) if t.startswith("grpo_host.cli")]
    assert offenders == []


# -- what plugins may import ----------------------------------------------------------------
# The public API a plugin author may use: the names of grpo_host.__all__ and these documented
# modules (the reward author's answer helpers, the backend and tracker records and helpers,
# the hook specs, the golden-case loader and harness a plugin's own tests run its cases with,
# the declared params' checks in grpo_host.params). A
# first-party plugin uses nothing else, so a third party can do all it does.
PUBLIC_MODULES = {"grpo_host.answers", "grpo_host.backends", "grpo_host.tracking", "grpo_host.hookspecs",
                  "grpo_host.golden.loader", "grpo_host.golden.harness", "grpo_host.params"}


def private_uses(path: Path, public_names: set[str]) -> list[str]:
    """What the file takes from grpo_host beyond its public API, as ``line: what``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module:
            module = node.module
            if module == "grpo_host":
                found += [
                    f"{node.lineno}: grpo_host.{a.name}" for a in node.names if a.name not in public_names
                ]
            elif module.startswith("grpo_host.") and module not in PUBLIC_MODULES:
                found.append(f"{node.lineno}: {module}")
        elif isinstance(node, ast.Import):
            found += [
                f"{node.lineno}: {a.name}"
                for a in node.names
                if a.name.startswith("grpo_host.") and a.name not in PUBLIC_MODULES
            ]
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "grpo_host"
            and node.attr not in public_names
            and f"grpo_host.{node.attr}" not in PUBLIC_MODULES
        ):
            found.append(f"{node.lineno}: grpo_host.{node.attr}")
    return sorted(found, key=lambda use: int(use.partition(":")[0]))


def public_names() -> set[str]:
    import grpo_host

    return set(grpo_host.__all__)


def test_first_party_plugins_use_only_the_public_api():
    names = public_names()
    offenders = {
        str(path.relative_to(ROOT)): uses
        for path in sorted((ROOT / "plugins").glob("*/*/**/*.py"))
        if (uses := private_uses(path, names))
    }
    assert offenders == {}


def test_public_api_check_catches_what_a_third_party_author_might_reach_for(tmp_path):
    plugin = tmp_path / "grpo_reward_mine.py"
    plugin.write_text(
        "import grpo_host\n"
        "from grpo_host import reward, _LAZY\n"
        "from grpo_host.answers import find_answer\n"
        "from grpo_host.sagemaker.job_env import cluster_backend_params\n"
        "import grpo_host.config\n"
        "\n"
        "@grpo_host.reward(name='mine')\n"
        "def mine(completion, **_):\n"
        "    from grpo_host.rewards.spec import completion_text\n"
        "    return grpo_host.plugins.manager.get_plugin_manager()\n"
    )
    assert private_uses(plugin, public_names()) == [
        "2: grpo_host._LAZY",
        "4: grpo_host.sagemaker.job_env",
        "5: grpo_host.config",
        "9: grpo_host.rewards.spec",
        "10: grpo_host.plugins",
    ]


# -- the checker, on a package built here -------------------------------------------------------
def test_checker_finds_a_circle_through_a_function_level_import_and_a_cli_import(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "cli").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "cli" / "__init__.py").write_text("from pkg import low\n")
    (pkg / "cli" / "common.py").write_text("X = 1\n")
    (pkg / "__main__.py").write_text("from pkg.cli import main\n")
    (pkg / "low.py").write_text("from . import mid\n")
    (pkg / "mid.py").write_text("def f():\n    from pkg.low import g\n")
    (pkg / "config.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.cli.common import X\n"
    )
    (pkg / "leaf.py").write_text("import os\nimport pkg.mid.nothing\n")
    graph = import_graph(pkg)
    assert graph["pkg.leaf"] == {"pkg.mid"}
    assert circles(graph) == {frozenset({"pkg.low", "pkg.mid"})}
    assert cli_importers(graph, "pkg.cli") == [("pkg.config", "pkg.cli.common")]


def test_checker_finds_a_runtime_module_that_reaches_up(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "rewards").mkdir(parents=True)
    (pkg / "plugins").mkdir()
    for init in (pkg, pkg / "rewards", pkg / "plugins"):
        (init / "__init__.py").write_text("")
    (pkg / "errors.py").write_text("")
    (pkg / "plugins" / "manager.py").write_text("from pkg.rewards import spec\n")
    (pkg / "rewards" / "spec.py").write_text("from pkg.errors import X\nfrom . import binding\n")
    (pkg / "rewards" / "binding.py").write_text(
        "def bind():\n    from pkg.plugins.manager import get_plugin_manager\n"
    )
    graph = import_graph(pkg)
    assert reaches_outside(graph, "pkg.rewards", {"pkg.errors"}) == [("pkg.rewards.binding", "pkg.plugins.manager")]
    assert reaches_outside(graph, "pkg.plugins", {"pkg.errors"}) == [("pkg.plugins.manager", "pkg.rewards.spec")]
