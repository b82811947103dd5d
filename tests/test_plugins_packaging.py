"""Every first-party plugin builds a wheel that ships its package data (golden files, catalogs)
and its `grpo_host` entry point: golden examples must travel with the reward."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

import pytest

from .conftest import REPO

PLUGINS = sorted(p.name for p in (REPO / "plugins").iterdir() if (p / "pyproject.toml").is_file())
DATA = (".yaml", ".yml", ".json", ".jsonl")


@pytest.mark.parametrize("dist", PLUGINS)
def test_wheel_ships_package_data_and_entry_point(dist, tmp_path):
    source = tmp_path / "src"  # a copy, so the build leaves no build/ in the repo
    shutil.copytree(REPO / "plugins" / dist, source, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    # Read before the build, which writes its own build/ folder into the copy.
    data = {str(f.relative_to(source)) for f in source.rglob("*") if f.suffix in DATA and f.parent != source}
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"),
         str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    archive = zipfile.ZipFile(wheel)
    names = set(archive.namelist())
    assert data <= names, sorted(data - names)
    if dist.startswith("grpo-reward-"):
        assert any("/golden/" in d for d in data), f"{dist} ships no golden files"
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "[grpo_host]" in archive.read(entry_points).decode()
