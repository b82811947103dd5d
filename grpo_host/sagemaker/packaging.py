"""What a job installs: the host and every plugin the run uses, as they are installed here.

Each distribution is found through the plugin manager (which plugin registered the run's
rewards, backend and trackers) and ``importlib.metadata``, and shipped by how it was installed
(PEP 610's ``direct_url.json``):

- from a local folder, editable or not: a wheel built from that folder now, so uncommitted
  edits travel too (the folder is copied first, so no build files land in it);
- from a local wheel file: that wheel;
- from a VCS URL: the same URL and commit as a requirement;
- from an index: ``name==version``.

Local distributions that a shipped one requires (a plugin on another local plugin) are
shipped the same way. The training stack (trl, transformers, ...) is pinned to the versions
installed here; torch is left to the training image, which carries a CUDA build.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from grpo_host.errors import GrpoHostError
from grpo_host.plugins.manager import PluginManager, normalize_dist

HOST_DIST = "grpo-host"
SOURCE_TARBALL = "grpo-host-source.tar.gz"
RUN_CONFIG_NAME = "run.yaml"
REQUIREMENTS_NAME = "requirements.txt"
MANIFEST_NAME = "grpo-host-manifest.json"
TORCHRUN_ENTRY = "grpo_host_job.py"
# Left to the image: its torch is built for its CUDA; a pinned CPU torch from here would not be.
IMAGE_PROVIDED = {"torch"}
COPY_IGNORE = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__", ".venv", "venv",
                                     ".pytest_cache", ".ruff_cache", ".mypy_cache", "node_modules", "grpo-runs",
                                     ".ipynb_checkpoints", "*.pyc")

TORCHRUN_ENTRY_SOURCE = '''"""Run by torchrun in each training process of a SageMaker job (written by grpo-host launch)."""

import sys

from grpo_host.sagemaker.entry import torchrun_main

if __name__ == "__main__":
    sys.exit(torchrun_main())
'''


@dataclass
class ShippedDist:
    """One distribution the job installs, and how."""

    name: str
    version: str
    how: str  # built | wheel | vcs | index
    origin: str = ""  # the folder, wheel, or URL it came from
    wheel: str | None = None  # file name under wheels/
    sha256: str | None = None
    requirement: str = ""  # the line in requirements.txt
    editable: bool = False
    git_commit: str | None = None
    git_dirty: bool | None = None


@dataclass
class JobSource:
    """The job's source folder, ready to be packed."""

    root: Path
    dists: list[ShippedDist]
    requirements: list[str]
    config_path: Path
    tarball: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def manifest(self) -> dict[str, Any]:
        return {"distributions": [asdict(d) for d in self.dists], "requirements": self.requirements, **self.extra}


# -- which distributions the run uses --------------------------------------------------------
def plugin_dists_for_run(rewards: Iterable[str], backend: str | None, trackers: Iterable[str] = (),
                         manager: PluginManager | None = None) -> list[str]:
    """The distributions that provide the run's rewards, backend and trackers."""
    from grpo_host.plugins.manager import get_plugin_manager

    pm = manager or get_plugin_manager()
    dists: list[str] = []

    def add(name: str) -> None:
        if name and normalize_dist(name) not in {normalize_dist(d) for d in dists}:
            dists.append(name)

    for reward in rewards:
        spec = pm.get_reward(reward)  # raises the unknown-name error with a did-you-mean
        if spec.plugin_version == "import-path":
            add(_dist_of_module(reward.partition(":")[0], f"reward {reward!r}"))
        else:
            add(spec.plugin)
    if backend:
        add(pm.get_backend(backend).plugin)
    for tracker in trackers:
        owners = [p.name for p in pm.plugins if tracker in p.trackers]
        if not owners:
            raise GrpoHostError(f"tracker {tracker!r} is not installed; installed: "
                                f"{', '.join(sorted(pm.trackers)) or '(none)'}")
        add(owners[0])
    return [d for d in dists if normalize_dist(d) != HOST_DIST]


def _dist_of_module(module: str, what: str) -> str:
    top = module.split(".")[0]
    owners = metadata.packages_distributions().get(top, [])
    if not owners:
        raise GrpoHostError(
            f"{what} comes from module {module!r}, which no installed distribution provides, so the job "
            f"cannot install it; make it a plugin (`grpo-host new-reward`) and `pip install -e` it"
        )
    return owners[0]


def with_local_requirements(names: Sequence[str]) -> list[str]:
    """``names`` plus the locally installed (folder or wheel) distributions they require."""
    result = list(names)
    seen = {normalize_dist(n) for n in names}
    queue = list(names)
    while queue:
        dist = _distribution(queue.pop())
        for req in dist.requires or []:
            name = _requirement_name(req)
            if not name or normalize_dist(name) in seen or "extra ==" in req.replace('"', "").replace("'", ""):
                continue
            try:
                dep = metadata.distribution(name)
            except metadata.PackageNotFoundError:
                continue
            if _direct_url(dep).get("url", "").startswith("file:"):
                seen.add(normalize_dist(name))
                result.append(dep.metadata["Name"])
                queue.append(dep.metadata["Name"])
    return result


