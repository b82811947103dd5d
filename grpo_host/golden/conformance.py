"""The conformance suite every reward inherits, whatever it scores.

The checks (each one test item; see docs/reward-testing.md):

- ``one-score-per-sample``: a batch of N samples gives N results (a batched reward that
  returns the wrong number of scores fails here).
- ``finite-or-none``: every result is a finite float or None, never NaN, inf or another type,
  and within the reward's declared ``score_range``.
- ``deterministic``: the same batch scored twice gives the same results.
- ``batch-order``: the batch shuffled gives each sample the same result.
- ``batch-size``: each sample scored alone gives the result it got in the batch.
- ``survives-empty``, ``survives-whitespace``, ``survives-very-long``, ``survives-odd-text``
  (lone surrogates, control characters, mixed scripts), ``survives-chat-format``: the reward
  returns a score or None on these inputs, never an error or a timeout.
- ``no-torch-on-import``: importing the plugin's entry point in a fresh interpreter imports
  neither torch, transformers nor trl (they would make every ``grpo-host`` command slow).

The batch is the golden cases that share the honest baseline's params (cases that expect a
timeout are left out: they would only slow every check down) plus the odd inputs above, built
on the baseline's prompt and columns so that a reward that needs ``answer`` gets one. A reward
with no scored golden case is checked on a guessed baseline (a ``<think>``/``<answer>``
completion, the gold ``4`` in ``answer`` and every column it requires); when the reward cannot
score the guess, the input checks are skipped rather than blamed on the wrong thing.
Timeouts are load-dependent, so a sample that timed out in either run is not compared.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from grpo_host.golden.results import (
    CheckedReward,
    CheckResult,
    GoldenResult,
    describe_result,
    golden_samples,
    same_result,
)
from grpo_host.rewards.runtime import SampleResult, prepare_samples

CHECKS = (
    "one-score-per-sample", "finite-or-none", "deterministic", "batch-order", "batch-size",
    "survives-empty", "survives-whitespace", "survives-very-long", "survives-odd-text",
    "survives-chat-format", "no-torch-on-import",
)
# Importing any of these at plugin load makes `grpo-host --help` take seconds (llm #732).
FORBIDDEN_AT_IMPORT = ("torch", "transformers", "trl")
# Worth knowing about, but light enough not to fail a plugin for.
REPORTED_AT_IMPORT = ("sympy", "math_verify", "numpy", "scipy", "datasets", "tokenizers", "accelerate")

FILLER = (
    "Let me think about this step by step, checking each part of the problem carefully before "
    "I commit to an answer, and writing down what I know so far.\n"
)


@dataclass
class Input:
    label: str  # shown in messages: "golden:well-formed", "empty", ...
    check: str | None  # the survives-* check it belongs to, if any
    completion: Any  # text or chat messages
    columns: dict[str, Any]


def odd_inputs(text: str, prompt: Any, columns: dict[str, Any]) -> list[Input]:
    """The inputs a policy can produce that a reward author rarely thinks of."""
    prompt_text = prompt if isinstance(prompt, str) else "Solve the problem."
    long_prose = (FILLER * (60_000 // len(FILLER) + 1))[:60_000]
    rows = [
        ("empty", "survives-empty", ""),
        ("whitespace", "survives-whitespace", " \n\t \r\n   \u00a0"),
        ("very-long", "survives-very-long", long_prose + "\n" + text),
        # A policy stuck in a loop writes one endless "word" before it stops.
        ("very-long-line", "survives-very-long", ("ha" * 25_000) + " " + text),
        ("lone-surrogates", "survives-odd-text", "\ud800 " + text + " \udfff\udc80"),
        ("control-chars", "survives-odd-text", "\x00\x01\x07\x1b[31m" + text + "\x7f\x9b\u2028\x0c"),
        ("mixed-scripts", "survives-odd-text", "Ответ: 四十二 ٤٢ 𝟒𝟐 e\u0301 \u202e" + text + " \ufeff\u200b🙂"),
        ("chat-assistant", "survives-chat-format", [{"role": "assistant", "content": text}]),
        ("chat-conversation", "survives-chat-format", [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": prompt_text},
            {"role": "assistant", "content": text},
        ]),
        ("chat-content-parts", "survives-chat-format",
         [{"role": "assistant", "content": [{"type": "text", "text": text}]}]),
    ]
    return [Input(label, check, completion, dict(columns)) for label, check, completion in rows]


def _samples(inputs: list[Input]) -> list[dict[str, Any]]:
    samples = []
    for item in inputs:
        samples += prepare_samples([item.completion], {k: [v] for k, v in item.columns.items()})
    return samples


def run_conformance(harness: CheckedReward) -> dict[str, CheckResult]:
    spec = harness.spec
    name = spec.name
    results = {"no-torch-on-import": import_check(spec)}
    golden = harness.golden
    baseline = harness.checks_baseline()
    params, columns, text = baseline.params, baseline.columns, baseline.text
    same_params = [c for c in (golden.cases if golden else [])
                   if c.params == params and c.expected_outcome != "timeout"]
    inputs = [Input(f"golden:{c.id}", None, c.completion_value(), c.sample_columns()) for c in same_params]
    if baseline.guessed:
        inputs.append(Input("guessed-answer", None, text, dict(columns)))
    inputs += odd_inputs(text, columns.get("prompt"), columns)
    samples = golden_samples(same_params) + _samples(inputs[len(same_params):])

    first = harness.score(samples, params)
    if baseline.guessed:
        guessed = first[len(same_params)]
        if guessed.outcome in ("error", "timeout"):
            # The inputs are built on the guess: a reward that cannot score it needs other
            # columns or another format, and every check below would blame the wrong thing.
            reason = (f"the reward gave {describe_result(guessed)} on {baseline.described}, which the inputs "
                      "are built on; write golden cases so that the checks use the reward's real inputs")
            for check in CHECKS[:-1]:
                results[check] = CheckResult(name, "conformance", check, "skipped", reason)
            return _ordered(results)

    again = harness.score(samples, params)
    order = list(range(len(samples)))
    random.Random(0).shuffle(order)
    if order == sorted(order):
        order.reverse()
    shuffled = harness.score([samples[i] for i in order], params)
    by_position = [SampleResult("error", None)] * len(samples)
    for position, index in enumerate(order):
        by_position[index] = shuffled[position]
    alone = [harness.score([sample], params)[0] for sample in samples]
    results["one-score-per-sample"] = _one_score(name, inputs, first, len(samples))
    results["finite-or-none"] = _finite(harness, inputs, first)
    results["deterministic"] = _compare(name, "deterministic", inputs, first, again, "scored again")
    results["batch-order"] = _compare(name, "batch-order", inputs, first, by_position, "in a shuffled batch")
    results["batch-size"] = _compare(name, "batch-size", inputs, first, alone, "scored alone")
    for check in CHECKS:
        if check.startswith("survives-"):
            results[check] = _survives(name, check, inputs, first)
    if baseline.guessed:
        for result in results.values():
            if result.name != "no-torch-on-import":
                result.data["inputs"] = "guessed: the reward has no scored golden case"
    return _ordered(results)


def _ordered(results: dict[str, CheckResult]) -> dict[str, CheckResult]:
    return {check: results[check] for check in CHECKS}


def _label(inputs: list[Input], index: int) -> str:
    return inputs[index].label


def _one_score(name: str, inputs: list[Input], rows: list[SampleResult], expected: int) -> CheckResult:
    bad = [f"  {_label(inputs, i)}: {r.details.get('error')}" for i, r in enumerate(rows)
           if r.outcome == "error" and any(s in str(r.details.get("error", "")) for s in ("score_batch returned", "lost result"))]
    if len(rows) != expected or bad:
        return CheckResult(name, "conformance", "one-score-per-sample", "failed",
                           f"a batch of {expected} samples did not get one score each:\n" + "\n".join(bad))
    return CheckResult(name, "conformance", "one-score-per-sample", "passed", f"{expected} samples, {expected} results")


def _finite(harness: CheckedReward, inputs: list[Input], rows: list[SampleResult]) -> CheckResult:
    spec = harness.spec
    labelled: list[tuple[str, SampleResult | GoldenResult]] = [(_label(inputs, i), r) for i, r in enumerate(rows)]
    labelled += [(f"golden:{g.case.id}", g) for g in harness.golden_results().values()]
    bad = []
    for label, row in labelled:
        error = str(row.details.get("error", "")) if row.outcome == "error" else ""
        if error.startswith("returned "):
            bad.append(f"  {label}: {error}")
        elif row.outcome == "ok" and spec.score_range is not None and row.score is not None:
            low, high = spec.score_range
            if not low <= row.score <= high:
                bad.append(f"  {label}: {row.score} is outside the declared score_range [{low}, {high}]")
    if bad:
        return CheckResult(spec.name, "conformance", "finite-or-none", "failed",
                           "the reward must return a finite float or None:\n" + "\n".join(bad))
    return CheckResult(spec.name, "conformance", "finite-or-none", "passed", f"{len(labelled)} results checked")


def _compare(name: str, check: str, inputs: list[Input], first: list[SampleResult], other: list[SampleResult],
             how: str) -> CheckResult:
    differ, skipped = [], 0
    for i, (a, b) in enumerate(zip(first, other, strict=True)):
        if "timeout" in (a.outcome, b.outcome):
            skipped += 1
            continue
        if not same_result(a, b):
            differ.append(f"  {_label(inputs, i)}: {describe_result(a)} in the batch, {describe_result(b)} {how}")
    note = f" ({skipped} timed-out samples not compared)" if skipped else ""
    if differ:
        return CheckResult(name, "conformance", check, "failed",
                           f"results changed when {how}{note}:\n" + "\n".join(differ))
    return CheckResult(name, "conformance", check, "passed", f"{len(first) - skipped} samples compared{note}")


def _survives(name: str, check: str, inputs: list[Input], rows: list[SampleResult]) -> CheckResult:
    mine = [(item, row) for item, row in zip(inputs, rows, strict=True) if item.check == check]
    bad = [f"  {item.label}: {describe_result(row)}; completion {_preview(item.completion)}"
           for item, row in mine if row.outcome in ("error", "timeout")]
    if bad:
        return CheckResult(name, "conformance", check, "failed",
                           "the reward must return a score or None (not fail) on:\n" + "\n".join(bad))
    seen = ", ".join(f"{item.label}={describe_result(row)}" for item, row in mine)
    return CheckResult(name, "conformance", check, "passed", seen)


def _preview(completion: Any) -> str:
    text = repr(completion) if isinstance(completion, str) else json.dumps(completion, ensure_ascii=True)
    return text if len(text) <= 120 else f"{text[:100]}... ({len(text)} characters)"


# -- the import check --------------------------------------------------------------------------
_IMPORT_PROBE = """
import importlib, json, sys, time
sys.path[:] = json.loads(sys.argv[2])
start = time.perf_counter()
importlib.import_module(sys.argv[1])
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "modules": [m for m in json.loads(sys.argv[3]) if m in sys.modules]}))
"""
_IMPORT_CACHE: dict[tuple[str, tuple[str, ...]], dict[str, Any] | str] = {}


def entry_point_module(spec: Any) -> str:
    """The module the reward's plugin names in its entry point (the reward's own module else)."""
    from grpo_host.plugins.manager import ENTRY_POINT_GROUP, normalize_dist

    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        if dist is not None and normalize_dist(dist.metadata["Name"]) == normalize_dist(spec.plugin or ""):
            return ep.module
    return spec.target.__module__


def imports_on_load(module: str, timeout: float = 120.0) -> dict[str, Any] | str:
    """Import ``module`` in a fresh interpreter: ``{"seconds", "modules"}`` of heavy ones, or an error."""
    key = (module, tuple(sys.path))
    if key not in _IMPORT_CACHE:
        watched = list(FORBIDDEN_AT_IMPORT + REPORTED_AT_IMPORT)
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _IMPORT_PROBE, module, json.dumps(sys.path), json.dumps(watched)],
                capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONWARNINGS": "ignore"},
            )
        except subprocess.TimeoutExpired:
            _IMPORT_CACHE[key] = f"importing {module} took over {timeout:g} s"
        else:
            if proc.returncode != 0:
                _IMPORT_CACHE[key] = f"importing {module} failed: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}"
            else:
                _IMPORT_CACHE[key] = json.loads(proc.stdout.strip().splitlines()[-1])
    return _IMPORT_CACHE[key]


def import_check(spec: Any) -> CheckResult:
    module = entry_point_module(spec)
    found = imports_on_load(module)
    if isinstance(found, str):
        return CheckResult(spec.name, "conformance", "no-torch-on-import", "failed", found)
    heavy = [m for m in found["modules"] if m in FORBIDDEN_AT_IMPORT]
    also = [m for m in found["modules"] if m not in FORBIDDEN_AT_IMPORT]
    timing = f"import {module} took {found['seconds']:.2f} s"
    if also:
        timing += f" and imported {', '.join(also)}"
    if heavy:
        return CheckResult(
            spec.name, "conformance", "no-torch-on-import", "failed",
            f"importing the plugin's entry point {module} imports {', '.join(heavy)} ({timing}); "
            "move those imports inside the reward function or class, where they run when it is built",
        )
    return CheckResult(spec.name, "conformance", "no-torch-on-import", "passed", timing)
