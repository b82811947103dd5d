"""Shared fixtures: third-party plugins built in a temp dir, and the CLI run as a user runs it.

`installed_plugin` writes a real distribution (package + ``*.dist-info`` with its entry points)
into a folder that goes on ``PYTHONPATH``/``sys.path``: ``importlib.metadata`` sees it exactly as
it sees a pip-installed one, without pip's cost. One test also does a real ``pip install``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def write_distribution(
    root: Path, dist: str, modules: dict[str, str], entry_points: dict[str, str], version: str = "0.1.0"
) -> Path:
    """A distribution `dist` with `modules` (name -> source) and `grpo_host` entry points."""
    root.mkdir(parents=True, exist_ok=True)
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[grpo_host]\n{lines}\n")
    return root


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A folder on sys.path and PYTHONPATH (for subprocesses) to write distributions into."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    import importlib

    importlib.invalidate_caches()
    return root


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, for a server a test starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*args: str, env: dict[str, str] | None = None, input: str | None = None, timeout: float = 120):
    """Run `python -m grpo_host ARGS` in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "grpo_host", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        input=input,
        timeout=timeout,
    )
