"""Build ``peer_cases.json``: the (gold, prediction, expected verdict) cases of peer verifiers' own test suites.

The cases are read, not run: each test module is parsed with ``ast`` straight from a git
snapshot of the peer repository (no checkout, nothing of theirs is imported or executed), and
every ``@pytest.mark.parametrize`` table with gold / prediction / expected columns becomes one
case per row, with the settings that test grades it under (math-verify's ``match_types``,
``precision``, ``strict``, ``allow_set_relation_comp``) and its provenance (repository, commit,
path, test function). TRL's and open-r1's accuracy-reward tests are plain asserts on a few
completions, so those are copied as rows by hand below, each with its path and test name.

    python tests/data/make_peer_cases.py --math-verify DIR [--trl DIR] [--open-r1 DIR] [--out FILE]

DIR is a git directory (a bare mirror or a clone) of github.com/huggingface/Math-Verify (and
huggingface/trl, huggingface/open-r1). Their licenses: Math-Verify Apache-2.0 (test headers say
MIT), trl Apache-2.0, open-r1 Apache-2.0. ``tests/test_plugin_accuracy_peers.py`` reads the file.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
from pathlib import Path

MATH_VERIFY_TESTS = [
    "tests/test_all.py",
    "tests/test_numina_cases.py",
    "tests/test_open_thoughts.py",
    "tests/test_yujianll.py",
    "tests/test_boxed.py",
    "tests/test_string_extraction.py",
    "tests/test_strict.py",
]
DEFAULTS = {
    "match_types": ["latex", "expr"],
    "precision": 6,
    "strict": True,
    "allow_set_relation_comp": False,
}
GOLD, PRED, EXPECTED = ("gold",), ("pred",), ("expected", "result")

# TRL's and open-r1's accuracy tests (tests/test_rewards.py): completion, solution, expected
# score (None: the gold is not math). (path, test) name where each row comes from.
TRAINER_ROWS = {
    "trl": [
        (
            "TestAccuracyReward.test_accuracy_reward_correct_answer",
            r"\boxed{\frac{63}{400}}",
            r"\frac{63}{400}",
            1,
        ),
        ("TestAccuracyReward.test_accuracy_reward_correct_answer", r"\boxed{\frac{63}{400}}", "63/400", 1),
        (
            "TestAccuracyReward.test_accuracy_reward_wrong_answer",
            r"\boxed{\frac{64}{400}}",
            r"\frac{63}{400}",
            0,
        ),
        ("TestAccuracyReward.test_accuracy_reward_wrong_answer_no_latex", r"\boxed{3}", "6", 0),
        (
            "TestAccuracyReward.test_accuracy_reward_unparsable_gold",
            "Answer is forty two.",
            "Answer is forty two.",
            None,
        ),
        (
            "TestAccuracyReward.test_accuracy_reward_unparsable_gold",
            r"Some other content. \boxed{43}.",
            "Answer is forty three.",
            None,
        ),
        (
            "TestAccuracyReward.test_accuracy_reward_in_worker_thread",
            r"\boxed{\frac{1}{3}}",
            r"\frac{1}{3}",
            1,
        ),
        (
            "TestReasoningAccuracyReward.test_correct_answer_yields_unit_reward",
            r"<think> Reasoning content </think> \boxed{\frac{63}{400}}",
            r"\frac{63}{400}",
            1,
        ),
        (
            "TestReasoningAccuracyReward.test_correct_answer_yields_unit_reward",
            r"Reasoning content </think> \boxed{\frac{63}{400}}",
            r"\frac{63}{400}",
            1,
        ),
        (
            "TestReasoningAccuracyReward.test_incorrect_answer_yields_zero_reward",
            r"<think> Reasoning content </think> \boxed{\frac{64}{400}}",
            r"\frac{63}{400}",
            0,
        ),
        (
            "TestReasoningAccuracyReward.test_correct_answer_in_reasoning_yields_zero_reward",
            r"<think> My answer is \boxed{42} </think> Some other text.",
            r"\boxed{42}",
            0,
        ),
        (
            "TestReasoningAccuracyReward.test_correct_answer_in_reasoning_yields_zero_reward",
            r"<think> The answer is \boxed{42} </think> Here's a wrong answer: \boxed{43}.",
            r"\boxed{42}",
            0,
        ),
        (
            "TestReasoningAccuracyReward.test_incomplete_reasoning_yields_zero_reward",
            "<think> Incomplete reasoning without closing tag",
            r"\frac{63}{400}",
            0,
        ),
        (
            "TestReasoningAccuracyReward.test_unparsable_gold_solution_yields_none_reward",
            r"<think> Reasoning content </think> \boxed{42}",
            "forty two",
            None,
        ),
        (
            "TestCosineScaledReward.test_correct_shorter_rewarded_more",
            r"\boxed{\frac{1}{3}}",
            r"\frac{1}{3}",
            1,
        ),
        (
            "TestCosineScaledReward.test_wrong_longer_penalized_less",
            r"\boxed{\frac{1}{2}}",
            r"\frac{1}{3}",
            0,
        ),
    ],
    "open-r1": [
        ("TestRewards.test_accuracy_reward_correct_answer", r"\boxed{\frac{63}{400}}", r"\frac{63}{400}", 1),
        ("TestRewards.test_accuracy_reward_wrong_answer", r"\boxed{\frac{64}{400}}", r"\frac{63}{400}", 0),
        ("TestRewards.test_accuracy_reward_wrong_answer_no_latex", r"\boxed{3}", "6", 0),
        ("TestRewards.test_multiple_completions", r"\boxed{\frac{63}{400}}", r"\frac{63}{400}", 1),
        ("TestRewards.test_multiple_completions", r"\boxed{\frac{64}{400}}", r"\frac{63}{400}", 0),
    ],
}
# TRL's reasoning test that a completion without reasoning at all scores 0 is about its
# reasoning format, not the answer ("Correct answer \frac{63}{400} but completely missing
# reasoning content"): left out, as are the cosine tests' length scaling.


def git(repo: str, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", repo, *args], check=True, capture_output=True, text=True
    ).stdout


def git_dir(path: str) -> str:
    out = subprocess.run(["git", "-C", path, "rev-parse", "--git-dir"], capture_output=True, text=True)
    if out.returncode == 0:
        found = Path(out.stdout.strip())
        return str(found if found.is_absolute() else Path(path) / found)
    return path


def _decorated_tables(tree: ast.Module):
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef):
            continue
        for deco in node.decorator_list:
            if (
                isinstance(deco, ast.Call)
                and isinstance(deco.func, ast.Attribute)
                and deco.func.attr == "parametrize"
                and len(deco.args) >= 2
            ):
                names = [n.strip() for n in ast.literal_eval(deco.args[0]).split(",")]
                yield node, names, deco.args[1]


def _settings(fn: ast.FunctionDef) -> dict:
    """The grading settings a test function passes to compare_strings: constants, or the name of
    a parametrize column that holds them."""
    for call in ast.walk(fn):
        if (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Name)
            and call.func.id == "compare_strings"
        ):
            settings = dict(DEFAULTS)
            for kw in call.keywords:
                settings[kw.arg] = (
                    {"column": kw.value.id} if isinstance(kw.value, ast.Name) else ast.literal_eval(kw.value)
                )
            return settings
    return dict(DEFAULTS)  # verify(parse(gold), parse(pred)): the library's defaults


def math_verify_cases(repo: str, commit: str) -> tuple[list[dict], list[str]]:
    cases, skipped = [], []
    for path in MATH_VERIFY_TESTS:
        tree = ast.parse(git(repo, "show", f"{commit}:{path}"))
        for fn, names, table in _decorated_tables(tree):
            gold = next((n for n in names if n in GOLD), None)
            pred = next((n for n in names if n in PRED), None)
            expected = next((n for n in names if n in EXPECTED), None)
            if not (gold and pred and expected) or not isinstance(table, ast.List):
                continue
            settings = _settings(fn)
            for row in table.elts:
                try:
                    values = ast.literal_eval(row)
                except ValueError:  # f"{math.sqrt(17):.15f}": computed, not literal
                    skipped.append(f"{path}::{fn.name} line {row.lineno}: not a literal row")
                    continue
                if len(values) != len(names):
                    skipped.append(
                        f"{path}::{fn.name} line {row.lineno}: {len(values)} values for {len(names)} columns"
                    )
                    continue
                record = dict(zip(names, values, strict=True))
                row_settings = {
                    k: (record[v["column"]] if isinstance(v, dict) else v) for k, v in settings.items()
                }
                cases.append(
                    {
                        "gold": record[gold],
                        "prediction": record[pred],
                        "expected": int(record[expected]),
                        "settings": row_settings,
                        "source": {"path": path, "test": fn.name, "line": row.lineno},
                    }
                )
    return cases, skipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--math-verify", required=True, help="git dir of huggingface/Math-Verify")
    parser.add_argument("--trl", help="git dir of huggingface/trl")
    parser.add_argument("--open-r1", help="git dir of huggingface/open-r1")
    parser.add_argument("--out", default=str(Path(__file__).with_name("peer_cases.json")))
    args = parser.parse_args()

    repos, suites = [], {}
    mv = git_dir(args.math_verify)
    commit = git(mv, "rev-parse", "HEAD").strip()
    cases, skipped = math_verify_cases(mv, commit)
    repos.append(
        {"name": "math-verify", "repo": "huggingface/Math-Verify", "commit": commit, "license": "Apache-2.0"}
    )
    suites["math-verify"] = cases
    for name, repo_name, path in (
        ("trl", "huggingface/trl", args.trl),
        ("open-r1", "huggingface/open-r1", args.open_r1),
    ):
        if not path:
            continue
        gd = git_dir(path)
        commit = git(gd, "rev-parse", "HEAD").strip()
        git(gd, "cat-file", "-e", f"{commit}:tests/test_rewards.py")  # the rows are copied from this file
        repos.append({"name": name, "repo": repo_name, "commit": commit, "license": "Apache-2.0"})
        suites[name] = [
            {
                "gold": gold,
                "prediction": completion,
                "expected": expected,
                "settings": {"reward": "accuracy"},
                "source": {"path": "tests/test_rewards.py", "test": test},
            }
            for test, completion, gold, expected in TRAINER_ROWS[name]
        ]
    out = {
        "generated_by": "tests/data/make_peer_cases.py",
        "repos": repos,
        "skipped": skipped,
        "suites": suites,
    }
    Path(args.out).write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(
        f"{args.out}: "
        + ", ".join(f"{k} {len(v)} cases" for k, v in suites.items())
        + f"; skipped {len(skipped)}"
    )
    for line in skipped:
        print("  skipped " + line)


if __name__ == "__main__":
    main()
