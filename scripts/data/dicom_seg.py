"""Write a predicted mask as a DICOM Segmentation (SEG) object that references its source CT series (highdicom)."""

from __future__ import annotations

import copy
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection, PathLike
from monai.data import MetaTensor
from monai.transforms import MapTransform
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from scripts.data.dicom import read_series
from scripts.data.naming import output_path
from scripts.data.writers import atomic_path

__all__ = ["SaveDicomSegd", "dicom_seg_frames", "reference_problems", "referenceable_source", "write_dicom_seg"]

SOURCE_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID")
"""Identifiers every source slice needs so that a SEG can reference it."""
FILE_META_UIDS = {"SOPClassUID": "MediaStorageSOPClassUID", "SOPInstanceUID": "MediaStorageSOPInstanceUID"}
"""Dataset UIDs that the file meta header repeats (PS3.10), used where an anonymiser emptied the dataset's."""


def referenceable_source(source: Sequence[Dataset]) -> list[Dataset]:
    """
    The source slices with ``SOPClassUID`` / ``SOPInstanceUID`` taken from the file meta header where the
    dataset's own are missing or empty (the given datasets are not changed).
    """
    completed = []
    for ds in source:
        missing = {t: m for t, m in FILE_META_UIDS.items() if not str(ds.get(t, "") or "") and str(
            getattr(ds, "file_meta", Dataset()).get(m, "") or "")}
        if missing:
            ds = copy.deepcopy(ds)  # a shallow copy of a pydicom Dataset shares its elements
            for tag, meta_tag in missing.items():
                setattr(ds, tag, ds.file_meta.get(meta_tag))
        completed.append(ds)
    return completed


def reference_problems(source: Sequence[Dataset]) -> list[str]:
    """Why a SEG cannot reference ``source`` (after ``referenceable_source``); empty when it can."""
    return _missing_uids(referenceable_source(source))


def _missing_uids(source: Sequence[Dataset]) -> list[str]:
    problems = []
    for tag in SOURCE_UIDS:
        empty = [k for k, ds in enumerate(source) if not str(ds.get(tag, "") or "")]
        if empty:
            problems.append(f"{len(empty)} of {len(source)} source slices have no {tag}")
    return problems


def dicom_seg_frames(mask: torch.Tensor | np.ndarray, affine: np.ndarray, source: Sequence[Dataset]) -> np.ndarray:
    """
    Turn a mask in the geometry ``DicomSeriesReader`` gives a series into SEG frames, one per source slice.

    Args:
        mask: ``(1, columns, rows, slices)`` or ``(columns, rows, slices)``, slices in the order of ``source``.
        affine: the mask's RAS affine (mm); every source slice must lie where the affine puts its frame.
        source: the series' datasets in slice order (``scripts.data.dicom.read_series``).

    Returns:
        ``(slices, rows, columns)`` uint8 frames, frame ``k`` covering ``source[k]``.
    """
    volume = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask)
    volume = volume.reshape(volume.shape[-3:])
    rows, columns = int(source[0].Rows), int(source[0].Columns)
    if volume.shape != (columns, rows, len(source)):
        raise ValueError(
            f"mask shape {volume.shape} does not fit the series: (columns, rows, slices) = {(columns, rows, len(source))}"
        )
    for k in (0, len(source) - 1):
        ras = affine[:3] @ np.array([0.0, 0.0, float(k), 1.0])
        lps = ras * np.array([-1.0, -1.0, 1.0])
        if not np.allclose(lps, np.asarray(source[k].ImagePositionPatient, dtype=np.float64), atol=1e-2):
            raise ValueError(
                f"mask slice {k} lies at {lps.tolist()} (LPS), its source slice at {list(source[k].ImagePositionPatient)}"
            )
    return np.ascontiguousarray(np.transpose(volume > 0, (2, 1, 0))).astype(np.uint8)


