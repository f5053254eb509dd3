"""Refuse names that nothing defines (a misspelt option or config key), naming the closest known ones."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["check_options", "closest"]


def closest(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` entries of ``known`` that look most like ``name`` (``difflib``, cutoff 0.6)."""
    return difflib.get_close_matches(name, list(known), n=n, cutoff=0.6)


def check_options(given: Iterable[str], known: Iterable[str], what: str = "option") -> None:
    """
    Raises:
        ValueError: naming every entry of ``given`` that is not in ``known``, each with its closest known
            names, e.g. ``unknown option 'val_fration' (did you mean 'val_fraction'?)``.
    """
    known = list(known)
    unknown = [name for name in given if name not in known]
    if unknown:
        parts = []
        for name in unknown:
            near = closest(name, known)
            parts.append(f"{name!r}" + (f" (did you mean {' or '.join(repr(k) for k in near)}?)" if near else ""))
        raise ValueError(f"unknown {what}{'s' if len(unknown) > 1 else ''} {', '.join(parts)}")
