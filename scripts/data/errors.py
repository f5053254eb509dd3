"""
The exceptions of bad input, and how a failure is described to the user.

``InputError`` names one bad file and the reason; ``DatalistError`` gathers every ``InputError`` of a
datalist. MONAI wraps transform failures (``RuntimeError: applying transform ...``), so ``describe_error``
walks the ``__cause__`` chain and reports the error that names the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

__all__ = ["DatalistError", "InputError", "describe_error", "root_cause"]


class InputError(ValueError):
    """One bad input file: ``str(error) == f"{path}: {reason}"``."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # keep the two-argument constructor when pickled (e.g. out of a DataLoader worker)
        return type(self), (self.path, self.reason)


class DatalistError(ValueError):
    """
    Some cases of a datalist are bad; ``errors`` holds every problem found, one ``InputError`` per file.

    The message says how many of how many cases are bad and lists every problem on its own line.
    """

    def __init__(self, errors: Sequence[InputError], num_cases: int, num_bad_cases: int) -> None:
        self.errors = list(errors)
        self.num_cases = num_cases
        self.num_bad_cases = num_bad_cases
        lines = "\n".join(f"  {error}" for error in self.errors)
        super().__init__(f"{num_bad_cases} of {num_cases} cases are invalid:\n{lines}")

    def __reduce__(self):
        return type(self), (self.errors, self.num_cases, self.num_bad_cases)


def root_cause(error: BaseException) -> BaseException:
    """
    The error to report for ``error``: the outermost ``InputError`` of its ``__cause__`` chain (it names the
    file), else the innermost error of the chain.
    """
    chain = [error]
    while chain[-1].__cause__ is not None:
        chain.append(chain[-1].__cause__)
    return next((e for e in chain if isinstance(e, InputError)), chain[-1])


def describe_error(error: BaseException) -> str:
    """``"Type: message"`` of ``root_cause(error)``."""
    root = root_cause(error)
    return f"{type(root).__name__}: {root}".strip()
