"""Golden files: read, validate and find them (the format is in docs/golden-format.md).

A golden file holds a reward's examples: inputs with the score or outcome the reward must give.
It is validated with pydantic, and every problem is reported as ``FILE: case 'ID' (#N), field
'NAME': what is wrong``, so an author can fix a bad file without reading a traceback. The file
of a reward is found from its ``RewardSpec``: ``spec.golden`` or ``golden/<name>.yaml``,
relative to the package of the reward's module, through ``importlib.resources`` (so it is found
in a wheel, an editable install or a source tree alike).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from grpo_host.errors import GrpoHostError
from grpo_host.rewards.spec import RewardSpec, completion_text

DEFAULT_TOLERANCE = 1e-6
SUFFIXES = (".yaml", ".yml", ".jsonl")


class GoldenFileError(GrpoHostError):
    """A golden file that cannot be read or does not follow the format."""


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None


class GoldenCase(BaseModel):
    """One example: the input, and the score (within a tolerance) or outcome expected."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    completion: str | list[ChatMessage]
    prompt: str | list[ChatMessage] | None = None
    columns: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    score: float | None = None
    tolerance: float = Field(default=DEFAULT_TOLERANCE, ge=0)
    outcome: Literal["ok", "not_applicable", "error", "timeout"] | None = None
    why: str = ""

    @field_validator("id", mode="before")
    @classmethod
    def _id_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value

    @field_validator("score")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number (use `outcome: error` for a reward that must fail)")
        return value

    @model_validator(mode="after")
    def _one_expectation(self) -> GoldenCase:
        if self.score is None and self.outcome is None:
            raise ValueError("needs an expectation: `score: <number>` or `outcome: not_applicable|error|timeout`")
        if self.score is not None and self.outcome not in (None, "ok"):
            raise ValueError(f"has both `score` and `outcome: {self.outcome}`; keep exactly one")
        if self.outcome == "ok" and self.score is None:
            raise ValueError("`outcome: ok` needs a `score`")
        if "prompt" in self.columns:
            raise ValueError("puts `prompt` under `columns`; write it as the case's own `prompt:` key")
        return self

    @property
    def expected_outcome(self) -> str:
        return "ok" if self.score is not None else str(self.outcome)

    def completion_value(self) -> str | list[dict[str, Any]]:
        """The completion as the runtime takes it: text, or a list of message dicts."""
        if isinstance(self.completion, str):
            return self.completion
        return [m.model_dump(exclude_none=True) for m in self.completion]

    def completion_text(self) -> str:
        return completion_text(self.completion_value())[0]

    def prompt_value(self) -> str | list[dict[str, Any]] | None:
        if self.prompt is None or isinstance(self.prompt, str):
            return self.prompt
        return [m.model_dump(exclude_none=True) for m in self.prompt]

    def sample_columns(self) -> dict[str, Any]:
        """The dataset columns this case gives the reward (``prompt`` among them, when set)."""
        columns = dict(self.columns)
        if self.prompt is not None:
            columns["prompt"] = self.prompt_value()
        return columns


class GoldenFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reward: str = Field(min_length=1)
    cases: list[GoldenCase] = Field(min_length=1)
    path: str = ""  # where it was read from; filled in by the loader

    @model_validator(mode="after")
    def _unique_ids(self) -> GoldenFile:
        seen: set[str] = set()
        for case in self.cases:
            if case.id in seen:
                raise ValueError(f"case id {case.id!r} is used twice; ids must be unique within a file")
            seen.add(case.id)
        return self

    def case(self, case_id: str) -> GoldenCase:
        for case in self.cases:
            if case.id == case_id:
                return case
        raise KeyError(case_id)


# -- reading -----------------------------------------------------------------------------------
def load_golden_file(path: str | Path | Traversable, reward: str | None = None) -> GoldenFile:
    """Read and validate a golden file (YAML, or JSON lines with one case per line).

    ``reward`` is the name the file must be for; a file for another reward is an error, since
    it would test the wrong thing silently.
    """
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8") if not isinstance(path, str) else Path(path).read_text("utf-8")
    except FileNotFoundError:
        raise GoldenFileError(f"{name}: golden file not found")
    except (OSError, UnicodeDecodeError) as exc:
        raise GoldenFileError(f"{name}: cannot read golden file ({exc})")
    return parse_golden_text(text, name, reward=reward)


def parse_golden_text(text: str, name: str, reward: str | None = None) -> GoldenFile:
    data = _parse_jsonl(text, name, reward) if name.endswith(".jsonl") else _parse_yaml(text, name)
    if not isinstance(data, Mapping):
        raise GoldenFileError(
            f"{name}: a golden file is a mapping with `reward:` and `cases:` (see docs/golden-format.md), "
            f"not a {type(data).__name__}"
        )
    try:
        golden = GoldenFile.model_validate({**data, "path": name})
    except ValidationError as exc:
        raise GoldenFileError(_explain(name, data, exc)) from None
    if reward is not None and golden.reward != reward:
        raise GoldenFileError(
            f"{name}: this golden file is for reward {golden.reward!r}, but it is the file of reward "
            f"{reward!r}; fix `reward:` or point `golden=` of {reward!r} at the right file"
        )
    return golden


