"""Rewrite golden expectations from the reward's current output (``--grpo-update-golden``).

Only the expectation of each changed case is rewritten, in place in the file's text: comments,
key order, quoting and every other case stay as the author wrote them, so ``git diff`` shows
exactly the reviewed change. Every change is printed. Only scores and ``not_applicable`` are
written; an error or a timeout is never blessed by a flag.
"""

from __future__ import annotations

import difflib
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from grpo_host.errors import GrpoHostError
from grpo_host.golden.loader import parse_golden_text


@dataclass(frozen=True)
class GoldenUpdate:
    path: str
    case_id: str
    old: str  # as it reads in a report: "score 0.5", "outcome not_applicable"
    outcome: str  # the new expectation: ok (with score) or not_applicable
    score: float | None = None

    @property
    def new(self) -> str:
        return f"score {format_score(self.score)}" if self.outcome == "ok" else f"outcome {self.outcome}"


def format_score(value: float | None) -> str:
    """A float as YAML reads it back exactly enough (PyYAML wants a dot before an exponent)."""
    text = repr(float(f"{float(value):.12g}"))
    mantissa, e, exponent = text.partition("e")
    if e and "." not in mantissa:
        text = f"{mantissa}.0e{exponent}"
    return text


def apply_updates(updates: Sequence[GoldenUpdate]) -> list[str]:
    """Write the updates, file by file; returns the report lines (changes and a unified diff)."""
    lines: list[str] = []
    by_file: dict[str, list[GoldenUpdate]] = defaultdict(list)
    for update in updates:
        by_file[update.path].append(update)
    for path, changes in by_file.items():
        file = Path(path)
        if not file.is_file():
            lines.append(f"{path}: not a file on disk (installed from a wheel?); install the plugin with "
                         "`pip install -e` to update its golden file. Not updated:")
            lines += [f"  {u.case_id}: {u.old} -> {u.new}" for u in changes]
            continue
        before = file.read_text(encoding="utf-8")
        try:
            after = rewrite_golden_text(before, path, changes)
        except GrpoHostError as exc:
            lines.append(f"{path}: not updated: {exc}")
            continue
        file.write_text(after, encoding="utf-8")
        lines.append(f"{path}: updated {len(changes)} golden case(s); review with `git diff`:")
        lines += [f"  {u.case_id}: {u.old} -> {u.new}" for u in changes]
        diff = difflib.unified_diff(before.splitlines(), after.splitlines(), path, path, n=0, lineterm="")
        lines += [f"  {d}" for d in diff]
    return lines


def rewrite_golden_text(text: str, name: str, updates: Sequence[GoldenUpdate]) -> str:
    """The file's text with the updates applied; checked to parse back to the new values."""
    if name.endswith(".jsonl"):
        new_text = _rewrite_jsonl(text, updates)
    else:
        new_text = _rewrite_yaml(text, name, updates)
    golden = parse_golden_text(new_text, name)
    for update in updates:
        case = golden.case(update.case_id)
        if case.expected_outcome != update.outcome or (
            update.outcome == "ok" and abs(case.score - update.score) > max(case.tolerance, 1e-9)
        ):
            raise GrpoHostError(f"case {update.case_id!r} did not read back as {update.new}; edit it by hand")
    return new_text


def _rewrite_yaml(text: str, name: str, updates: Sequence[GoldenUpdate]) -> str:
    root = yaml.compose(text)
    cases = _value(root, "cases") if isinstance(root, yaml.MappingNode) else None
    if not isinstance(cases, yaml.SequenceNode):
        raise GrpoHostError(f"{name}: no `cases:` list found")
    by_id = {}
    for node in cases.value:
        if isinstance(node, yaml.MappingNode):
            case_id = _value(node, "id")
            if isinstance(case_id, yaml.ScalarNode):
                by_id[case_id.value] = node
    edits: list[tuple[int, int, str]] = []
    for update in updates:
        node = by_id.get(update.case_id)
        if node is None:
            raise GrpoHostError(f"case {update.case_id!r} not found")
        score, outcome = _pair(node, "score"), _pair(node, "outcome")
        if update.outcome == "ok":
            if score is not None:
                edits.append(_span(score[1], format_score(update.score)))
            elif outcome is not None:
                edits.append((outcome[0].start_mark.index, outcome[1].end_mark.index,
                              f"score: {format_score(update.score)}"))
            else:
                raise GrpoHostError(f"case {update.case_id!r} has neither `score` nor `outcome`")
        else:
            if outcome is not None and score is not None:
                raise GrpoHostError(f"case {update.case_id!r} has both `score` and `outcome`; edit it by hand")
            if outcome is not None:
                edits.append(_span(outcome[1], update.outcome))
            elif score is not None:
                edits.append((score[0].start_mark.index, score[1].end_mark.index, f"outcome: {update.outcome}"))
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


def _value(mapping: yaml.MappingNode, key: str) -> yaml.Node | None:
    pair = _pair(mapping, key)
    return pair[1] if pair else None


def _pair(mapping: yaml.MappingNode, key: str) -> tuple[yaml.Node, yaml.Node] | None:
    for k, v in mapping.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return k, v
    return None


def _span(node: yaml.Node, replacement: str) -> tuple[int, int, str]:
    return node.start_mark.index, node.end_mark.index, replacement


def _rewrite_jsonl(text: str, updates: Sequence[GoldenUpdate]) -> str:
    wanted = {u.case_id: u for u in updates}
    out = []
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        row = json.loads(stripped) if stripped else None
        update = wanted.get(str(row.get("id"))) if isinstance(row, dict) else None
        if update is None:
            out.append(line)
            continue
        row.pop("score", None)
        row.pop("outcome", None)
        if update.outcome == "ok":
            row["score"] = float(format_score(update.score))
        else:
            row["outcome"] = update.outcome
        out.append(json.dumps(row, ensure_ascii=False) + ("\n" if line.endswith("\n") else ""))
    return "".join(out)
