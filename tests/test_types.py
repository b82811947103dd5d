"""The type checker over ``grpo_host`` (mypy, configured in pyproject.toml): the package ships
``py.typed``, so what it promises is checked. The public API modules are strict there.

mypy rather than pyright: it installs from PyPI as a Python wheel (pyright needs node, which
its wrapper downloads at first run), it reads the config from pyproject.toml with
per-module overrides, and pydantic ships a mypy plugin for the run config's models.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy", reason="pip install -e '.[test]' installs mypy")

ROOT = Path(__file__).resolve().parent.parent


def mypy(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mypy", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow  # a cold cache (CI's fresh clone) reads the whole package: tens of seconds
def test_grpo_host_type_checks():
    out = mypy()
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "Success: no issues found" in out.stdout


@pytest.mark.slow
def test_the_config_is_strict_on_the_public_api_and_catches_a_wrong_type(tmp_path):
    """The project's own config, over a stand-in package named ``grpo_host``: an untyped
    function fails in a public API module (``grpo_host.overrides``) and passes in another; a
    wrong return type fails anywhere. So the check is live, and the strict list is applied."""
    package = tmp_path / "grpo_host"
    package.mkdir()
    (package / "__init__.py").write_text("")
    untyped = "def untyped(x):\n    return x\n"
    (package / "overrides.py").write_text(untyped)
    (package / "answers.py").write_text(untyped + "\n\ndef wrong() -> int:\n    return 'not an int'\n")
    out = mypy("--config-file", str(ROOT / "pyproject.toml"), "--no-incremental", cwd=tmp_path)
    assert out.returncode == 1, out.stdout
    assert "grpo_host/overrides.py:1: error: Function is missing a type annotation" in out.stdout
    assert "grpo_host/answers.py:1:" not in out.stdout
    assert (
        'grpo_host/answers.py:6: error: Incompatible return value type (got "str", expected "int")'
        in out.stdout
    )