# -- building ----------------------------------------------------------------------------------
def ship_distributions(names: Sequence[str], wheel_dir: Path) -> list[ShippedDist]:
    """Wheels (or requirement lines) for ``names``, in that order."""
    wheel_dir.mkdir(parents=True, exist_ok=True)
    shipped: list[ShippedDist] = []
    to_build: list[tuple[ShippedDist, Path]] = []
    for name in names:
        dist = _distribution(name)
        info = _direct_url(dist)
        item = ShippedDist(name=dist.metadata["Name"], version=dist.version, how="index")
        url = info.get("url", "")
        if url.startswith("file:"):
            path = Path(unquote(urlparse(url).path))
            item.origin = str(path)
            if "dir_info" in info:
                item.editable = bool(info["dir_info"].get("editable"))
                if not path.is_dir():
                    raise GrpoHostError(f"{item.name} was installed from {path}, which is gone; reinstall it "
                                        f"(pip install -e FOLDER) so the job can get the same code")
                item.how = "built"
                item.git_commit, item.git_dirty = _git_state(path)
                to_build.append((item, path))
            elif path.suffix == ".whl" and path.is_file():
                item.how = "wheel"
                shutil.copy2(path, wheel_dir / path.name)
                item.wheel = path.name
            elif path.is_file():  # an sdist: build it like a folder
                item.how = "built"
                to_build.append((item, path))
            else:
                raise GrpoHostError(f"{item.name} was installed from {path}, which is gone; reinstall it")
        elif "vcs_info" in info:
            vcs = info["vcs_info"]
            item.how, item.origin = "vcs", url
            item.requirement = f"{item.name} @ {vcs.get('vcs', 'git')}+{url}@{vcs.get('commit_id', '')}"
        else:
            item.requirement = f"{item.name}=={item.version}"
        shipped.append(item)
    if to_build:
        built = _build_wheels([p for _, p in to_build], wheel_dir)
        for (item, _), wheel in zip(to_build, built, strict=True):
            item.wheel = wheel.name
    for item in shipped:
        if item.wheel:
            item.sha256 = hashlib.sha256((wheel_dir / item.wheel).read_bytes()).hexdigest()
            item.requirement = f"./wheels/{item.wheel}"
    return shipped


