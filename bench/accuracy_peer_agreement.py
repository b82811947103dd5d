"""How often `accuracy`, math-verify and TRL's `accuracy_reward` give the verdict that peer
verifiers' own test suites expect.

The cases are ``tests/data/peer_cases.json`` (build it with ``tests/data/make_peer_cases.py``
from git snapshots of huggingface/Math-Verify, trl and open-r1): a gold, a prediction, the
expected verdict, the settings the peer's test grades under, and where the case comes from.
Each prediction is scored as a completion against its gold as the answer column, by:
- `accuracy`, with its default params;
- math-verify itself, as its README calls it: ``verify(parse(gold), parse(prediction))``, the
  library's default extraction (LaTeX and plain expressions) and precision (6 places), strict;
- TRL's `trl.rewards.accuracy_reward` (math-verify as TRL configures it), when trl is installed.
A verdict agrees when it equals the expected one (1, 0, or None for "not applicable"). We print
the agreement per suite, on all cases and on two subsets: the cases a peer grades under
math-verify's default settings (LaTeX and expressions, precision 6, strict, no set-relation
comparison: the settings a trainer runs, and the only ones a fixed reward can be judged by; the
rest expect a verdict only a non-default setting gives, sometimes the opposite one for the same
pair), and of those the ones with a math gold (a gold of words, `\\text{Evelyn}`, is not
applicable to `accuracy` by design). Then every case where math-verify agrees and `accuracy`
does not.

    python bench/accuracy_peer_agreement.py [--cases FILE] [--all]
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from pathlib import Path

CASES = Path(__file__).resolve().parent.parent / "tests" / "data" / "peer_cases.json"


def load_cases(path: Path = CASES) -> dict:
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: build it with `python tests/data/make_peer_cases.py --math-verify DIR "
            "--trl DIR --open-r1 DIR` from git snapshots of huggingface/Math-Verify, trl and open-r1"
        )
    return json.loads(path.read_text())


def verdict_accuracy(score, gold: str, prediction: str):
    value = score(prediction, answer=gold).value
    return None if value is None else int(value)


def verdict_math_verify(gold: str, prediction: str):
    from math_verify import parse, verify

    parsed = parse(gold)
    if not parsed:
        return None
    return int(verify(parsed, parse(prediction)))


def verdict_trl(gold: str, prediction: str):
    from trl.rewards import accuracy_reward

    value = accuracy_reward([[{"role": "assistant", "content": prediction}]], [gold])[0]
    return None if value is None else int(value)


def judge(cases: dict, with_trl: bool = True) -> list[dict]:
    """Every case with the three verdicts added (``trl`` absent when trl is not importable)."""
    logging.disable(logging.WARNING)
    from grpo_reward_accuracy import Accuracy

    score = Accuracy().score
    if with_trl:
        try:
            import trl.rewards  # noqa: F401
        except ImportError:
            with_trl = False
    rows = []
    for suite, items in cases["suites"].items():
        for case in items:
            gold, prediction = case["gold"], case["prediction"]
            row = {
                **case,
                "suite": suite,
                "accuracy": verdict_accuracy(score, gold, prediction),
                "math-verify": verdict_math_verify(gold, prediction),
            }
            if with_trl:
                row["trl"] = verdict_trl(gold, prediction)
            rows.append(row)
    return rows


def agreement(rows: list[dict], who: str) -> tuple[int, int]:
    return sum(r[who] == r["expected"] for r in rows), len(rows)


DEFAULT_SETTINGS = {
    "match_types": ["latex", "expr"],
    "precision": 6,
    "strict": True,
    "allow_set_relation_comp": False,
}


def default_settings(row: dict) -> bool:
    """Whether the peer grades this case under math-verify's defaults (the trainer rows do)."""
    settings = row["settings"]
    return "reward" in settings or all(settings.get(k) == v for k, v in DEFAULT_SETTINGS.items())


def math_gold(row: dict) -> bool:
    from grpo_reward_accuracy.rewards import read_gold

    gold = read_gold(row["gold"])
    return gold is None or not gold.words


def subsets(rows: list[dict]) -> dict[str, list[dict]]:
    defaults = [r for r in rows if default_settings(r)]
    return {
        "all": rows,
        "default settings": defaults,
        "default settings, math golds": [r for r in defaults if math_gold(r)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=CASES)
    parser.add_argument("--all", action="store_true", help="print every case accuracy gets wrong")
    args = parser.parse_args()
    cases = load_cases(args.cases)
    rows = judge(cases)
    for repo in cases["repos"]:
        print(f"{repo['name']}: {repo['repo']} @ {repo['commit']}")
    who = ["accuracy", "math-verify"] + (["trl"] if "trl" in rows[0] else [])
    for suite in dict.fromkeys(r["suite"] for r in rows):
        subset = [r for r in rows if r["suite"] == suite]
        figures = ", ".join(
            f"{w} {a}/{n} ({100 * a / n:.1f}%)" for w in who for a, n in [agreement(subset, w)]
        )
        print(f"{suite} ({len(subset)} cases): {figures}")
    for name, subset in subsets(rows).items():
        figures = ", ".join(
            f"{w} {a}/{n} ({100 * a / n:.1f}%)" for w in who for a, n in [agreement(subset, w)]
        )
        print(f"{name} ({len(subset)} cases): {figures}")
    kinds = Counter()
    for r in rows:
        kinds[(r["accuracy"] == r["expected"], r["math-verify"] == r["expected"])] += 1
    print(
        f"accuracy right & math-verify wrong: {kinds[(True, False)]}; math-verify right & accuracy wrong: {kinds[(False, True)]}"
    )
    for r in rows:
        if r["accuracy"] != r["expected"] and (args.all or r["math-verify"] == r["expected"]):
            src = r["source"]
            tags = ("" if default_settings(r) else " non-default settings") + (
                "" if math_gold(r) else " word gold"
            )
            print(
                f"  [{r['suite']} {src['path']}::{src['test']}{tags}] gold {r['gold']!r} pred {r['prediction']!r} "
                f"expected {r['expected']} accuracy {r['accuracy']} math-verify {r['math-verify']}"
            )


if __name__ == "__main__":
    main()
