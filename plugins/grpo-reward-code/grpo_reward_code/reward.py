"""The `code` reward: the completion's last program, run against the sample's tests in the sandbox.

A batch is scored at once (``score_batch``): each sample's (program, tests) pair is keyed, the
distinct pairs not yet cached run in parallel, one sandbox per pair on every core, and every
sample reads its pair's result. A GRPO group that wrote the same program eight times runs it
once. What the program did per case (exit, timeout, output cap) is compared with the expected
outputs here, outside the sandbox, which never sees them.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import grpo_host
from grpo_host import completion_text
from grpo_reward_code.cases import (
    NotApplicable,
    Tests,
    last_code_block,
    outputs_match,
    parse_tests,
    tests_of,
    values_match,
)
from grpo_reward_code.sandbox import Limits, available_cores, make_sandbox

CACHE_SIZE = 4096
PREVIEW = 200
# Statuses after which a program's remaining cases are not run: it has shown it burns the budget.
STOPPING = ("timeout",)


@grpo_host.reward(name="code", timeout=60.0, score_range=(0.0, 1.0))
class CodeReward:
    """Share of the sample's test cases the completion's last fenced program passes, run in a sandbox.

    The program is the last fenced code block (```` ```python ```` or a bare fence); no block
    scores 0.0. Test cases come from the sample's ``verification_info`` (open-r1),
    ``input_output`` (APPS/TACO/PRIME/verl; call-based with ``fn_name``) or ``test`` (HumanEval/
    MBPP asserts, with ``entry_point``) column, or the one ``tests_field`` names. A stdin/stdout
    case passes when the program exits 0 and its output equals the expected one up to trailing
    whitespace per line and trailing blank lines (numbers within ``float_tolerance``). ``mode:
    all`` gives 1.0 only when every case passes. ``hidden_tests`` names a column of cases the
    prompt does not show; the score then counts only those. Each program runs in a bubblewrap
    sandbox (no network, no host files, an empty environment, rlimits, a wall clock per case).
    """

    def __init__(
        self,
        language: str = "python",
        mode: Literal["fraction", "all"] = "fraction",
        tests_field: str | None = None,
        hidden_tests: str | None = None,
        float_tolerance: float = 1e-6,
        time_limit: float = 5.0,
        sample_time_limit: float = 30.0,
        cpu_limit: int = 5,
        memory_limit_mb: int = 512,
        max_processes: int = 16,
        max_output_kb: int = 1024,
        sandbox: Literal["bwrap", "rlimits-only"] = "bwrap",
        seccomp: bool = True,
        python: str = "python3",
        workers: int | None = None,
        cache: bool = True,
    ):
        for column in (tests_field, hidden_tests):
            if column in (
                "language",
                "mode",
                "tests_field",
                "hidden_tests",
                "float_tolerance",
                "sandbox",
                "python",
            ):
                raise ValueError(
                    f"a test column may not be named {column!r}: that is a param of this reward, so the "
                    "host never passes such a column; rename the column"
                )
        if language.lower() not in ("python", "py", "python3"):
            raise ValueError(
                f"language {language!r} is not supported: the sandbox runs Python programs (language: python)"
            )
        if (
            not time_limit > 0
            or cpu_limit < 1
            or memory_limit_mb < 16
            or max_processes < 1
            or max_output_kb < 1
        ):
            raise ValueError(
                "time_limit and sample_time_limit must be > 0 s, cpu_limit >= 1 s, memory_limit_mb >= 16, max_processes >= 1 "
                "and max_output_kb >= 1"
            )
        self.mode = mode
        self.tests_field = tests_field
        self.hidden_tests = hidden_tests
        self.float_tolerance = float(float_tolerance)
        self.limits = Limits(
            time_s=float(time_limit),
            total_s=float(sample_time_limit),
            cpu_s=int(cpu_limit),
            memory_mb=int(memory_limit_mb),
            nproc=int(max_processes) + 1,  # + the runner
            output_bytes=int(max_output_kb) << 10,
        )
        self.sandbox = make_sandbox(
            sandbox, python, bool(seccomp)
        )  # refuses here, with why, when it cannot run
        self.workers = int(workers) if workers else available_cores()
        self.use_cache = bool(cache)
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="code-sandbox")
        self.runs = 0  # sandboxes started: how many programs actually ran

    def score_batch(self, completions: list[Any], **columns: list[Any]) -> list[Any]:
        rows = [{k: v[i] for k, v in columns.items() if v is not None} for i in range(len(completions))]
        prepared: list[Any] = []
        for completion, row in zip(completions, rows, strict=True):
            try:
                prepared.append(self._prepare(completion, row))
            except NotApplicable as exc:
                prepared.append(grpo_host.Score(None, reason=str(exc)))
            except Exception as exc:  # noqa: BLE001 - this sample's `error`
                prepared.append(exc)
        jobs: dict[str, tuple[str, Tests]] = {}
        hits: dict[str, dict[str, Any]] = {}  # read now: later inserts may evict them
        for item in prepared:
            if isinstance(item, tuple):
                key, program, tests = item
                with self._lock:
                    if self.use_cache and key in self._cache:
                        hits[key] = self._cache[key]
                        self._cache.move_to_end(key)
                if key not in hits:
                    jobs.setdefault(key, (program, tests))
        futures = {
            key: self._pool.submit(self._run, program, tests) for key, (program, tests) in jobs.items()
        }
        outcomes: dict[str, Any] = {}
        for key, future in futures.items():
            try:
                outcomes[key] = future.result()
            except Exception as exc:  # noqa: BLE001 - the sandbox failed: every sample of it is an error
                outcomes[key] = exc
        scores = []
        delivered: set[str] = set()
        for item in prepared:
            if not isinstance(item, tuple):
                scores.append(item)
                continue
            key = item[0]
            if key in outcomes:
                result = outcomes[key]
                if key in delivered and not isinstance(result, Exception):
                    result = {**result, "cached": True}  # a duplicate within the batch: it ran once
                elif not isinstance(result, Exception) and self.use_cache:
                    with self._lock:
                        self._cache[key] = result
                        while len(self._cache) > CACHE_SIZE:
                            self._cache.popitem(last=False)
                delivered.add(key)
            else:
                result = {**hits[key], "cached": True}
            scores.append(result if isinstance(result, Exception) else self._score(result))
        return scores

    # -- one sample --------------------------------------------------------------------------
    def _prepare(self, completion: Any, row: dict[str, Any]) -> Any:
        text, _ = completion_text(completion)
        program = last_code_block(text)
        if self.hidden_tests:
            if row.get(self.hidden_tests) is None:
                raise KeyError(f"hidden_tests is {self.hidden_tests!r}, but this sample has no such column")
            tests = parse_tests(self.hidden_tests, row[self.hidden_tests], row)
        else:
            tests = tests_of(row, self.tests_field)
        if tests is None:
            raise ValueError(
                "this sample has no test cases: none of the columns verification_info, input_output, "
                "test; name the column with the param tests_field"
            )
        if not tests.inputs:
            return grpo_host.Score(None, reason=f"column {tests.source!r} has no test cases")
        if program is None or not program.strip():
            return grpo_host.Score(0.0, passed=0, total=len(tests.inputs), reason="no fenced code block")
        payload = json.dumps([program, tests.key(), self.limits.to_json(), self.mode, self.float_tolerance])
        return hashlib.sha256(payload.encode("utf-8")).hexdigest(), program, tests

    def _run(self, program: str, tests: Tests) -> dict[str, Any]:
        job = {
            "program": program,
            "kind": tests.kind,
            "cases": tests.inputs,
            "fn_name": tests.fn_name,
            "entry_point": tests.entry_point,
            "stop_on_fail": self.mode == "all",
        }
        with self._lock:
            self.runs += 1
        results = self.sandbox.run(job, self.limits)
        verdicts = []
        for index in range(len(tests.inputs)):
            if index >= len(results):
                verdicts.append({"passed": False, "status": "not run"})
                continue
            verdicts.append(self._verdict(tests, index, results[index]))
            if results[index].get("status") in STOPPING:
                verdicts += [{"passed": False, "status": "not run"}] * (len(tests.inputs) - index - 1)
                break
        return {"verdicts": verdicts, "kind": tests.kind, "source": tests.source}

    def _verdict(self, tests: Tests, index: int, result: dict[str, Any]) -> dict[str, Any]:
        status = result.get("status")
        verdict: dict[str, Any] = {"status": status, "seconds": result.get("seconds")}
        if status != "exited" or result.get("code") != 0:
            verdict["passed"] = False
            if status == "exited":
                verdict["status"] = f"exit {result.get('code')}"
            elif status == "signaled":
                verdict["status"] = f"killed by signal {result.get('signal')}"
            verdict["stderr"] = (result.get("stderr") or "")[-PREVIEW:]
            return verdict
        if tests.kind == "stdin":
            got = result.get("stdout", "")
            verdict["passed"] = outputs_match(got, tests.expected[index], self.float_tolerance)
            if not verdict["passed"]:
                verdict.update(got=got[:PREVIEW], expected=tests.expected[index][:PREVIEW])
        elif tests.kind == "call":
            try:
                got = json.loads(result.get("result") or "")
            except json.JSONDecodeError:
                verdict.update(passed=False, status="no result")
                return verdict
            verdict["passed"] = values_match(got, tests.expected[index], self.float_tolerance)
            if not verdict["passed"]:
                verdict.update(got=repr(got)[:PREVIEW], expected=repr(tests.expected[index])[:PREVIEW])
        else:
            verdict["passed"] = bool(result.get("passed"))
            if not verdict["passed"]:
                verdict["status"] = "exited before its asserts ran"
        return verdict

    def _score(self, result: dict[str, Any]) -> grpo_host.Score:
        verdicts = result["verdicts"]
        passed = sum(1 for v in verdicts if v.get("passed"))
        total = len(verdicts)
        value = passed / total if self.mode == "fraction" else float(passed == total)
        details: dict[str, Any] = {"passed": passed, "total": total, "tests": result["source"]}
        failed = [(i, v) for i, v in enumerate(verdicts) if not v.get("passed")]
        if failed:
            index, first = failed[0]
            details["first_failure"] = {"case": index, **{k: v for k, v in first.items() if k != "passed"}}
        if result.get("cached"):
            details["cached"] = True
        return grpo_host.Score(value, details)
