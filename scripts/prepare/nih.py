"""
Datalist of NIH Pancreas-CT as TCIA distributes it: DICOM series plus NIfTI labels.

Layout read: ``root/Pancreas-CT/PANCREAS_0001/<study>/<series>/*.dcm`` (one CT series per patient;
``root`` may also be the ``Pancreas-CT`` folder itself) and ``labels/label0001.nii.gz`` (0 background,
1 pancreas). Patients and labels are matched by number. The datalist points the image at the DICOM
series folder, which the configs' loader (``scripts.data.readers``) reads directly, or, with ``convert_to``, at a NIfTI copy stored in
the label's axis order, so image and label share shape and affine.

The NIH labels are known to need orientation care relative to the DICOM: every pair is checked on
its voxel grid (shape and affine, see ``scripts.data.checks.label_problems``) and mismatches are
reported with both geometries.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.transforms import Orientation

from scripts.data.errors import InputError
from scripts.data.readers import load_input
from scripts.data.writers import AtomicNibabelWriter, refuse_existing

from .datalist import PANCREAS_LABELS, Case, DatalistOptions, prepare_datalist

__all__ = ["LABEL_VALUES", "convert_series", "nih", "nih_cases"]

LABEL_VALUES = (0, 1)
"""NIH Pancreas-CT labels: 0 background, 1 pancreas."""
PATIENT = re.compile(r"PANCREAS_(\d+)$")
LABEL = re.compile(r"label(\d+)\.nii(\.gz)?$")
logger = logging.getLogger(__name__)


def convert_series(series: Path, label: Path, target: Path) -> None:
    """
    Write the DICOM ``series`` as the NIfTI ``target`` in the axis order of ``label`` (int16 HU when integral).

    Raises ``InputError`` naming the series when it cannot be read.
    """
    image = load_input(series)  # the configs' loader, with its series checks; raises InputError naming it
    image = Orientation(axcodes="".join(nib.aff2axcodes(nib.load(label).affine)), labels=None)(image)
    integral = bool(torch.equal(image, image.round())) and -32768 <= float(image.min()) <= float(image.max()) < 32768
    writer = AtomicNibabelWriter(output_dtype=np.int16 if integral else np.float32)
    writer.set_data_array(image, channel_dim=0)
    writer.set_metadata(image.meta, resample=False)
    writer.write(target)


def _series_of(patient: Path) -> tuple[Path | None, str]:
    """The one folder under ``patient`` holding ``*.dcm`` files, or None and the reason."""
    folders = sorted({p.parent for p in patient.rglob("*.dcm")})
    if not folders:
        return None, "no DICOM file (*.dcm) under the patient folder"
    if len(folders) > 1:
        return None, f"{len(folders)} DICOM series, expected one: {', '.join(str(f) for f in folders)}"
    return folders[0], ""


def nih_cases(root: Path, labels: Path, convert_to: Path | None = None, overwrite: bool = False) -> list[Case]:
    """
    One case per patient number found among the patient folders and the label files, named ``PANCREAS_<n>``.

    With ``convert_to``, each series with a label is written there as ``PANCREAS_<n>.nii.gz``
    (``convert_series``) unless that file exists (kept unless ``overwrite``).
    """
    patients_root = root / "Pancreas-CT" if (root / "Pancreas-CT").is_dir() else root
    patients = {int(m[1]): p for p in patients_root.iterdir() if p.is_dir() and (m := PATIENT.match(p.name))}
    label_files = {int(m[1]): p for p in labels.iterdir() if (m := LABEL.match(p.name))}
    if not patients and not label_files:
        raise FileNotFoundError(f"no PANCREAS_<n> folder in {patients_root} and no label<n>.nii.gz in {labels}")
    cases = []
    for number in sorted(patients.keys() | label_files.keys()):
        name = f"PANCREAS_{number:04d}"
        label = label_files.get(number)
        if number not in patients:
            cases.append(Case(name, None, str(label)))
            continue
        series, reason = _series_of(patients[number])
        if series is None:
            error = InputError(patients[number], reason)
            cases.append(Case(name, str(patients[number]), str(label) if label else None, errors=(error,)))
            continue
        image = series
        if convert_to is not None and label is not None:
            image = convert_to / f"{name}.nii.gz"
            if image.exists() and not overwrite:
                logger.info(f"keeping {image} converted earlier (pass --overwrite to convert {series} again)")
            else:
                try:
                    convert_series(series, label, image)
                except InputError as error:
                    cases.append(Case(name, str(series), str(label), errors=(error,)))
                    continue
        cases.append(Case(name, str(image), str(label) if label else None))
    return cases


def nih(
    root: str,
    labels: str,
    output: str,
    convert_to: str | None = None,
    **options: Any,
) -> str:
    """
    Write the datalist of NIH Pancreas-CT (TCIA DICOM + NIfTI labels); return the datalist path.

    Args:
        root: folder holding ``Pancreas-CT/PANCREAS_<n>/...`` (or the ``Pancreas-CT`` folder itself).
        labels: folder holding ``label<n>.nii.gz``.
        output: datalist JSON to write (paths in it are relative to its folder).
        convert_to: folder for NIfTI copies of the DICOM series, in the label's axis order; without it
            the datalist points at the DICOM series folders.
        options: ``scripts.prepare.DatalistOptions`` (val_fraction, test_fraction, seed, folds, skip_invalid,
            num_workers, and overwrite, which also converts again series converted before).
    """
    settings = DatalistOptions.from_flags(options)
    output_path = Path(output).expanduser().absolute()
    if not settings.overwrite:  # fail before a long conversion
        refuse_existing([output_path], hint="pass --overwrite to replace it")
    target = None
    if convert_to is not None:
        target = Path(convert_to).expanduser().absolute()
        target.mkdir(parents=True, exist_ok=True)
    cases = nih_cases(
        Path(root).expanduser().absolute(), Path(labels).expanduser().absolute(), target, settings.overwrite
    )
    info = {
        "name": "NIH-Pancreas-CT",
        "description": f"datalist of {root} and {labels} written by python -m scripts.prepare nih",
        "labels": PANCREAS_LABELS,
    }
    return str(
        prepare_datalist(
            cases,
            output_path,
            info=info,
            allowed_label_values=LABEL_VALUES,
            options=settings,
        )
    )
