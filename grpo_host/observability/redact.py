"""Redaction: the one step that keeps secrets out of everything a run writes or prints.

The values of environment variables whose names look secret (a ``TOKEN``, ``SECRET``,
``PASSWORD``, ``PASSWD``, ``KEY`` or ``CREDENTIAL(S)`` part: ``HF_TOKEN``, ``OPENAI_API_KEY``,
the AWS credentials; a whole part, so ``TOKENIZERS_PARALLELISM`` and ``KEYBOARD`` are not)
are replaced by ``***`` wherever they appear: the console, ``metrics.jsonl``,
``samples.jsonl``, the report, the files of the output dir, tracker params and tags, a
SageMaker request. More names, or glob patterns of names, come from the run config's
``redact_env`` and the ``GRPO_HOST_REDACT_ENV`` variable (comma-separated).

A value shorter than ``MIN_SECRET_CHARS`` is left alone (``MY_KEY=1`` would otherwise turn
every ``1`` of the output into ``***``); explicitly named variables count from ``MIN_NAMED_CHARS``.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any, TextIO
from urllib.parse import quote

MASK = "***"
ENV_LIST = "GRPO_HOST_REDACT_ENV"
MIN_SECRET_CHARS = 8
MIN_NAMED_CHARS = 3
SECRET_NAME = re.compile(
    r"(^|[_.\-])(TOKENS?|SECRETS?|PASSWORDS?|PASSWD|(API|ACCESS|PRIVATE)?_?KEYS?|CREDENTIALS?)"
    r"([_.\-]|$)",
    re.IGNORECASE,
)
# A setting that names a variable (api_key_env: OPENAI_API_KEY) holds a name, not a secret.
NAMES_A_VARIABLE = re.compile(r"(_env|_var|_name|_file|_path)$", re.IGNORECASE)

_configured: set[str] = set()


def configure(names: Iterable[str]) -> None:
    """Add variable names (or glob patterns) to redact in this process, e.g. the config's ``redact_env``."""
    _configured.update(n.strip() for n in names if n and n.strip())


def looks_secret(name: str) -> bool:
    """Whether a variable or setting name looks like it holds a secret (``HF_TOKEN``, ``password``)."""
    return bool(SECRET_NAME.search(name)) and not NAMES_A_VARIABLE.search(name)


def _named_patterns(environ: Mapping[str, str]) -> set[str]:
    listed = {n.strip() for n in environ.get(ENV_LIST, "").split(",") if n.strip()}
    return listed | _configured


def secret_values(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{variable: value}`` of the variables whose values are redacted."""
    env = os.environ if environ is None else environ
    patterns = _named_patterns(env)
    found = {}
    for name, value in env.items():
        if not value or name == ENV_LIST:
            continue
        named = any(fnmatch.fnmatchcase(name, p) for p in patterns)
        if (named and len(value) >= MIN_NAMED_CHARS) or (
            looks_secret(name) and len(value) >= MIN_SECRET_CHARS
        ):
            found[name] = value
    return found


class Redactor:
    """Replaces each secret value (and its JSON- and URL-escaped forms) by ``***``."""

    def __init__(self, values: Iterable[str]):
        forms: set[str] = set()
        for value in values:
            forms.update({value, json.dumps(value)[1:-1], quote(value, safe="")})
        self._pattern = (
            re.compile("|".join(re.escape(v) for v in sorted(forms, key=len, reverse=True)))
            if forms
            else None
        )

    def __bool__(self) -> bool:
        return self._pattern is not None

    def text(self, text: str) -> str:
        return text if self._pattern is None or not text else self._pattern.sub(MASK, text)

    def value(self, data: Any) -> Any:
        """``data`` with every string in it redacted (dict keys too); other values as they are."""
        if self._pattern is None:
            return data
        if isinstance(data, str):
            return self.text(data)
        if isinstance(data, Mapping):
            return {self.text(k) if isinstance(k, str) else k: self.value(v) for k, v in data.items()}
        if isinstance(data, (list, tuple)):
            return (
                type(data)(self.value(v) for v in data)
                if isinstance(data, list)
                else tuple(self.value(v) for v in data)
            )
        return data


_cache: tuple[tuple[tuple[str, str], ...], Redactor] | None = None


def current(environ: Mapping[str, str] | None = None) -> Redactor:
    """The redactor for the environment now (rebuilt when a secret variable changes)."""
    global _cache
    key = tuple(sorted(secret_values(environ).items()))
    if _cache is None or _cache[0] != key:
        _cache = (key, Redactor(v for _, v in key))
    return _cache[1]


def redact(data: Any) -> Any:
    """``data`` (text, or a JSON-like structure) with the secrets of the environment replaced by ``***``."""
    return current().value(data)


def redact_settings(data: Any) -> Any:
    """Like :func:`redact`, and also masks the value of any key that looks secret (``password:``):
    for what leaves the run as a record (tracker params and tags), never for a config the run reads."""
    data = redact(data)
    if isinstance(data, Mapping):
        return {
            k: MASK
            if isinstance(k, str) and looks_secret(k) and isinstance(v, str) and v
            else redact_settings(v)
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [redact_settings(v) for v in data]
    return data


class RedactingStream:
    """A text stream that redacts what is written to it: ``sys.stdout = RedactingStream(sys.stdout)``."""

    def __init__(self, stream: TextIO):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(current().text(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def redact_std_streams() -> None:
    """Redact this process's own prints, logging and tracebacks."""
    if not isinstance(sys.stdout, RedactingStream):
        sys.stdout = RedactingStream(sys.stdout)
    if not isinstance(sys.stderr, RedactingStream):
        sys.stderr = RedactingStream(sys.stderr)
