"""grpo-host's `accuracy` reward against TRL's `trl.rewards.accuracy_reward`, on GRPO batches.

Each batch is what one GRPO step scores: 128 references x 8 completions = 1024. Golds are
integers, negatives, fractions, decimals, expressions with roots and pi, and (15%) intervals,
unions, polynomials, equations, rational functions, points, degrees, sets and multiple-choice
letters, and (5%) answers only sympy can match (nested roots, trig values, logs, e, matrices),
stored the ways
data sets store them (bare, between ``$...$``, inside ``\\boxed{}``); completions reason for a
few lines and then box the answer, state it Minerva-style, put it in an ``<answer>`` tag, give a
wrong one, or stop before answering. Each completion is built knowing whether its answer is
right, which is the label both rewards are judged against.

Both rewards score the same batch, alternating which goes first, called the way GRPOTrainer
calls reward functions (chat-format completions, the ``solution`` column). Ours goes through
``grpo_host.load_rewards`` (the worker pool, timeouts, outcomes), as in training. The first
batch is the cold call (pool start, imports); every later repetition scores a new batch, so no
cache carries answers from one step to the next. We report medians and the ratio, then every
sample where the verdicts differ, classified by whether TRL's verdict was right.

Both rewards are judged twice: by the generator's labels, and by math-verify's own verdict, so
the figure is not judged only by our own generator. math-verify's verdict is what a grader gets
from it: the gold as written (a bare gold wrapped in ``$...$``, as LaTeX), the whole completion
read with LaTeX (``\\boxed{}`` first) and plain expressions, default precision. It is computed
outside the timed calls, on the first ``--judge-batches`` batches (it costs a second or two per
hundred samples).

    python bench/accuracy_vs_trl.py [--reps 7] [--workers N] [--judge-batches 2] [--list-all]
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction

REFERENCES, PER_GROUP = 128, 8


# -- the batch -------------------------------------------------------------------------------
@dataclass
class Reference:
    kind: str
    answer: str  # the canonical LaTeX of the gold answer
    equivalents: list[str]  # other correct ways to write it
    wrong: list[str]  # plausible wrong answers


def _squarefree(rng: random.Random) -> int:
    return rng.choice([2, 3, 5, 6, 7, 10, 11, 13, 14, 15, 17, 19, 21, 22, 23, 26, 29, 30, 31, 33])


def _frac(p: int, q: int) -> str:
    f = Fraction(p, q)
    sign = "-" if f < 0 else ""
    return f"{sign}\\frac{{{abs(f.numerator)}}}{{{f.denominator}}}"


def make_reference(rng: random.Random) -> Reference:
    kind = rng.choices(
        ["int", "negative", "fraction", "decimal", "expression", "other", "symbolic"], [32, 8, 15, 10, 17, 13, 5]
    )[0]
    if kind == "int":
        v = rng.choice([rng.randint(2, 99), rng.randint(100, 999), rng.randint(1000, 99999)])
        equivalents = [f"{v:,}" if v >= 1000 else f"{v}.0", f"{v}\\text{{ units}}"]
        return Reference(kind, str(v), equivalents, [str(v + 1), str(v - 1), str(v * 2), str(rng.randint(2, 999))])
    if kind == "negative":
        v = -rng.randint(1, 300)
        return Reference(kind, str(v), [f"{v}.0", f"x = {v}"], [str(-v), str(v - 1), str(v + 2)])
    if kind == "fraction":
        q = rng.choice([3, 4, 5, 6, 7, 8, 9, 11, 12, 16, 20])
        p = rng.randint(1, 4 * q)
        while Fraction(p, q).denominator == 1:
            p += 1
        f = Fraction(p, q)
        equivalents = [f"\\dfrac{{{f.numerator}}}{{{f.denominator}}}", f"{f.numerator}/{f.denominator}"]
        if 10**6 % f.denominator == 0:
            equivalents.append(str(float(f)))
        wrong = [_frac(f.denominator, f.numerator), _frac(f.numerator + 1, f.denominator)]
        if Fraction(f"{float(f):.2f}") != f:
            wrong.append(f"{float(f):.2f}")  # rounded too far: wrong
        return Reference(kind, _frac(f.numerator, f.denominator), equivalents, wrong)
    if kind == "decimal":
        cents = rng.randint(1, 9999)
        while cents % 10 == 0:
            cents += 1
        v = Fraction(cents, 100)
        text = f"{float(v):.2f}"
        return Reference(kind, text, [_frac(v.numerator, v.denominator), text + "0"], [f"{float(v) + 0.1:.2f}", f"{float(v) * 10:.1f}"])
    if kind == "other":  # intervals, polynomials, points, degrees, sets, choices: math-verify's work
        a, b = rng.randint(1, 20), rng.randint(21, 40)
        return rng.choice([
            Reference(kind, f"(-\\infty, {a}]", [f"\\left(-\\infty,{a}\\right]"], [f"(-\\infty, {a})", f"[{a}, \\infty)"]),
            Reference(kind, f"x^2 + {a}x + {b}", [f"{b} + {a}x + x^2"], [f"x^2 + {a + 1}x + {b}", f"x^2 - {a}x + {b}"]),
            Reference(kind, f"({a}, {b})", [f"\\left({a},{b}\\right)"], [f"({b}, {a})", f"({a}, {b + 1})"]),
            Reference(kind, f"{a + 20}^\\circ", [f"{a + 20}"], [f"{a + 30}^\\circ", f"{a + 21}"]),
            Reference(kind, f"\\{{{a}, {b}\\}}", [f"\\{{{b}, {a}\\}}"], [f"\\{{{a}\\}}", f"\\{{{a}, {b}, {a + b}\\}}"]),
            Reference(kind, "\\text{(C)}", ["C", "(C)"], ["\\text{(B)}", "D"]),
            Reference(kind, f"y = {a}x + {b}", [f"y = {b} + {a}x"], [f"y = {a}x - {b}", f"y = {b}x + {a}"]),
            Reference(kind, f"\\frac{{x + {a}}}{{x - {b}}}", [f"\\frac{{{a} + x}}{{x - {b}}}"],
                      [f"\\frac{{x - {a}}}{{x - {b}}}", f"\\frac{{x + {a}}}{{x + {b}}}"]),
            Reference(kind, f"(-\\infty, {a}) \\cup ({b}, \\infty)", [f"({b}, \\infty) \\cup (-\\infty, {a})"],
                      [f"(-\\infty, {a}] \\cup [{b}, \\infty)", f"({a}, {b})"]),
        ])
    if kind == "symbolic":  # equivalences only sympy can see: nested roots, trig, logs, e, matrices
        a = rng.randint(2, 9)
        b = a + rng.randint(1, 5)
        return rng.choice([
            Reference(kind, f"{a} + \\sqrt{{2}}", [f"\\sqrt{{{a * a + 2} + {2 * a}\\sqrt{{2}}}}"], [f"{a} - \\sqrt{{2}}", f"{a + 1} + \\sqrt{{2}}"]),
            Reference(kind, "\\frac{1}{2}", ["\\sin\\frac{\\pi}{6}", "\\cos\\frac{\\pi}{3}"], ["\\sin\\frac{\\pi}{3}", "\\frac{1}{3}"]),
            Reference(kind, str(a), [f"\\log_2 {2 ** a}"], [f"\\log_2 {2 ** (a + 1)}", str(a + 1)]),
            Reference(kind, f"{a}e", [f"e \\cdot {a}"], [f"e^{{{a}}}", f"{a + 1}e"]),
            Reference(kind, f"\\begin{{pmatrix}} {a} \\\\ {b} \\end{{pmatrix}}", [f"\\begin{{pmatrix}}{a}\\\\{b}\\end{{pmatrix}}"],
                      [f"\\begin{{pmatrix}} {b} \\\\ {a} \\end{{pmatrix}}", f"\\begin{{pmatrix}} {a} \\\\ {b + 1} \\end{{pmatrix}}"]),
        ])
    a, b, c = rng.randint(2, 12), _squarefree(rng), rng.randint(2, 9)
    template = rng.randrange(4)
    if template == 0:
        return Reference(kind, f"{a}\\sqrt{{{b}}}", [f"\\sqrt{{{a * a * b}}}"], [f"{a}\\sqrt{{{b + 1}}}", f"{a + 1}\\sqrt{{{b}}}", str(a * b)])
    if template == 1:
        return Reference(kind, f"{a}\\pi", [f"\\pi \\cdot {a}"], [f"{a + 1}\\pi", str(a), f"{a}\\pi^2"])
    if template == 2:
        return Reference(kind, f"\\frac{{\\sqrt{{{b}}}}}{{{c}}}", [f"\\frac{{1}}{{{c}}}\\sqrt{{{b}}}"],
                         [f"\\frac{{\\sqrt{{{b}}}}}{{{c + 1}}}", f"\\frac{{{b}}}{{{c}}}"])
    return Reference(kind, f"{a} + {c}\\sqrt{{{b}}}", [f"{c}\\sqrt{{{b}}} + {a}"], [f"{a} - {c}\\sqrt{{{b}}}", f"{a + c}\\sqrt{{{b}}}"])


def stored_gold(ref: Reference, rng: random.Random) -> str:
    """The gold as a data set's answer column holds it: bare LaTeX, $...$, or a boxed solution."""
    style = rng.choices(["bare", "dollars", "boxed"], [50, 35, 15])[0]
    if style == "bare":
        return ref.answer
    if style == "dollars":
        return f"${ref.answer}$"
    return f"Combining the steps above, the answer is $\\boxed{{{ref.answer}}}$."


