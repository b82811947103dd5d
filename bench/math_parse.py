"""math-equiv's parser before and after latex2sympy2_extended, side by side in one run.

The "before" parser is ``grpo_reward_math/parse.py`` as it stood at a git revision (the
hand-written LaTeX-to-``parse_expr`` converter), loaded from ``git show``; "after" is the
installed plugin. Both parse the same inputs, alternating, several rounds:

- the golden answers and references of ``math-equiv.yaml`` and the step sides of
  ``math-steps.yaml`` (median time per input, and whether the two parsers agree on the score);
- hostile inputs (power towers, factorial and binomial bombs, deep nesting, 2,000-character
  sums, a megabyte of digits): worst time and peak traced memory per input.

    python bench/math_parse.py --before b2f59f8 [--rounds 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import yaml
from grpo_reward_math import compare, steps
from grpo_reward_math import parse as after
from grpo_reward_math.extract import final_answer, reference_text

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "plugins" / "grpo-reward-math" / "grpo_reward_math"

HOSTILE = {
    "power tower 9^9^9^9^9": "9^{9^{9^{9^{9}}}}",
    "python power tower": "2**2**2**2**2**2**2**2",
    "(10^100)!": "(10^{100})!",
    "binom(10^9, 5*10^8)": "\\binom{10^{9}}{5 \\cdot 10^{8}}",
    "binom(1000000, 500000)": "\\binom{1000000}{500000}",
    "e^e^e^e^100": "e^{e^{e^{e^{100}}}}",
    "(x+y+z)^100000": "(x+y+z)^{100000}",
    "1e999999999": "1e999999999",
    "10**10**10": "10**10**10",
    "500 nested parens": "(" * 500 + "1" + ")" * 500,
    "300 nested sqrt": "\\sqrt{" * 300 + "2" + "}" * 300,
    "39 nested frac": "\\frac{1}{" * 19 + "2" + "}" * 19,
    "frac bomb, 2000 chars": "+".join(["\\frac{1}{x}"] * 166),
    "sum x^{2}, 2000 chars": "+".join(["x^{2}"] * 333),
    "frac bomb, 600 chars": "+".join(["\\frac{1}{x}"] * 50),
    "sum x^{2}, 600 chars": "+".join(["x^{2}"] * 100),
    "599 digits": "9" * 599,
    "1999 digits": "9" * 1999,
    "megabyte of digits": "9" * 1_000_000,
}


def load_before(revision: str):
    text = subprocess.run(
        ["git", "show", f"{revision}:plugins/grpo-reward-math/grpo_reward_math/parse.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "parse_before.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("parse_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["parse_before"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def golden_inputs() -> tuple[list[tuple[str, str]], list[str]]:
    pairs = []
    for case in yaml.safe_load((PLUGIN / "golden" / "math-equiv.yaml").read_text())["cases"]:
        completion = case.get("completion")
        if isinstance(completion, list):
            completion = completion[-1]["content"]
        answer, _ = final_answer(completion or "")
        reference = (case.get("columns") or {}).get((case.get("params") or {}).get("answer_field", "answer"))
        if answer and reference:
            pairs.append((answer, reference_text(reference)))
    sides = []
    for case in yaml.safe_load((PLUGIN / "golden" / "math-steps.yaml").read_text())["cases"]:
        completion = case.get("completion")
        if isinstance(completion, list):
            completion = completion[-1]["content"]
        for step in steps.find_steps(completion or "", 64):
            sides += [step.lhs, step.rhs]
    return pairs, sides


def score(module, answer: str, reference: str) -> float | None:
    ref = module.parse_math(reference)
    if ref is None:
        return None
    got = module.parse_math(answer)
    return 0.0 if got is None else float(compare.equivalent(got, ref, 1e-6)[0])


def timed(fn, *args) -> float:
    after.parse_expression.cache_clear()  # time the parser, not its cache (before has none)
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", required=True, help="git revision of the hand-written parser")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    before = load_before(args.before)
    sides = {"before": before, "after": after}
    pairs, step_sides = golden_inputs()

    agree = sum(score(before, a, r) == score(after, a, r) for a, r in pairs)
    same_sides = sum(str(before.parse_expression(s)) == str(after.parse_expression(s)) for s in step_sides)
    print(
        f"math-equiv golden pairs: {agree}/{len(pairs)} scored alike; "
        f"math-steps sides: {same_sides}/{len(step_sides)} parsed alike"
    )

    per_input = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name, module in sides.items():
            elapsed = sum(timed(score, module, a, r) for a, r in pairs)
            elapsed += sum(timed(module.parse_expression, s) for s in step_sides)
            per_input[name].append(elapsed / (len(pairs) + len(step_sides)))
    med = {name: statistics.median(t) for name, t in per_input.items()}
    print(
        f"golden inputs, median per input: before {med['before'] * 1000:.2f} ms, "
        f"after {med['after'] * 1000:.2f} ms, after/before {med['after'] / med['before']:.2f}x"
    )

    print(f"{'hostile input':28s} {'before':>22s} {'after':>22s}")
    for label, text in HOSTILE.items():
        cells = []
        for module in sides.values():
            worst, result = 0.0, None
            for _ in range(max(1, args.rounds // 2)):
                worst = max(worst, timed(module.parse_math, text))
            after.parse_expression.cache_clear()
            tracemalloc.start()
            result = module.parse_math(text)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            outcome = "refused" if result is None else f"= {str(result)[:8]}"
            cells.append(f"{worst * 1000:7.1f} ms {peak / 2**20:5.1f} MiB {outcome:9s}")
        print(f"{label:28s} {cells[0]:>22s} {cells[1]:>22s}")


if __name__ == "__main__":
    main()
