"""Image writers that never leave a half-written file behind."""

from __future__ import annotations

import os
from pathlib import Path

from monai.data import NibabelWriter
from monai.config import PathLike

__all__ = ["AtomicNibabelWriter"]


class AtomicNibabelWriter(NibabelWriter):
    """
    ``NibabelWriter`` that writes to a temporary file in the target folder and renames it into place.

    A crash or a kill during writing leaves at most a ``*.partial.nii.gz`` file, never a truncated output
    under the final name. Use it as ``SaveImaged(writer="scripts.writers.AtomicNibabelWriter")``.
    """

    def write(self, filename: PathLike, verbose: bool = False, **obj_kwargs) -> None:
        target = Path(filename)
        suffix = "".join(target.suffixes[-2:]) if target.name.endswith(".nii.gz") else target.suffix
        partial = target.with_name(f"{target.name[: -len(suffix)]}.partial{suffix}")
        try:
            super().write(partial, verbose=verbose, **obj_kwargs)
            os.replace(partial, target)
        finally:
            if partial.exists():
                partial.unlink()
