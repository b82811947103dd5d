"""The `code` reward's sandbox against a bare subprocess loop, side by side in one run.

Scores 96 right programs x 3 stdin cases (distinct `code-tasks` rows with their reference
solutions) two ways, alternating, each on every core:

- `code`: `grpo_host.load_reward("code", cache=False)`, the whole batch in one call, as TRL
  calls it (the reward built and warmed on another batch first: building is not scoring);
- `code` one sample at a time in one process per core (the shape of the runtime's pool with a
  per-sample reward), the other way to spread the work;
- bare: one `subprocess.run([python, "-I", "-c", program], input=...)` per case on a thread pool
  of one thread per core, the output compared the same way, no sandbox at all.

Reports tests/s for each and the ratio (sandbox seconds / bare seconds; the issue asks <= 1.3),
then a GRPO group of 8 identical programs: how many of the 8 ran (`details.cached` marks the
rest) and its time against one program's.

    .venv/bin/python bench/code_sandbox.py [--programs 96] [--cases 3] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

from grpo_reward_code.cases import outputs_match
from grpo_reward_code.sandbox import available_cores, find_python
from grpo_reward_code.tasks import code_task_rows

import grpo_host


def tasks(programs: int, cases: int, seed: int) -> list[dict]:
    rows = []
    for row in code_task_rows(size=programs, seed=seed, kind="stdin"):
        io = json.loads(row["input_output"])
        io = {"inputs": io["inputs"][:cases], "outputs": io["outputs"][:cases]}
        program = row["answer"].removeprefix("```python\n").removesuffix("```")
        rows.append(
            {"completion": row["answer"], "input_output": json.dumps(io), "io": io, "program": program}
        )
    return rows


_one_at_a_time = None


def _start_one_at_a_time() -> None:
    global _one_at_a_time
    from grpo_reward_code.reward import CodeReward

    _one_at_a_time = CodeReward(workers=1, cache=False)


def _score_chunk(rows: list[dict]) -> list[float]:
    return [
        _one_at_a_time.score_batch([r["completion"]], input_output=[r["input_output"]])[0].value for r in rows
    ]


def run_pooled(pool: ProcessPoolExecutor, rows: list[dict], cores: int) -> tuple[float, list]:
    """One process per core, each scoring its contiguous chunks one sample at a time: the shape of
    the runtime's pool with a per-sample reward (measured here with a plain process pool, because
    the runtime's worker trips on rewards slower than 1 s a sample: see bench/README.md)."""
    size = max(1, -(-len(rows) // (cores * 2)))
    chunks = [
        [{"completion": r["completion"], "input_output": r["input_output"]} for r in rows[i : i + size]]
        for i in range(0, len(rows), size)
    ]
    start = time.perf_counter()
    scores = [v for chunk in pool.map(_score_chunk, chunks) for v in chunk]
    return time.perf_counter() - start, scores


def run_code(reward, rows: list[dict]) -> tuple[float, list]:
    start = time.perf_counter()
    scores = reward(
        completions=[r["completion"] for r in rows], input_output=[r["input_output"] for r in rows]
    )
    return time.perf_counter() - start, scores


def run_bare(python: str, rows: list[dict], workers: int) -> tuple[float, list[float]]:
    def one(job: tuple[str, str, str]) -> bool:
        program, stdin, expected = job
        done = subprocess.run(
            [python, "-I", "-c", program], input=stdin, capture_output=True, text=True, timeout=30
        )
        return done.returncode == 0 and outputs_match(done.stdout, expected)

    jobs = [
        (r["program"], i, o) for r in rows for i, o in zip(r["io"]["inputs"], r["io"]["outputs"], strict=True)
    ]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        passed = list(pool.map(one, jobs))
    seconds = time.perf_counter() - start
    per = len(rows[0]["io"]["inputs"])
    return seconds, [sum(passed[i : i + per]) / per for i in range(0, len(passed), per)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=96)
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    cores = available_cores()
    python = find_python("python3")
    rows = tasks(args.programs, args.cases, seed=1)
    tests = args.programs * args.cases

    reward = grpo_host.load_reward("code", cache=False)
    warm = tasks(4, 1, seed=2)
    run_code(reward, warm)  # builds the reward in its worker: the probe sandbox, imports
    run_bare(python, warm, cores)
    pooled = ProcessPoolExecutor(max_workers=cores, initializer=_start_one_at_a_time)
    run_pooled(pooled, warm * cores, cores)

    sandbox_s, bare_s, pooled_s = [], [], []
    for _ in range(args.rounds):
        seconds, scores = run_pooled(pooled, rows, cores)
        if any(s != 1.0 for s in scores):
            print(f"code per sample scored a right solution below 1: {scores}", file=sys.stderr)
            return 1
        pooled_s.append(seconds)
        seconds, scores = run_code(reward, rows)
        if any(s != 1.0 for s in scores):
            print(f"code scored a right solution below 1: {scores}", file=sys.stderr)
            return 1
        sandbox_s.append(seconds)
        seconds, scores = run_bare(python, rows, cores)
        if any(s != 1.0 for s in scores):
            print(f"the bare loop scored a right solution below 1: {scores}", file=sys.stderr)
            return 1
        bare_s.append(seconds)

    # A GRPO group: one prompt, 8 completions, all the same program (a fresh reward: no cache).
    runtime = grpo_host.load_reward("code").reward_set.runtime
    runtime.score([{"completion": r["completion"], "input_output": r["input_output"]} for r in warm])
    single, group_row = tasks(2, args.cases, seed=3)
    start = time.perf_counter()
    runtime.score([{"completion": single["completion"], "input_output": single["input_output"]}])
    single_s = time.perf_counter() - start
    start = time.perf_counter()
    results = runtime.score(
        [{"completion": group_row["completion"], "input_output": group_row["input_output"]}] * 8
    )
    group_s = time.perf_counter() - start
    ran = sum(1 for r in results["code"] if not r.details.get("cached"))
    runtime.close()

    pooled.shutdown()
    sandbox, bare, per_sample = (
        statistics.median(sandbox_s),
        statistics.median(bare_s),
        statistics.median(pooled_s),
    )
    report = {
        "cores": cores,
        "python": python,
        "programs": args.programs,
        "cases_per_program": args.cases,
        "rounds": args.rounds,
        "sandbox_s": [round(s, 3) for s in sandbox_s],
        "bare_s": [round(s, 3) for s in bare_s],
        "per_sample_pool_s": [round(s, 3) for s in pooled_s],
        "per_sample_pool_tests_per_s": round(tests / per_sample, 1),
        "sandbox_tests_per_s": round(tests / sandbox, 1),
        "bare_tests_per_s": round(tests / bare, 1),
        "ratio_sandbox_over_bare": round(sandbox / bare, 3),
        "group_of_8_ran": ran,
        "group_of_8_s": round(group_s, 3),
        "one_program_s": round(single_s, 3),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"{cores} cores, {args.programs} programs x {args.cases} stdin cases, median of {args.rounds} rounds"
        )
        print(
            f"| stdin x3 | code (bwrap sandbox) | {report['sandbox_tests_per_s']} tests/s | {sandbox:.2f} s |"
        )
        print(
            f"| stdin x3 | bare subprocess.run per case | {report['bare_tests_per_s']} tests/s | {bare:.2f} s |"
        )
        print(
            f"| stdin x3 | code one sample at a time, process per core | {report['per_sample_pool_tests_per_s']} tests/s "
            f"| {per_sample:.2f} s |"
        )
        print(f"ratio sandbox / bare: {report['ratio_sandbox_over_bare']:.3f}x (the issue asks <= 1.3)")
        print(
            f"group of 8 identical programs: {ran} of 8 ran; {group_s:.3f} s vs {single_s:.3f} s for one program"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