def _build_wheels(sources: Sequence[Path], wheel_dir: Path) -> list[Path]:
    """One ``pip wheel`` over copies of the source folders; returns each one's wheel in order."""
    with tempfile.TemporaryDirectory(prefix="grpo-host-build-") as tmp:
        copies = []
        for i, src in enumerate(sources):
            if src.is_dir():
                dst = Path(tmp) / f"{i}-{src.name}"
                _copy_source(src, dst)
            else:
                dst = Path(tmp) / src.name
                shutil.copy2(src, dst)
            copies.append(dst)
        out = Path(tmp) / "out"
        out.mkdir()
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check",
               "--wheel-dir", str(out)]
        # Without isolation the build reuses this environment's setuptools (no download); a
        # project whose backend is not installed here falls back to an isolated build.
        proc = subprocess.run([*cmd, "--no-build-isolation", *map(str, copies)], capture_output=True, text=True)
        if proc.returncode != 0:
            proc = subprocess.run([*cmd, *map(str, copies)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise GrpoHostError("building wheels of " + ", ".join(map(str, sources)) + " failed:\n"
                                + (proc.stderr or proc.stdout)[-3000:])
        wheels = {_wheel_project(w): w for w in out.glob("*.whl")}
        result = []
        for src, copy in zip(sources, copies, strict=True):
            name = _project_name(copy)
            wheel = wheels.get(normalize_dist(name)) if name else None
            if wheel is None:
                raise GrpoHostError(f"pip built no wheel for {src} (built: {', '.join(w.name for w in wheels.values())})")
            target = wheel_dir / wheel.name
            shutil.move(str(wheel), target)
            result.append(target)
        return result


def _copy_source(src: Path, dst: Path) -> None:
    """The files git would ship (tracked and untracked-not-ignored), else all but build litter."""
    files = _git_files(src)
    if files is None:
        shutil.copytree(src, dst, ignore=COPY_IGNORE, symlinks=True)
        return
    for rel in files:
        source = src / rel
        if not source.is_file():
            continue
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def _git_files(folder: Path) -> list[str] | None:
    try:
        proc = subprocess.run(["git", "-C", str(folder), "ls-files", "-z", "--cached", "--others",
                               "--exclude-standard"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return [p for p in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if p]


def _git_state(folder: Path) -> tuple[str | None, bool | None]:
    try:
        head = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=30)
        if head.returncode != 0:
            return None, None
        dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--", "."], capture_output=True,
                               text=True, timeout=60)
        return head.stdout.strip(), bool(dirty.stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        return None, None


def _project_name(path: Path) -> str | None:
    """The project name a source folder or sdist builds."""
    if path.is_dir():
        pyproject = path / "pyproject.toml"
        if pyproject.is_file():
            text = pyproject.read_text(encoding="utf-8")
            try:
                import tomllib  # type: ignore[import-not-found, unused-ignore]  # Python 3.11+

                name = tomllib.loads(text).get("project", {}).get("name")
            except ImportError:  # Python 3.10: the [project] table's name line
                project = text.split("[project]", 1)[-1].split("\n[", 1)[0]
                match = re.search(r"^name\s*=\s*[\"']([^\"']+)", project, re.M)
                name = match.group(1) if match else None
            if name:
                return name
        setup_cfg = path / "setup.cfg"
        if setup_cfg.is_file():
            import configparser

            parser = configparser.ConfigParser()
            parser.read(setup_cfg)
            if parser.has_option("metadata", "name"):
                return parser.get("metadata", "name")
        return None
    stem = path.name
    for suffix in (".tar.gz", ".zip"):
        stem = stem.removesuffix(suffix)
    return stem.rsplit("-", 1)[0]


def _wheel_project(wheel: Path) -> str:
    return normalize_dist(wheel.name.split("-")[0])


def _distribution(name: str) -> metadata.Distribution:
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        raise GrpoHostError(f"distribution {name!r} is not installed here, so it cannot be shipped to the job")


def _direct_url(dist: metadata.Distribution) -> dict[str, Any]:
    text = dist.read_text("direct_url.json")
    if not text:
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return {}


def _requirement_name(req: str) -> str | None:
    try:
        from packaging.requirements import Requirement

        return Requirement(req).name
    except Exception:  # noqa: BLE001 - a malformed line in someone's metadata
        return None


# -- the training stack --------------------------------------------------------------------------
def stack_requirements(extras: Sequence[str] = ("train",), pin: bool = True) -> list[str]:
    """The host's extras (trl, transformers, ...) as requirement lines, pinned to this machine's
    versions when ``pin`` and installed here; torch is left to the image."""
    from packaging.requirements import Requirement

    lines: list[str] = []
    for raw in metadata.requires(HOST_DIST) or []:
        req = Requirement(raw)
        if req.marker is None or not any(req.marker.evaluate({"extra": e}) for e in extras):
            continue
        if normalize_dist(req.name) in IMAGE_PROVIDED:
            continue
        line = f"{req.name}{req.specifier}"
        if pin:
            try:
                line = f"{req.name}=={metadata.version(req.name)}"
            except metadata.PackageNotFoundError:
                pass
        if line not in lines:
            lines.append(line)
    return lines


# -- the source folder ---------------------------------------------------------------------------
def write_job_source(root: Path, *, plugin_dists: Sequence[str], config_yaml: str, extras: Sequence[str],
                     pin_versions: bool, more_requirements: Sequence[str] = (), extra_manifest: dict | None = None
                     ) -> JobSource:
    """Write wheels/, requirements.txt, run.yaml, the torchrun entry and a manifest under
    ``root``, and pack them into ``root/../grpo-host-source.tar.gz``."""
    if root.exists():  # a kept --source-dir from an earlier launch: no stale wheels in this one
        shutil.rmtree(root)
    root.mkdir(parents=True)
    names = with_local_requirements([HOST_DIST, *plugin_dists])
    dists = ship_distributions(names, root / "wheels")
    requirements = [d.requirement for d in dists]
    for line in [*stack_requirements(extras, pin_versions), *more_requirements]:
        if line not in requirements:
            requirements.append(line)
    (root / REQUIREMENTS_NAME).write_text(
        "# Written by grpo-host launch sagemaker: the host and plugins as they were installed where the\n"
        "# job was launched, and the training stack at the versions used there.\n"
        + "\n".join(requirements) + "\n", encoding="utf-8")
    config_path = root / RUN_CONFIG_NAME
    config_path.write_text(config_yaml, encoding="utf-8")
    (root / TORCHRUN_ENTRY).write_text(TORCHRUN_ENTRY_SOURCE, encoding="utf-8")
    source = JobSource(root=root, dists=dists, requirements=requirements, config_path=config_path,
                       extra=dict(extra_manifest or {}))
    (root / MANIFEST_NAME).write_text(json.dumps(source.manifest(), indent=2) + "\n", encoding="utf-8")
    source.tarball = pack(root, root.parent / SOURCE_TARBALL)
    return source


def pack(root: Path, target: Path) -> Path:
    """A gzip tarball of ``root``'s contents, with neutral owners."""

    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(target, "w:gz") as tar:
        for path in sorted(root.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(root)), recursive=False, filter=clean)
    return target