def write_dicom_seg(
    frames: np.ndarray,
    source: Sequence[Dataset],
    filename: PathLike,
    segment_label: str = "Pancreas",
    algorithm_name: str = "pancreas_ct_dualssl",
    algorithm_version: str = "unknown",
) -> Path:
    """
    Write a binary DICOM SEG of ``frames`` (``(slices, rows, columns)``, one per ``source`` slice) atomically.

    The SEG belongs to the source study (same patient and study), is a new series, and references every
    source image (``ReferencedSeriesSequence`` holds the source ``SeriesInstanceUID``); one segment,
    SNOMED CT "Organ" / "Pancreas", algorithm type AUTOMATIC.

    Raises:
        ValueError: when the source lacks the identifiers a reference needs (``reference_problems``; e.g. an
            anonymiser emptied them and the file meta header does not repeat them).
    """
    source = referenceable_source(source)
    problems = _missing_uids(source)
    if problems:
        raise ValueError(f"a DICOM SEG cannot reference this series: {'; '.join(problems)}")
    import highdicom as hd  # here, not at module level: 0.28 s of start-up that runs without a SEG do not pay
    from pydicom.sr.codedict import codes
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=segment_label,
        segmented_property_category=codes.SCT.Organ,
        segmented_property_type=codes.SCT.Pancreas,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=algorithm_name, family=codes.cid7162.ArtificialIntelligence, version=algorithm_version
        ),
    )
    seg = hd.seg.Segmentation(
        source_images=list(source),
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid=generate_uid(),
        series_number=int(source[0].get("SeriesNumber", 0) or 0) + 1000,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="MONAI",
        manufacturer_model_name=algorithm_name,
        software_versions=algorithm_version,
        device_serial_number="none",
        series_description=f"{segment_label} ({algorithm_name} {algorithm_version})",
        omit_empty_frames=False,
    )
    filename = Path(filename)
    with atomic_path(filename) as partial:
        seg.save_as(partial)
    return filename


class SaveDicomSegd(MapTransform):
    """
    Save ``data[key]`` as ``<output_dir>/<case>_<output_postfix>.dcm`` when the case was read from a DICOM series.

    ``data[key]``: the mask ``(1, columns, rows, slices)`` in the input geometry (after ``Invertd`` and
    discretisation), a ``MetaTensor`` whose ``meta["filename_or_obj"]`` is the series folder; for any other
    input (an image file) nothing is written. The source headers are re-read (``read_series``, no pixels)
    so that the SEG references every source image. A folder in ``skip_folders`` gets no SEG (batch inference
    puts there the series that ``reference_problem`` finds unreferenceable, before inference).
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: PathLike,
        output_postfix: str = "seg",
        segment_label: str = "Pancreas",
        algorithm_name: str = "pancreas_ct_dualssl",
        algorithm_version: str = "unknown",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_dir = Path(output_dir)
        self.output_postfix = output_postfix
        self.segment_label = segment_label
        self.algorithm_name = algorithm_name
        self.algorithm_version = algorithm_version
        self.skip_folders: set[str] = set()

    def reference_problem(self, folder: PathLike) -> str | None:
        """Why the series in ``folder`` cannot get a SEG (headers only, no pixels read), or None when it can."""
        source, _ = read_series(folder, stop_before_pixels=True)
        problems = reference_problems(source)
        return "; ".join(problems) if problems else None

    def __call__(self, data: Mapping[Hashable, Any]) -> Mapping[Hashable, Any]:
        for key in self.key_iterator(data):
            mask = data[key]
            if not isinstance(mask, MetaTensor):
                raise TypeError(f"{type(self).__name__} needs a MetaTensor for {key!r}, got {type(mask).__name__}")
            folder = str(mask.meta.get("filename_or_obj", ""))
            if not os.path.isdir(folder) or folder in self.skip_folders:
                continue
            source, _ = read_series(folder, stop_before_pixels=True)
            frames = dicom_seg_frames(mask, mask.affine.numpy(), source)
            self.output_dir.mkdir(parents=True, exist_ok=True)
            write_dicom_seg(
                frames,
                source,
                output_path(folder, self.output_dir, self.output_postfix, ext=".dcm"),
                segment_label=self.segment_label,
                algorithm_name=self.algorithm_name,
                algorithm_version=self.algorithm_version,
            )
        return data
