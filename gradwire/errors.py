"""The one exception tree of GradWire.

Every error a user can cause (a bad parameter, an unknown name, a malformed scenario, a
disconnected topology, a NaN gradient) is a subclass of :class:`GradWireError` whose
message names the offending field and how to fix it. ``run_sim.py`` prints these as one
line and exits non-zero; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class GradWireError(Exception):
    """Base class of every error caused by user input."""


class ConfigError(GradWireError, ValueError):
    """An impossible parameter value; the message names the parameter and the allowed range."""


class UnknownNameError(GradWireError, KeyError):
    """A name (codec, model, topology, collective, device) that is not registered."""

    def __init__(self, kind: str, name: str, valid: Sequence[str]) -> None:
        self.kind = kind
        self.name = name
        self.valid = sorted(valid)
        super().__init__(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(self.valid)}")

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class CodecError(GradWireError):
    """A codec cannot encode or decode what it was given."""


class NonFiniteGradientError(CodecError, ValueError):
    """A gradient holds NaN or Inf; compressing it would hide the problem."""


class PayloadError(CodecError, ValueError):
    """A payload cannot be what its codec produced: wrong format version, codec or parameters,
    a length that does not match the element count, or bytes that decode past their end."""


class StoreError(GradWireError):
    """A results folder cannot be used: not creatable, a file, or held by another run."""


class TopologyError(GradWireError, ValueError):
    """A topology is unusable: disconnected, non-positive bandwidth, too few GPUs, ..."""


class WorkloadError(GradWireError, ValueError):
    """A model cannot be built or profiled as asked (unknown model, impossible batch)."""


@dataclass(frozen=True)
class Problem:
    """One problem found in a scenario: where (a dotted path with list indices) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ScenarioError(GradWireError, ValueError):
    """A scenario is invalid; carries every problem found, each with its path."""

    def __init__(self, problems: Sequence[Problem], source: str = "") -> None:
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s){where}:\n{lines}")