def reasoning(rng: random.Random, lines: int) -> str:
    out = []
    for _ in range(lines):
        x, y = rng.randint(2, 60), rng.randint(2, 60)
        out.append(rng.choice([
            f"First, note that ${x} \\times {y} = {x * y}$, which we will need later.",
            f"Subtracting, we get ${x + y} - {y} = {x}$.",
            f"Let $n$ be the number of items; then $n + {x} = {x + y}$ gives $n = {y}$.",
            f"The ratio is $\\frac{{{x}}}{{{y}}}$, so we scale by {y} to clear the denominator.",
            f"Squaring both sides gives $a^2 = {x * x}$, and since $a > 0$ we keep the positive root.",
            f"We check the case $k = {x}$ separately: it does not satisfy the constraint.",
        ]))
    return "\n\n".join(out)


def completion(ref: Reference, rng: random.Random) -> tuple[str, int]:
    """One completion and its label (1 if its final answer is right)."""
    body = reasoning(rng, rng.randint(2, 6))
    kind = rng.choices(["same", "equivalent", "wrong", "missing"], [38, 17, 33, 12])[0]
    if kind == "missing":  # ran out of tokens mid-thought
        return f"Let's think step by step.\n\n{body}\n\nNow we combine this with the", 0
    answer = {"same": ref.answer, "equivalent": rng.choice(ref.equivalents), "wrong": rng.choice(ref.wrong)}[kind]
    label = int(kind != "wrong")
    style = rng.choices(["boxed", "minerva", "tag"], [70, 15, 15])[0]
    if style == "boxed":
        return f"Let's think step by step.\n\n{body}\n\nTherefore, the answer is $\\boxed{{{answer}}}$.", label
    if style == "minerva":
        return f"{body}\n\nFinal Answer: The final answer is ${answer}$. I hope it is correct.", label
    return f"<think>\n{body}\n</think>\n<answer>{answer}</answer>", label