def _parse_yaml(text: str, name: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise GoldenFileError(f"{name}{where}: not valid YAML ({problem})")


def _parse_jsonl(text: str, name: str, reward: str | None) -> dict[str, Any]:
    """JSON lines: one case per line; a line ``{"reward": NAME}`` alone may name the reward."""
    cases: list[Any] = []
    named = None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise GoldenFileError(f"{name}:{number}: not a JSON line ({exc.msg})")
        if isinstance(row, dict) and set(row) == {"reward"}:
            named = row["reward"]
        else:
            cases.append(row)
    return {"reward": named or reward or Path(name).stem, "cases": cases}


def _explain(name: str, data: Mapping[str, Any], exc: ValidationError) -> str:
    """One line per problem, naming the case by its id and the field by its key."""
    cases = data.get("cases")
    raw_cases: list[Any] = cases if isinstance(cases, list) else []
    errors = exc.errors()
    # A union (text or chat messages) fails once per branch; when a deeper error exists for the
    # same field, the user meant that branch, so the shallow "should be a valid string" goes.
    keys = [tuple(_user_loc(list(e["loc"]))) for e in errors]
    lines = []
    for error, key in zip(errors, keys, strict=True):
        if any(other != key and other[: len(key)] == key for other in keys):
            continue
        loc = list(error["loc"])
        where = ""
        if len(loc) >= 2 and loc[0] == "cases" and isinstance(loc[1], int):
            index = loc[1]
            raw = raw_cases[index] if index < len(raw_cases) else None
            case_id = raw.get("id") if isinstance(raw, Mapping) else None
            where = f"case {case_id!r} (#{index + 1})" if case_id is not None else f"case #{index + 1} (no id)"
            field = _field_name(loc[2:])
            if field:
                where += f", field {field!r}"
        elif loc:
            where = f"field {_field_name(loc)!r}"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key; allowed: " + ", ".join(_allowed_keys(loc))
        elif error["type"] == "missing":
            message = "missing (required)"
        lines.append(f"{where}: {message}" if where else message)
    unique = list(dict.fromkeys(lines))
    return f"{name}: invalid golden file (see docs/golden-format.md):\n  " + "\n  ".join(unique)


def _user_loc(loc: list[Any]) -> list[Any]:
    # pydantic names union branches in the location (`str`, `list[ChatMessage]`); users never
    # wrote those, so keep only the keys and list positions they did write.
    return [p for p in loc if isinstance(p, int) or not _is_type_label(str(p))]


def _field_name(loc: list[Any]) -> str:
    return ".".join(str(p) for p in _user_loc(loc))


def _is_type_label(part: str) -> bool:
    return part in ("str", "float", "int", "dict", "list", "none") or "[" in part or part.startswith(
        ("function-", "literal")
    ) or part in ("ChatMessage",)


def _allowed_keys(loc: list[Any]) -> list[str]:
    in_case = len(loc) >= 2 and loc[0] == "cases"
    if in_case and len(loc) > 3:
        return list(ChatMessage.model_fields)
    model = GoldenCase if in_case else GoldenFile
    return [k for k in model.model_fields if k != "path"]


# -- finding a reward's file -------------------------------------------------------------------
def golden_location(spec: RewardSpec) -> tuple[Traversable, str]:
    """The folder a reward's golden path is relative to, and that path.

    The folder is the package of the reward's module (the module's own folder when it is a
    top-level module); the path is ``spec.golden`` or ``golden/<name>.yaml``.
    """
    module_name = getattr(spec.target, "__module__", "") or ""
    module = sys.modules.get(module_name)
    relative = spec.golden or f"golden/{spec.name}.yaml"
    if module is not None and hasattr(module, "__path__"):
        return resources.files(module_name), relative
    package = module_name.rpartition(".")[0]
    if package:
        return resources.files(package), relative
    module_file = getattr(module, "__file__", None)
    if module_file:
        return Path(module_file).resolve().parent, relative
    raise GoldenFileError(f"reward {spec.name!r}: cannot tell where its module {module_name!r} lives")


def find_golden_file(spec: RewardSpec) -> Traversable | None:
    """The reward's golden file, or None when it has none.

    With ``golden=`` set, that exact path. Otherwise ``golden/<name>.yaml``, then ``.yml`` and
    ``.jsonl`` beside it.
    """
    base, relative = golden_location(spec)
    candidates = [relative]
    if not spec.golden:
        stem = relative.rsplit(".", 1)[0]
        candidates += [stem + suffix for suffix in SUFFIXES if not relative.endswith(suffix)]
    for candidate in candidates:
        node = _join(base, candidate)
        if node.is_file():
            return node
    return None


def _join(base: Traversable, relative: str) -> Traversable:
    node = base
    for part in Path(relative).parts:  # one part at a time: older Traversables take one
        node = node.joinpath(part)
    return node


def expected_golden_path(spec: RewardSpec) -> str:
    """Where the golden file should be, for messages."""
    base, relative = golden_location(spec)
    return str(_join(base, relative))


def load_golden_for(spec: RewardSpec) -> GoldenFile | None:
    """The reward's validated golden file, or None when it ships none."""
    path = find_golden_file(spec)
    if path is None:
        return None
    return load_golden_file(path, reward=spec.name)


__all__ = [
    "ChatMessage", "GoldenCase", "GoldenFile", "GoldenFileError", "load_golden_file",
    "parse_golden_text", "golden_location", "find_golden_file", "expected_golden_path", "load_golden_for",
]
