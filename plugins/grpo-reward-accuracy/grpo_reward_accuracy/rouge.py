"""ROUGE-L: longest common subsequence of word tokens, as precision, recall and F1.

Written here rather than taken from ``rouge-score``: that package brings nltk, absl-py and
numpy for a measure that is one LCS, and its tokenizer drops every non-ASCII letter ("café"
becomes "caf", Chinese text becomes nothing). Tokens here are runs of Unicode letters and
digits, lowercased; on ASCII text that is exactly rouge-score's default tokenization (no
stemming), so scores agree there.

The LCS length uses the bit-parallel algorithm of Allison and Dix (1986), as refined by Hyyrö
(2004): one row of the dynamic programme is one Python integer, so a 1,000 x 1,000-token pair
costs a thousand big-integer operations instead of a million Python steps.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_TOKEN = re.compile(r"[^\W_]+")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of ``a`` and ``b``."""
    if len(a) > len(b):
        a, b = b, a  # bits over the shorter sequence
    if not a:
        return 0
    masks: dict[str, int] = {}
    for i, token in enumerate(a):
        masks[token] = masks.get(token, 0) | (1 << i)
    full = (1 << len(a)) - 1
    row = full  # a 1 bit: that position of `a` is not yet matched at this LCS level
    for token in b:
        match = masks.get(token)
        if match:
            low = row & match
            row = ((row + low) | (row - low)) & full
    return len(a) - row.bit_count() if hasattr(row, "bit_count") else len(a) - bin(row).count("1")


def rouge_l(prediction: str, reference: str) -> tuple[float, float, float]:
    """(precision, recall, F1) of ROUGE-L; all 0.0 when either side has no tokens."""
    pred, ref = tokenize(prediction), tokenize(reference)
    if not pred or not ref:
        return 0.0, 0.0, 0.0
    lcs = lcs_length(pred, ref)
    precision, recall = lcs / len(pred), lcs / len(ref)
    f1 = 0.0 if lcs == 0 else 2 * precision * recall / (precision + recall)
    return precision, recall, f1
