"""
Read a folder holding one CT DICOM series as a 3D volume, refusing folders that would give a wrong one.

``DicomSeriesReader`` is MONAI's ``PydicomReader`` (same LPS -> RAS affine, same ``swap_ij`` axis order,
RescaleSlope/Intercept applied, float32) with two changes:

- the slices are ordered by their position along the slice normal (``ImagePositionPatient`` projected on
  the cross product of the ``ImageOrientationPatient`` row and column directions) instead of by
  ``InstanceNumber`` alone; ``InstanceNumber`` only picks the direction (the first slice is the one with
  the lower ``InstanceNumber``), so a well-numbered series gets exactly the affine ``PydicomReader`` gives it;
- the folder is checked before any pixel is decoded (``series_problems``). A folder is refused, with an
  ``scripts.data.errors.InputError`` naming the folder and the reason, when a file in it is not readable
  DICOM, it mixes series (different ``SeriesInstanceUID``), its slices differ in orientation, size or pixel
  spacing, two slices share a position, a slice is missing (a gap > ``max_gap_ratio`` x the median slice
  spacing), it is not CT, it holds fewer than 2 slices or a multi-frame image, or no installed pixel data
  decoder handles its transfer syntax (JPEG 2000 needs ``pylibjpeg-openjpeg``, JPEG-LS ``pyjpegls``).

Volume returned by ``get_data``: ``(columns, rows, slices)`` float32 in HU, affine in RAS (mm).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from monai.config import PathLike
from monai.data import PydicomReader
from monai.utils import MetaKeys, ensure_tuple
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder

from scripts.data.errors import InputError

__all__ = ["DicomSeriesReader", "is_dicom_file", "is_dicom_series", "read_series", "series_problems", "slice_positions"]

IGNORED_FILES = ("DICOMDIR",)
"""Files a series folder may hold besides its slices (hidden files, starting with '.', are ignored too)."""


def _series_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.name not in IGNORED_FILES
    )


def is_dicom_file(path: PathLike) -> bool:
    """A file named ``*.dcm`` or one that starts with the DICOM preamble and ``DICM`` prefix."""
    path = Path(path)
    return path.is_file() and (path.suffix.lower() == ".dcm" or pydicom.misc.is_dicom(path))


def is_dicom_series(folder: PathLike) -> bool:
    """A folder that directly holds at least one DICOM file (checked or not: that is the reader's job)."""
    folder = Path(folder)
    return folder.is_dir() and any(is_dicom_file(p) for p in _series_files(folder))


def slice_positions(datasets: Sequence[Dataset]) -> np.ndarray:
    """Position (mm) of each slice along the normal of its first slice's ``ImageOrientationPatient``."""
    orientation = np.asarray(datasets[0].ImageOrientationPatient, dtype=np.float64)
    normal = np.cross(orientation[:3], orientation[3:])
    return np.array([float(np.dot(normal, np.asarray(ds.ImagePositionPatient, dtype=np.float64))) for ds in datasets])


def _decoder_problem(transfer_syntax: pydicom.uid.UID) -> str | None:
    if not transfer_syntax.is_compressed:
        return None
    try:
        decoder = get_decoder(transfer_syntax)
    except NotImplementedError:
        return f"pydicom has no pixel data decoder for transfer syntax {transfer_syntax.name} ({transfer_syntax})"
    if decoder.is_available:
        return None
    missing = "; ".join(decoder.missing_dependencies) or "none known"
    return (
        f"no installed pixel data decoder for transfer syntax {transfer_syntax.name} ({transfer_syntax}); "
        f"install one of: {missing}"
    )


REQUIRED_TAGS = (
    "SeriesInstanceUID",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "Rows",
    "Columns",
)


def series_problems(datasets: Sequence[Dataset], files: Sequence[PathLike], max_gap_ratio: float = 1.5) -> list[str]:
    """
    Reasons why ``datasets`` (one per file of ``files``, headers are enough) are not one usable CT series.

    An empty list means: at least 2 single-frame CT slices of one series, same orientation, size and
    pixel spacing, distinct positions whose spacing has no gap above ``max_gap_ratio`` x the median,
    and a decoder for every transfer syntax.
    """
    names = [Path(f).name for f in files]
    if len(datasets) < 2:
        return [f"{len(datasets)} DICOM slice(s); a 3D series needs at least 2"]
    series = Counter(str(ds.get("SeriesInstanceUID", "")) for ds in datasets)
    if len(series) > 1:
        listed = ", ".join(f"{uid or '(none)'} ({n} files)" for uid, n in series.most_common())
        return [f"mixes {len(series)} DICOM series (SeriesInstanceUID {listed}); put each series in its own folder"]
    problems = []
    for ds, name in zip(datasets, names):
        missing = [tag for tag in REQUIRED_TAGS if tag not in ds]
        if missing:
            problems.append(f"{name} lacks {', '.join(missing)}")
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            problems.append(f"{name} is a multi-frame image ({ds.NumberOfFrames} frames), not supported")
    modalities = {str(ds.get("Modality", "")) for ds in datasets} - {""}
    if modalities - {"CT"}:
        problems.append(f"modality {', '.join(sorted(modalities))}, not CT")
    syntaxes = {ds.file_meta.get("TransferSyntaxUID", pydicom.uid.ImplicitVRLittleEndian) for ds in datasets}
    problems += [p for p in (_decoder_problem(pydicom.uid.UID(s)) for s in sorted(syntaxes)) if p]
    if problems:
        return problems
    first = datasets[0]
    for key in ("ImageOrientationPatient", "PixelSpacing", "Rows", "Columns"):
        reference = np.asarray(first.get(key), dtype=np.float64)
        for ds, name in zip(datasets, names):
            if not np.allclose(np.asarray(ds.get(key), dtype=np.float64), reference, atol=1e-4):
                problems.append(f"{key} differs between slices ({names[0]}: {first.get(key)}, {name}: {ds.get(key)})")
                break
    if problems:
        return problems
    positions = slice_positions(datasets)
    order = np.argsort(positions, kind="stable")
    steps = np.diff(positions[order])
    duplicate = np.flatnonzero(steps < 1e-3)
    if duplicate.size:
        a, b = names[order[duplicate[0]]], names[order[duplicate[0] + 1]]
        position = positions[order[duplicate[0]]]
        return [f"{duplicate.size} duplicate slice position(s), e.g. {a} and {b} both at {position:.2f} mm"]
    median = float(np.median(steps))
    gaps = np.flatnonzero(steps > max_gap_ratio * median)
    for gap in gaps:
        a, b = names[order[gap]], names[order[gap + 1]]
        problems.append(
            f"missing slice(s): {steps[gap]:.2f} mm between {a} and {b}, median slice spacing {median:.2f} mm"
        )
    return problems


def read_series(folder: PathLike, stop_before_pixels: bool = False) -> tuple[list[Dataset], list[str]]:
    """
    Read and check every file of a DICOM series folder; return the datasets and files in slice order.

    Slice order: by position along the slice normal, in the direction of increasing ``InstanceNumber``
    (see the module docstring). ``stop_before_pixels`` reads headers only.

    Raises:
        InputError: naming ``folder`` and the reason (``series_problems``, or a file that is not DICOM).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "not a folder; a DICOM series is read from the folder holding its slices")
    files = _series_files(folder)
    if not files:
        raise InputError(folder, "empty folder, no DICOM file")
    datasets = []
    for path in files:
        try:
            datasets.append(pydicom.dcmread(path, stop_before_pixels=stop_before_pixels))
        except Exception as error:  # any parser failure means the file is not usable DICOM
            raise InputError(folder, f"{path.name} is not a readable DICOM file ({type(error).__name__}: {error})")
    problems = series_problems(datasets, files)
    if problems:
        raise InputError(folder, "; ".join(problems))
    order = np.argsort(slice_positions(datasets), kind="stable")
    numbers = [ds.get("InstanceNumber") for ds in datasets]
    if numbers[order[0]] is not None and numbers[order[-1]] is not None and numbers[order[0]] > numbers[order[-1]]:
        order = order[::-1]
    return [datasets[i] for i in order], [str(files[i]) for i in order]


class DicomSeriesReader(PydicomReader):
    """
    ``PydicomReader`` for one checked CT series folder, slices ordered along their normal.

    Use it through ``scripts.data.readers.LoadInputImaged``, which picks it for folders; ``read`` takes one folder
    and raises ``InputError`` for anything ``read_series`` refuses or a slice whose pixels fail to decode.
    ``kwargs`` go to ``PydicomReader`` (``affine_lps_to_ras`` and ``swap_ij`` stay at their defaults to
    keep MONAI's geometry).
    """

    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        names = ensure_tuple(filename)
        return len(names) == 1 and os.path.isdir(names[0])

    def read(self, data: Sequence[PathLike] | PathLike, **kwargs) -> list[Dataset]:
        names = ensure_tuple(data)
        if len(names) != 1:
            raise ValueError(f"{type(self).__name__} reads one series folder at a time, got {len(names)}: {names}")
        datasets, files = read_series(names[0])
        self.filenames = [files]
        self.has_series = True
        self.folder = str(names[0])
        return datasets

    def _combine_dicom_series(self, data: Sequence[Dataset], filenames: Sequence[PathLike]) -> tuple[np.ndarray, dict]:
        """Stack the slices in the given (checked, sorted) order: ``(rows, columns, slices)`` and its metadata."""
        first = data[0]
        volume = np.empty((int(first.Rows), int(first.Columns), len(data)), dtype=np.float32)
        for k, (ds, filename) in enumerate(zip(data, filenames)):
            try:
                volume[..., k] = self._get_array_data(ds, filename)
            except Exception as error:  # decoder failures: truncated or corrupt pixel data
                raise InputError(
                    self.folder,
                    f"cannot decode the pixel data of {Path(filename).name} ({type(error).__name__}: {error})",
                ) from error
        positions = slice_positions(data)
        metadata = self._get_meta_dict(first)
        metadata["spacing"] = np.asarray(
            [*map(float, first.PixelSpacing), abs(positions[-1] - positions[0]) / (len(data) - 1)]
        )
        metadata["lastImagePositionPatient"] = np.asarray(data[-1].ImagePositionPatient, dtype=np.float64)
        metadata[MetaKeys.SPATIAL_SHAPE] = volume.shape
        return volume, metadata
