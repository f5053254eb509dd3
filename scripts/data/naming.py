"""How cases and their outputs are named: one ``case_name`` for inference, evaluation and data preparation."""

from __future__ import annotations

from pathlib import Path

from monai.config import PathLike
from monai.data import FolderLayoutBase

from scripts.data.readers import image_suffix

__all__ = ["CaseFolderLayout", "case_name", "output_path"]


def case_name(path: PathLike, postfix: str = "") -> str:
    """
    The name of a case: an image file's name without its suffix (``scripts.data.readers.IMAGE_SUFFIXES``), a
    DICOM series folder's name as it is (``ircad_1.1`` stays ``ircad_1.1``); ``postfix`` is removed from the
    end of the name when it ends with it (e.g. ``_0000`` of nnU-Net style image names).
    """
    path = Path(path)
    suffix = image_suffix(path)
    name = path.name[: -len(suffix)] if suffix and not path.is_dir() else path.name
    return name[: -len(postfix)] if postfix and name.endswith(postfix) else name


def output_path(image: PathLike, output_dir: PathLike, postfix: str, ext: str = ".nii.gz") -> Path:
    """Where the output ``postfix`` of the case ``image`` goes: ``<output_dir>/<case>_<postfix><ext>``."""
    return Path(output_dir) / f"{case_name(image)}_{postfix}{ext}"


class CaseFolderLayout(FolderLayoutBase):
    """
    ``SaveImaged(folder_layout=...)`` naming its output ``output_path(input, output_dir, postfix, extension)``.

    MONAI's default layout strips anything after the last dot of the input's name, which shortens a DICOM
    folder such as ``ircad_1.1`` to ``ircad_1``; this one keeps ``case_name`` of the input.
    """

    def __init__(self, output_dir: PathLike, postfix: str, extension: str = ".nii.gz") -> None:
        self.output_dir = Path(output_dir)
        self.postfix = postfix
        self.extension = extension

    def filename(self, subject: PathLike = "subject", **kwargs) -> Path:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        return output_path(subject, self.output_dir, self.postfix, self.extension)
