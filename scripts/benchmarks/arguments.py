"""
Command-line values of the benchmarks' ``main`` functions, as ``fire`` passes them: ``--labelled 2,4,8`` arrives as
a tuple, ``--labelled 2`` as a number and ``--labelled "2, 4"`` as a string.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = ["comma_separated", "labelled_counts"]

T = TypeVar("T")


def comma_separated(value: str | int | float | Sequence[Any], cast: Callable[[Any], T]) -> list[T]:
    """``value`` as a list of ``cast`` values: a comma-separated string, a single number or a sequence.

    Raises:
        ValueError: an item ``cast`` cannot convert (as ``cast`` raises it).
    """
    if isinstance(value, str):
        items: Sequence[Any] = [item.strip() for item in value.split(",") if item.strip()]
    elif isinstance(value, (int, float)):
        items = [value]
    else:
        items = list(value)
    return [cast(item) for item in items]


def labelled_counts(value: str | int | Sequence[int], pool_cases: int) -> list[int]:
    """Labelled-case counts of a label-efficiency benchmark, each in ``[1, pool_cases]``.

    Raises:
        ValueError: a count that is not an integer or lies outside ``[1, pool_cases]``.
    """
    counts = comma_separated(value, int)
    if not counts or any(not 1 <= n <= pool_cases for n in counts):
        raise ValueError(f"labelled counts must be in [1, {pool_cases}], got {counts}")
    return counts
