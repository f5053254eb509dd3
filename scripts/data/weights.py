"""Tell a user why a weights file cannot be loaded, in words about the file, never by suggesting unsafe loading."""

from __future__ import annotations

import zipfile
from pathlib import Path

from monai.config import PathLike

from scripts.data.errors import InputError

__all__ = ["weights_error"]

LFS_POINTER = b"version https://git-lfs"


def weights_error(path: PathLike, error: BaseException) -> InputError:
    """
    An ``InputError`` naming ``path`` that says what the file is, for ``error`` raised by
    ``torch.load(path, weights_only=True)`` (or a loader built on it, such as MONAI's ``CheckpointLoader``).

    Recognised: a missing file, a Git LFS pointer (the weights were not fetched), a TorchScript archive, a file
    holding pickled objects other than tensors, a truncated or foreign file. The message never advises
    ``weights_only=False``: a checkpoint that needs it can run code when loaded.
    """
    path = Path(path)
    if not path.is_file():
        return InputError(path, "weights file not found")
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(LFS_POINTER):
        return InputError(path, "a Git LFS pointer, not the weights: fetch them with `git lfs pull` and run again")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any(name.endswith(("/constants.pkl", "/code/__torch__.py")) or "/code/" in name for name in names):
            return InputError(
                path, "a TorchScript module, not a state dict: pass the state dict (models/model.pt) as the checkpoint"
            )
    text = str(error)
    if "Weights only load failed" in text or "Unsupported global" in text or "UnpicklingError" in type(error).__name__:
        return InputError(
            path,
            "holds pickled objects other than tensors, which this bundle never loads (they could run code); "
            "save a state dict of tensors (torch.save(network.state_dict(), path)) from a trusted source",
        )
    return InputError(path, f"cannot be read as PyTorch weights, truncated or not a checkpoint ({type(error).__name__})")
