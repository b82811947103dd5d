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


class PluginParamError(GrpoHostError, ValueError):
    """A plugin's param was set to a name it does not have or a value of the wrong type, or the
    plugin declares one that cannot work. ``kind`` ("reward", "backend", "data source"),
    ``owner`` (the reward's, backend's or data source's name) and ``param`` say which."""

    kind = "plugin"

    def __init__(self, message: str, *, kind: str = "", owner: str = "", param: str = ""):
        super().__init__(message)
        self.kind = kind or type(self).kind
        self.owner, self.param = owner, param


class RewardParamError(PluginParamError):
    """A reward's param: the reward kind of :class:`PluginParamError` (``except
    RewardParamError`` catches rewards' errors only)."""

    kind = "reward"


def param_error(kind: str, owner: str, param: str, problem: str, *, message: str = "") -> PluginParamError:
    """The error for ``kind``'s ``owner``'s ``param``: "backend 'accelerate' param
    'num_processes': ..." (a :class:`RewardParamError` for a reward)."""
    cls = RewardParamError if kind == "reward" else PluginParamError
    return cls(message or f"{kind} {owner!r} param {param!r}: {problem}", kind=kind, owner=owner, param=param)


class RewardHealthError(GrpoHostError):
    """A reward's share of errors and timeouts passed the run's threshold."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
