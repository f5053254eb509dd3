"""Writers that never leave a half-written file behind."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from monai.config import PathLike
from monai.data import NibabelWriter

__all__ = ["AtomicNibabelWriter", "atomic_path"]

_DOUBLE_SUFFIXES = (".nii.gz", ".tar.gz")


@contextmanager
def atomic_path(target: PathLike) -> Iterator[Path]:
    """
    Yield a temporary path next to ``target`` (``<name>.partial<suffix>``); rename it to ``target`` on success.

    Whatever the block writes to the temporary path appears under ``target`` all at once (``os.replace`` in
    the same folder), or not at all: on an exception the temporary file is removed and the exception raised.
    """
    target = Path(target)
    suffix = next((s for s in _DOUBLE_SUFFIXES if target.name.endswith(s)), target.suffix)
    partial = target.with_name(f"{target.name[: len(target.name) - len(suffix)]}.partial{suffix}")
    try:
        yield partial
        os.replace(partial, target)
    finally:
        if partial.exists():
            partial.unlink()


class AtomicNibabelWriter(NibabelWriter):
    """
    ``NibabelWriter`` that writes to a temporary file in the target folder and renames it into place.

    A crash or a kill during writing leaves at most a ``*.partial.nii.gz`` file, never a truncated output
    under the final name. Use it as ``SaveImaged(writer="scripts.writers.AtomicNibabelWriter")``.
    """

    def write(self, filename: PathLike, verbose: bool = False, **obj_kwargs) -> None:
        with atomic_path(filename) as partial:
            super().write(partial, verbose=verbose, **obj_kwargs)
