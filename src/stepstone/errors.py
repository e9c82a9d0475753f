"""User-facing errors.

Anything a user can cause (a bad path, an unknown name, a malformed file, a config typo) raises a
`StepstoneError`. The CLI prints its message as one line and exits with code 2; everything else is a
bug and keeps its traceback.
"""
from __future__ import annotations

import difflib
from typing import Iterable


class StepstoneError(Exception):
    """A problem with the user's input. `str(err)` is one line that says what and where."""


class ConfigError(StepstoneError):
    """One or more problems in a configuration, collected and reported together."""

    def __init__(self, problems: Iterable[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems) if self.problems else "invalid configuration")


def choices(values: Iterable[str]) -> str:
    """Format valid choices for an error message: `a, b, c`."""
    return ", ".join(sorted(values))


def did_you_mean(value: str, options: Iterable[str]) -> str:
    """`, did you mean 'x'?` naming the closest of `options` (difflib's default cutoff 0.6), else ''."""
    close = difflib.get_close_matches(str(value), sorted(options), n=1)
    return f", did you mean '{close[0]}'?" if close else ""