def make_batch(seed: int) -> dict:
    rng = random.Random(seed)
    prompts, completions, solutions, labels, kinds = [], [], [], [], []
    for index in range(REFERENCES):
        ref = make_reference(rng)
        gold = stored_gold(ref, rng)
        prompt = [{"role": "user", "content": f"Problem {seed}.{index}: compute the value. Put your final answer in \\boxed{{}}."}]
        for _ in range(PER_GROUP):
            text, label = completion(ref, rng)
            prompts.append(prompt)
            completions.append([{"role": "assistant", "content": text}])
            solutions.append(gold)
            labels.append(label)
            kinds.append(ref.kind)
    return {"prompts": prompts, "completions": completions, "solution": solutions, "labels": labels, "kinds": kinds}


# -- math-verify's own verdict -----------------------------------------------------------------
def math_verify_verdict(gold: str, text: str) -> int | None:
    """math-verify's verdict as a grader configures it; None when it cannot read the gold."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    delimited = "$" in gold or "\\boxed" in gold or "\\(" in gold
    gold_parsed = parse(gold if delimited else f"${gold}$", parsing_timeout=None)
    if not gold_parsed:
        return None
    config = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())
    answer = parse(text, extraction_config=config, parsing_timeout=None)
    return int(verify(gold_parsed, answer, timeout_seconds=None))


def completion_style(text: str) -> str:
    if "<answer>" in text:
        return "answer tag"
    if "Final Answer:" in text:
        return "minerva"
    return "boxed" if "\\boxed" in text else "no answer"


# -- the run ---------------------------------------------------------------------------------
def timed(fn, batch: dict) -> tuple[float, list]:
    start = time.perf_counter()
    scores = fn(prompts=batch["prompts"], completions=batch["completions"], solution=batch["solution"])
    return time.perf_counter() - start, list(scores)


def verdict(score) -> str:
    return "None" if score is None else f"{score:g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7, help="steady-state repetitions (a new batch each)")
    parser.add_argument("--workers", type=int, default=None, help="grpo-host worker processes (default: cores)")
    parser.add_argument("--list-all", action="store_true", help="print every disagreement, not only the first batch's")
    parser.add_argument("--judge-batches", type=int, default=2, help="batches also judged by math-verify's own verdicts")
    args = parser.parse_args()

    logging.disable(logging.WARNING)  # math-verify logs a warning per timeout it swallows
    from trl.rewards import accuracy_reward

    import grpo_host

    ours = grpo_host.load_rewards([{"name": "accuracy", "params": {"answer_field": "solution"}}], workers=args.workers)[0]
    reward_set = ours.reward_set
    batches = [make_batch(seed) for seed in range(args.reps + 1)]
    n = len(batches[0]["completions"])
    print(f"batch: {REFERENCES} references x {PER_GROUP} completions = {n}; {args.reps} steady-state reps, "
          f"a new batch each; grpo-host workers: {reward_set.runtime.size}")

    results = []  # per batch: (trl scores, our scores)
    trl_times, our_times = [], []
    cold_ours, ours_scores = timed(ours, batches[0])
    cold_trl, trl_scores = timed(accuracy_reward, batches[0])
    results.append((trl_scores, ours_scores, reward_set.results_for(batches[0]["completions"], batches[0]["prompts"], {})["accuracy"]))
    print(f"cold first call: grpo-host {cold_ours * 1000:.0f} ms (starts the pool, imports math-verify in each worker); "
          f"TRL {cold_trl * 1000:.0f} ms")
    for rep, batch in enumerate(batches[1:], start=1):
        if rep % 2:
            t_trl, trl_scores = timed(accuracy_reward, batch)
            t_ours, ours_scores = timed(ours, batch)
        else:
            t_ours, ours_scores = timed(ours, batch)
            t_trl, trl_scores = timed(accuracy_reward, batch)
        trl_times.append(t_trl)
        our_times.append(t_ours)
        results.append((trl_scores, ours_scores, reward_set.results_for(batch["completions"], batch["prompts"], {})["accuracy"]))
        print(f"  rep {rep}: TRL {t_trl * 1000:7.0f} ms ({n / t_trl:6.0f}/s) | grpo-host {t_ours * 1000:6.0f} ms "
              f"({n / t_ours:6.0f}/s) | {t_trl / t_ours:5.1f}x")
    reward_set.close()

    t_trl, t_ours = statistics.median(trl_times), statistics.median(our_times)
    ratios = [a / b for a, b in zip(trl_times, our_times, strict=True)]
    print(f"\nsteady state, median of {args.reps}: TRL {t_trl * 1000:.0f} ms = {n / t_trl:.0f} completions/s; "
          f"grpo-host {t_ours * 1000:.0f} ms = {n / t_ours:.0f} completions/s; "
          f"ratio of medians {t_trl / t_ours:.1f}x (median per-rep ratio {statistics.median(ratios):.1f}x)")

    # -- verdicts --------------------------------------------------------------------------
    paths, outcomes, accuracy_vs_label = Counter(), Counter(), Counter()
    classes: Counter = Counter()
    lines: list[tuple[int, str]] = []
    for b, (batch, (trl_scores, ours_scores, rows)) in enumerate(zip(batches, results, strict=True)):
        for i, (t, o, row) in enumerate(zip(trl_scores, ours_scores, rows, strict=True)):
            paths[row.details.get("path", row.outcome)] += 1
            outcomes[row.outcome] += 1
            label = batch["labels"][i]
            accuracy_vs_label["trl"] += t == label
            accuracy_vs_label["ours"] += o == label
            if t == o:
                continue
            trl_right = t == label
            key = ("TRL right" if trl_right else "TRL wrong", batch["kinds"][i], f"TRL {verdict(t)} / ours {verdict(o)}")
            classes[key] += 1
            text = batch["completions"][i][0]["content"]
            tail = text[-90:].replace("\n", " ")
            lines.append((b, f"[{'TRL RIGHT' if trl_right else 'TRL wrong'}] batch {b} #{i} gold {batch['solution'][i]!r} "
                             f"label {label} TRL {verdict(t)} ours {verdict(o)} (ours read {row.details.get('extracted')!r}, "
                             f"{row.details.get('path')}) ...{tail!r}"))
    total = n * len(batches)
    print(f"\nverdicts over {len(batches)} batches ({total} samples): agree on {total - sum(classes.values())}, "
          f"differ on {sum(classes.values())}")
    print(f"  right by construction: TRL {accuracy_vs_label['trl']} / {total}, grpo-host {accuracy_vs_label['ours']} / {total}")
    print(f"  grpo-host outcomes: {dict(outcomes)}; paths: {dict(paths)}")
    print("  disagreements by class (whose verdict matched the label, gold kind, verdicts):")
    for (who, kind, pair), count in sorted(classes.items()):
        print(f"    {who:9s} {kind:10s} {pair:22s} {count:5d}")
    # -- judged by math-verify's own verdicts ----------------------------------------------------
    judged = min(args.judge_batches, len(batches))
    by_style: dict[str, Counter] = {}
    mv_lines = []
    for b in range(judged):
        batch, (trl_scores, ours_scores, rows) = batches[b], results[b]
        for i, (t, o) in enumerate(zip(trl_scores, ours_scores, strict=True)):
            text = batch["completions"][i][0]["content"]
            mv = math_verify_verdict(batch["solution"][i], text)
            style = completion_style(text)
            counts = by_style.setdefault(style, Counter())
            counts["samples"] += 1
            counts["trl"] += t == mv
            counts["ours"] += o == mv
            counts["label"] += mv == batch["labels"][i]
            if o != mv and t == mv and style != "answer tag":
                mv_lines.append(f"batch {b} #{i} [{style}] gold {batch['solution'][i]!r} label {batch['labels'][i]} "
                                f"math-verify {mv} TRL {verdict(t)} ours {verdict(o)} "
                                f"(ours read {rows[i].details.get('extracted')!r}) ...{text[-80:]!r}")
    if judged:
        print(f"\njudged by math-verify's own verdicts ({judged} batches), by completion style "
              "(math-verify reads no <answer> tag, so its verdict on those is not a grader's):")
        for style, c in sorted(by_style.items()):
            n_mv = c["samples"]
            print(f"  {style:12s} {n_mv:5d} samples: TRL agrees on {c['trl']} ({100 * c['trl'] / n_mv:.1f}%), "
                  f"grpo-host on {c['ours']} ({100 * c['ours'] / n_mv:.1f}%); math-verify matches the label on "
                  f"{c['label']} ({100 * c['label'] / n_mv:.1f}%)")
        print(f"  outside answer tags, samples where TRL agrees with math-verify and grpo-host does not: {len(mv_lines)}")
        for line in mv_lines[:40]:
            print("    " + line)

    trl_right = [line for _, line in lines if line.startswith("[TRL RIGHT")]
    print(f"\nsamples where TRL was right and grpo-host differs: {len(trl_right)}")
    for line in trl_right:
        print("  " + line)
    shown = [line for b, line in lines if args.list_all or b == 0]
    print(f"\nevery disagreement{'' if args.list_all else ' of batch 0 (--list-all for all batches)'}:")
    for line in shown:
        print("  " + line)


if __name__ == "__main__":
    main()
