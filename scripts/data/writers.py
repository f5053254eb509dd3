"""
Writers that never leave a half-written file behind and never replace a file by accident.

Every output of the bundle (masks, maps, reports, datalists, checkpoints, phantom cases) is written to a
temporary file in its target folder and renamed into place when complete (``atomic_path``). Temporary names
are unique to the writer (``.<name>.<random>.partial<suffix>``), so two runs writing into one folder never
share one. ``refuse_existing`` is the one check that refuses to replace earlier outputs.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from monai.config import PathLike
from monai.data import NibabelWriter

__all__ = ["AtomicNibabelWriter", "PARTIAL_MARK", "atomic_path", "refuse_existing"]

PARTIAL_MARK = ".partial"
"""Part of every temporary file name (``*.partial*``): such a file is never a finished output."""
_DOUBLE_SUFFIXES = (".nii.gz", ".tar.gz")


def _file_mode() -> int:
    """The mode ``open()`` gives a new file under the process' umask (``mkstemp`` would leave 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def refuse_existing(paths: Iterable[PathLike], hint: str = "set overwrite to true to replace them") -> None:
    """
    Raises:
        FileExistsError: naming every path of ``paths`` that exists, followed by ``hint``.
    """
    existing = [str(path) for path in paths if Path(path).exists()]
    if existing:
        shown = ", ".join(existing[:5]) + (f" and {len(existing) - 5} more" if len(existing) > 5 else "")
        raise FileExistsError(f"{shown} exist{'s' if len(existing) == 1 else ''} from an earlier run; {hint}")


@contextmanager
def atomic_path(target: PathLike, overwrite: bool = True) -> Iterator[Path]:
    """
    Yield a temporary path next to ``target``; move it to ``target`` when the block succeeds.

    Whatever the block writes to the temporary path appears under ``target`` all at once (a rename in the same
    folder), or not at all: on an exception the temporary file is removed and the exception raised. The
    temporary name keeps ``target``'s suffix (``.nii.gz`` stays compressed).

    Args:
        target: the final path.
        overwrite: replace an existing ``target``; when False the move fails with ``FileExistsError`` if
            ``target`` exists at that moment (no-clobber hard link), and the temporary file is removed.
    """
    target = Path(target)
    suffix = next((s for s in _DOUBLE_SUFFIXES if target.name.endswith(s)), target.suffix)
    stem = target.name[: len(target.name) - len(suffix)]
    handle, name = tempfile.mkstemp(prefix=f".{stem}.", suffix=f"{PARTIAL_MARK}{suffix}", dir=target.parent)
    os.close(handle)
    partial = Path(name)
    try:
        yield partial
        os.chmod(partial, _file_mode())
        if overwrite:
            os.replace(partial, target)
        else:
            os.link(partial, target)  # fails if target exists: never replaces a file written meanwhile
    finally:
        partial.unlink(missing_ok=True)


class AtomicNibabelWriter(NibabelWriter):
    """
    ``NibabelWriter`` that writes to a temporary file in the target folder and renames it into place.

    A crash or a kill during writing leaves at most a ``.*.partial.nii.gz`` file, never a truncated output
    under the final name. Use it as ``SaveImaged(writer="scripts.data.writers.AtomicNibabelWriter")``.
    """

    def write(self, filename: PathLike, verbose: bool = False, **obj_kwargs) -> None:
        with atomic_path(filename) as partial:
            super().write(partial, verbose=verbose, **obj_kwargs)
