"""
Load what ``scripts.data.datalists.resolve_images`` lists, each kind of input with exactly one reader.

``LoadImaged`` with a ``reader`` argument tries that reader and then silently falls back to every other
installed reader (``PydicomReader`` would read a DICOM folder that ``DicomSeriesReader`` refused, with
slices ordered by ``InstanceNumber`` and no checks). ``LoadInputImaged`` instead picks the reader from the
input (``InputReader``), so a bad input fails with one error that names the file and the reason.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

from monai.config import PathLike
from monai.data import ImageReader, ITKReader, NibabelReader, NrrdReader
from monai.transforms import LoadImaged
from monai.utils import OptionalImportError, ensure_tuple

from scripts.data.dicom import DicomSeriesReader
from scripts.data.errors import InputError

__all__ = ["DICOM_SERIES", "IMAGE_SUFFIXES", "READERS", "InputReader", "LoadInputImaged", "image_suffix", "load_input"]

DICOM_SERIES = "dicom series folder"

READERS: dict[str, tuple[type[ImageReader], str]] = {
    ".nii.gz": (NibabelReader, "nibabel"),
    ".nii": (NibabelReader, "nibabel"),
    ".nrrd": (NrrdReader, "pynrrd"),
    ".mha": (ITKReader, "itk"),
    ".mhd": (ITKReader, "itk"),
    DICOM_SERIES: (DicomSeriesReader, "pydicom"),
}
"""Reader class, and the package it needs, for each kind of input (a file suffix, or a DICOM series folder)."""

IMAGE_SUFFIXES = tuple(kind for kind in READERS if kind != DICOM_SERIES)
"""Image files read as one case each."""


def image_suffix(path: PathLike) -> str | None:
    """The ``IMAGE_SUFFIXES`` entry that ``path`` ends with (case-insensitive), or None."""
    name = Path(path).name.lower()
    return next((suffix for suffix in IMAGE_SUFFIXES if name.endswith(suffix)), None)


class InputReader(ImageReader):
    """
    Dispatch to the reader of each input kind (``READERS``); readers are created on first use.

    ``read`` returns ``(reader, image)`` and ``get_data`` forwards to that reader. Any failure is raised as
    ``InputError(path, reason)``: an unsupported suffix, a missing optional package (e.g. ``itk`` for
    ``.mha``), or a file the reader cannot parse.
    """

    def __init__(self) -> None:
        super().__init__()
        self._readers: dict[str, ImageReader] = {}

    def _kind(self, path: str) -> str:
        if os.path.isdir(path):
            return DICOM_SERIES
        suffix = image_suffix(path)
        if suffix is None:
            raise InputError(path, f"unsupported file type; expected {', '.join(READERS)}")
        return suffix

    def _reader(self, path: str) -> ImageReader:
        kind = self._kind(path)
        if kind not in self._readers:
            reader_class, package = READERS[kind]
            try:
                self._readers[kind] = reader_class()
            except OptionalImportError as error:
                raise InputError(path, f"reading {kind} needs the {package} package (pip install {package})") from error
        return self._readers[kind]

    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        names = ensure_tuple(filename)
        return len(names) == 1 and (os.path.isdir(names[0]) or image_suffix(names[0]) is not None)

    def read(self, data: Sequence[PathLike] | PathLike, **kwargs) -> tuple[ImageReader, Any, str]:
        names = ensure_tuple(data)
        if len(names) != 1:
            raise ValueError(f"{type(self).__name__} reads one image at a time, got {len(names)}: {names}")
        path = str(names[0])
        if not os.path.exists(path):
            raise InputError(path, "file not found")
        reader = self._reader(path)
        try:
            return reader, reader.read(path, **kwargs), path
        except InputError:
            raise
        except Exception as error:  # parser failures are properties of the file: name it
            raise InputError(path, f"cannot be read ({type(error).__name__}: {error})") from error

    def get_data(self, img: tuple[ImageReader, Any, str]) -> tuple[Any, dict]:
        reader, image, path = img
        try:
            return reader.get_data(image)
        except InputError:
            raise
        except Exception as error:  # lazy readers (nibabel) only fail when the voxels are read
            raise InputError(path, f"cannot be read ({type(error).__name__}: {error})") from error


class LoadInputImaged(LoadImaged):
    """
    ``LoadImaged`` that reads every key with ``InputReader`` (NIfTI, NRRD, MetaImage, DICOM series folder).

    Arguments are those of ``LoadImaged`` except ``reader``. Output: a ``MetaTensor`` in the input's
    geometry, affine in RAS (mm), ``meta["filename_or_obj"]`` = the input path (the folder for DICOM).
    """

    def __init__(self, keys, **kwargs) -> None:
        if "reader" in kwargs:
            raise TypeError(f"{type(self).__name__} chooses its reader from the input; do not pass reader")
        super().__init__(keys, **kwargs)
        self.input_reader = InputReader()

    def __call__(self, data: Mapping[Hashable, Any], reader: ImageReader | None = None) -> dict[Hashable, Any]:
        return super().__call__(data, reader or self.input_reader)


def load_input(path: PathLike) -> Any:
    """One input as a channel-first ``MetaTensor`` ``(1, H, W, D)``, float32, RAS affine."""
    return LoadInputImaged(keys="image", ensure_channel_first=True)({"image": str(Path(path))})["image"]
