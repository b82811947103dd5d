"""Errors the host raises, each phrased to tell the user what to do next."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class GrpoHostError(Exception):
    """An error with a message meant for the user; the CLI prints it without a traceback."""


class UnknownNameError(GrpoHostError, KeyError):
    def __init__(self, kind: str, name: str, installed: Iterable[str], hint: str = ""):
        installed = sorted(installed)
        self.kind, self.name, self.installed = kind, name, installed
        msg = f"unknown {kind} {name!r}; installed: {', '.join(installed) or '(none)'}"
        close = difflib.get_close_matches(name, installed, n=1, cutoff=0.6)
        if close:
            msg += f" (did you mean {close[0]!r}?)"
        if hint:
            msg += f". {hint}"
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class NameConflictError(GrpoHostError):
    """Two plugins registered the same reward or backend name."""


class BrokenPluginError(GrpoHostError):
    """A needed reward or backend comes from a plugin that failed to load."""


class RewardParamError(GrpoHostError, ValueError):
    """A reward was given a param it does not have, or a value of the wrong type."""


class RewardHealthError(GrpoHostError):
    """A reward's share of errors and timeouts passed the run's threshold."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
