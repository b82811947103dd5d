"""`grpo-host new-reward`: a new reward plugin distribution, ready to install and test.

The files come from the templates beside this module (package data, ``*.tmpl``), filled in with
``string.Template`` (``$name``), which leaves the braces of TOML, YAML and Python alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from grpo_host.errors import GrpoHostError

NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
PREFIX = "grpo-reward-"
# template -> path in the new distribution (formatted with the names below)
FILES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "reward.py.tmpl": "{package}/__init__.py",
    "golden.yaml.tmpl": "{package}/golden/{name}.yaml",
    "grpo-golden.yaml.tmpl": "tests/grpo-golden.yaml",
    "gitignore.tmpl": ".gitignore",
}


@dataclass
class NewPlugin:
    root: Path
    reward: str  # the reward's name
    distribution: str  # grpo-reward-NAME
    package: str  # grpo_reward_NAME
    files: list[Path]


def create_reward_plugin(name: str, directory: str | Path = ".") -> NewPlugin:
    """Write ``DIRECTORY/grpo-reward-NAME/`` with one reward called NAME; refuse to overwrite."""
    name = name.strip().removeprefix(PREFIX)
    if not NAME.fullmatch(name):
        raise GrpoHostError(
            f"{name!r} is not a usable reward name: use lowercase letters, digits and single hyphens, "
            "starting with a letter (e.g. `answer-check`)"
        )
    distribution = PREFIX + name
    package = distribution.replace("-", "_")
    root = Path(directory).expanduser().resolve() / distribution
    if root.exists() and any(root.iterdir()):
        raise GrpoHostError(f"{root} already exists and is not empty; choose another --dir or name")
    values = {
        "name": name,
        "distribution": distribution,
        "package": package,
        "function": name.replace("-", "_"),
        "title": name.replace("-", " "),
    }
    templates = resources.files(__name__).joinpath("templates")
    written = []
    for template, target in FILES.items():
        text = Template(templates.joinpath(template).read_text(encoding="utf-8")).substitute(values)
        path = root / target.format(**values)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return NewPlugin(root, name, distribution, package, written)
