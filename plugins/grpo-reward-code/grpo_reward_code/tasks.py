"""The `code-tasks` data source: small generated programming tasks scored by the `code` reward.

Each row is one task drawn from a family (stdin/stdout programs and call-based functions),
with its own parameter where the family has one and eight cases: two shown in the prompt as
examples, six not. ``input_output`` holds all eight (the APPS/TACO shape every tool reads);
``private_tests`` the six the prompt does not show, for ``code``'s ``hidden_tests`` param;
``answer`` a reference program in a fenced block (what ``try-reward --dataset`` scores when
given no completion; no reward reads it). Expected
outputs are computed here by trusted reference functions, never by running model code.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from grpo_host import DatasetSpec, Param

EXAMPLES = 2  # cases shown in the prompt
CASES = 8
# Families with few possible answers (YES/NO, True/False) need fewer distinct outputs.
MIN_DISTINCT_OUTPUTS = {"palindrome": 2, "is-prime": 2}


@dataclass(frozen=True)
class Family:
    name: str
    kind: str  # stdin | call
    statement: str  # may use {k}
    solution: str  # a reference program; may use {k}
    make_input: Callable[[random.Random, int], Any]  # stdin text, or the argument list
    answer: Callable[[Any, int], Any]  # expected stdout text, or the return value
    fn_name: str = ""
    signature: str = ""
    param: Callable[[random.Random], int] = lambda rng: 0


def _ints(rng: random.Random, n: int | None = None, lo: int = -50, hi: int = 50) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(n if n is not None else rng.randint(1, 8))]


def _line_of(nums: list[int]) -> str:
    return f"{len(nums)}\n{' '.join(map(str, nums))}\n"


def _nums(text: str) -> list[int]:
    return [int(x) for x in text.split()[1:]]


WORDS = (
    "apple",
    "river",
    "stone",
    "cloud",
    "tiger",
    "lemon",
    "quiet",
    "green",
    "paper",
    "noon",
    "level",
    "radar",
)

FAMILIES: tuple[Family, ...] = (
    Family(
        "sum-multiples",
        "stdin",
        "The first line holds n, the second n integers. Print the sum of those integers that are divisible by {k}.",
        "n = int(input())\nnums = list(map(int, input().split()))\nprint(sum(x for x in nums if x % {k} == 0))\n",
        lambda rng, k: _line_of(_ints(rng)),
        lambda t, k: f"{sum(x for x in _nums(t) if x % k == 0)}\n",
        param=lambda rng: rng.randint(2, 9),
    ),
    Family(
        "max-minus-min",
        "stdin",
        "The first line holds n, the second n integers. Print the largest minus the smallest.",
        "input()\nnums = list(map(int, input().split()))\nprint(max(nums) - min(nums))\n",
        lambda rng, k: _line_of(_ints(rng)),
        lambda t, k: f"{max(_nums(t)) - min(_nums(t))}\n",
    ),
    Family(
        "reverse-words",
        "stdin",
        "A line holds some words separated by single spaces. Print the words in reverse order.",
        "print(' '.join(input().split()[::-1]))\n",
        lambda rng, k: " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6))) + "\n",
        lambda t, k: " ".join(t.split()[::-1]) + "\n",
    ),
    Family(
        "count-letter",
        "stdin",
        "A line holds a lowercase word. Print how many times the letter '{c}' occurs in it.",
        "print(input().count('{c}'))\n",
        lambda rng, k: "".join(rng.choice("abcdeilmnoprst") for _ in range(rng.randint(1, 12))) + "\n",
        lambda t, k: f"{t.strip().count('abcdeilmnoprst'[k])}\n",
        param=lambda rng: rng.randrange(14),
    ),
    Family(
        "fizzbuzz-k",
        "stdin",
        "Read n. For i from 1 to n print i on its own line, but print Fizz when i is divisible by {k}, "
        "Buzz when divisible by {m}, and FizzBuzz when divisible by both.",
        "n = int(input())\nfor i in range(1, n + 1):\n    s = ('Fizz' if i % {k} == 0 else '') + ('Buzz' if i % {m} == 0 else '')\n"
        "    print(s or i)\n",
        lambda rng, k: f"{rng.randint(1, 30)}\n",
        lambda t, k: "".join(
            f"{(('Fizz' if i % (k // 10) == 0 else '') + ('Buzz' if i % (k % 10) == 0 else '')) or i}\n"
            for i in range(1, int(t) + 1)
        ),
        param=lambda rng: rng.randint(2, 4) * 10 + rng.randint(5, 7),
    ),
    Family(
        "gcd-lcm",
        "stdin",
        "A line holds two positive integers a and b. Print their greatest common divisor and their least common "
        "multiple, separated by a space.",
        "import math\na, b = map(int, input().split())\nprint(math.gcd(a, b), a * b // math.gcd(a, b))\n",
        lambda rng, k: f"{rng.randint(1, 200)} {rng.randint(1, 200)}\n",
        lambda t, k: (lambda a, b: f"{math.gcd(a, b)} {a * b // math.gcd(a, b)}\n")(*map(int, t.split())),
    ),
    Family(
        "palindrome",
        "stdin",
        "A line holds a lowercase word. Print YES if it reads the same backwards, else NO.",
        "s = input().strip()\nprint('YES' if s == s[::-1] else 'NO')\n",
        lambda rng, k: rng.choice(WORDS) + "\n",
        lambda t, k: "YES\n" if t.strip() == t.strip()[::-1] else "NO\n",
    ),
    Family(
        "sorted-desc",
        "stdin",
        "The first line holds n, the second n integers. Print them sorted from largest to smallest, space separated.",
        "input()\nprint(' '.join(map(str, sorted(map(int, input().split()), reverse=True))))\n",
        lambda rng, k: _line_of(_ints(rng)),
        lambda t, k: " ".join(map(str, sorted(_nums(t), reverse=True))) + "\n",
    ),
    Family(
        "fibonacci-mod",
        "stdin",
        "Read n (0 <= n <= 90). Print the n-th Fibonacci number (F0 = 0, F1 = 1) modulo {k}.",
        "n = int(input())\na, b = 0, 1\nfor _ in range(n):\n    a, b = b, a + b\nprint(a % {k})\n",
        lambda rng, k: f"{rng.randint(0, 90)}\n",
        lambda t, k: f"{_fib(int(t)) % k}\n",
        param=lambda rng: rng.choice((7, 10, 97, 1000, 10**9 + 7)),
    ),
    Family(
        "squares-per-line",
        "stdin",
        "The first line holds n, the second n integers. Print the square of each on its own line.",
        "input()\nfor x in map(int, input().split()):\n    print(x * x)\n",
        lambda rng, k: _line_of(_ints(rng)),
        lambda t, k: "".join(f"{x * x}\n" for x in _nums(t)),
    ),
    Family(
        "add-k",
        "call",
        "Return a + b + {k}.",
        "def add_k(a, b):\n    return a + b + {k}\n",
        lambda rng, k: [rng.randint(-100, 100), rng.randint(-100, 100)],
        lambda args, k: args[0] + args[1] + k,
        fn_name="add_k",
        signature="add_k(a, b)",
        param=lambda rng: rng.randint(1, 20),
    ),
    Family(
        "second-largest",
        "call",
        "Return the second largest distinct value of the list nums (it has at least two).",
        "def second_largest(nums):\n    return sorted(set(nums))[-2]\n",
        lambda rng, k: [_distinct(rng)],
        lambda args, k: sorted(set(args[0]))[-2],
        fn_name="second_largest",
        signature="second_largest(nums)",
    ),
    Family(
        "running-sum",
        "call",
        "Return the list of running sums of nums: element i is nums[0] + ... + nums[i].",
        "def running_sum(nums):\n    out, total = [], 0\n    for x in nums:\n        total += x\n        out.append(total)\n"
        "    return out\n",
        lambda rng, k: [_ints(rng)],
        lambda args, k: [sum(args[0][: i + 1]) for i in range(len(args[0]))],
        fn_name="running_sum",
        signature="running_sum(nums)",
    ),
    Family(
        "is-prime",
        "call",
        "Return True when n is a prime number, else False.",
        "def is_prime(n):\n    if n < 2:\n        return False\n    return all(n % d for d in range(2, int(n ** 0.5) + 1))\n",
        lambda rng, k: [rng.randint(0, 200)],
        lambda args, k: _is_prime(args[0]),
        fn_name="is_prime",
        signature="is_prime(n)",
    ),
    Family(
        "word-lengths",
        "call",
        "Return the lengths of the space-separated words of sentence, in order.",
        "def word_lengths(sentence):\n    return [len(w) for w in sentence.split()]\n",
        lambda rng, k: [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 5)))],
        lambda args, k: [len(w) for w in args[0].split()],
        fn_name="word_lengths",
        signature="word_lengths(sentence)",
    ),
    Family(
        "digit-sum-times",
        "call",
        "Return the sum of the decimal digits of n (n >= 0), times {k}.",
        "def digit_sum_times(n):\n    return sum(map(int, str(n))) * {k}\n",
        lambda rng, k: [rng.randint(0, 10**6)],
        lambda args, k: sum(map(int, str(args[0]))) * k,
        fn_name="digit_sum_times",
        signature="digit_sum_times(n)",
        param=lambda rng: rng.randint(1, 5),
    ),
)


def _fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def _is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, math.isqrt(n) + 1))


def _distinct(rng: random.Random) -> list[int]:
    nums = rng.sample(range(-50, 50), rng.randint(2, 7))
    return nums + rng.sample(nums, rng.randint(0, len(nums)))  # some repeats


def _fill(family: Family, text: str, k: int) -> str:
    if family.name == "count-letter":
        return text.replace("{c}", "abcdeilmnoprst"[k])
    if family.name == "fizzbuzz-k":
        return text.replace("{k}", str(k // 10)).replace("{m}", str(k % 10))
    return text.replace("{k}", str(k))


def make_task(family: Family, rng: random.Random) -> dict[str, Any]:
    k = family.param(rng)
    # Distinct inputs, and at least four distinct outputs where the family allows: a program
    # printing one constant must not pass a task.
    for _attempt in range(50):
        inputs: list[Any] = []
        seen: set[str] = set()
        for _ in range(CASES * 20):
            value = family.make_input(rng, k)
            marker = json.dumps(value)
            if marker not in seen:
                seen.add(marker)
                inputs.append(value)
            if len(inputs) == CASES:
                break
        outputs = [family.answer(value, k) for value in inputs]
        if len({json.dumps(o) for o in outputs}) >= MIN_DISTINCT_OUTPUTS.get(family.name, 4):
            break
    statement = _fill(family, family.statement, k)
    if family.kind == "stdin":
        shown = "\n".join(
            f"Example {i + 1}\ninput:\n{inputs[i]}output:\n{outputs[i]}" for i in range(EXAMPLES)
        )
        how = "Write a Python program that reads standard input and prints the answer."
        io = {"inputs": inputs, "outputs": outputs}
        hidden = {"inputs": inputs[EXAMPLES:], "outputs": outputs[EXAMPLES:]}
    else:
        shown = "\n".join(
            f"Example {i + 1}: {family.fn_name}({', '.join(map(repr, inputs[i]))}) == {outputs[i]!r}"
            for i in range(EXAMPLES)
        )
        how = f"Write a Python function {family.signature}."
        io = {"fn_name": family.fn_name, "inputs": inputs, "outputs": outputs}
        hidden = {"fn_name": family.fn_name, "inputs": inputs[EXAMPLES:], "outputs": outputs[EXAMPLES:]}
    prompt = f"{how}\n{statement}\n\n{shown}\nPut the whole program in one ```python code block."
    return {
        "prompt": prompt,
        "input_output": json.dumps(io),
        "private_tests": json.dumps(hidden),
        "answer": f"```python\n{_fill(family, family.solution, k)}```",
        "task": family.name,
    }


def code_task_rows(size: int = 300, seed: int = 0, kind: str = "both") -> Iterator[dict[str, Any]]:
    if kind not in ("both", "stdin", "call"):
        raise ValueError(f"kind must be 'both', 'stdin' or 'call', not {kind!r}")
    if size < 0:
        raise ValueError(f"size must be >= 0, not {size}")
    families = [f for f in FAMILIES if kind in ("both", f.kind)]
    for index in range(size):
        rng = random.Random(f"{seed}:{index}")
        yield make_task(families[index % len(families)], rng)


CODE_TASKS = DatasetSpec(
    name="code-tasks",
    description="Small generated programming tasks (stdin/stdout programs and call-based functions), 8 cases each",
    rows=code_task_rows,
    params=(
        Param("size", "int", 300, "How many tasks."),
        Param("seed", "int", 0, "The generator's seed: the same seed gives the same tasks."),
        Param("kind", "str", "both", "Which tasks: both, stdin (programs) or call (functions)."),
    ),
    columns=("input_output", "private_tests", "answer", "task"),
    rewards=("code",),
)
