"""
Datalist of the Medical Segmentation Decathlon pancreas task (``Task07_Pancreas``).

Layout read: ``root/dataset.json`` listing ``training`` pairs (``imagesTr/*.nii.gz``, ``labelsTr/*.nii.gz``;
labels 0 background, 1 pancreas, 2 tumour) and ``test`` images (``imagesTs``, no label). Both label 1
and 2 are pancreas here: ``configs/train.yaml`` binarises labels with ``label > 0.5``, so the original
label files are used as they are unless another merge is asked for.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from monai.apps import DecathlonDataset, download_and_extract

from scripts.data.checks import MSD_PANCREAS_LABELS
from scripts.data.datalists import datalist_entries, read_json
from scripts.data.errors import InputError
from scripts.data.naming import case_name
from scripts.data.writers import atomic_path, refuse_existing

from .datalist import Case, DatalistOptions, prepare_datalist

__all__ = ["TASK", "download_msd", "msd", "msd_cases", "relabel"]

TASK = "Task07_Pancreas"
TRAINING_MERGE = {0: 0, 1: 1, 2: 1}
"""What ``configs/train.yaml`` does to MSD labels (``AsDiscreted(threshold=0.5)``): tumour becomes pancreas."""
logger = logging.getLogger(__name__)


def download_msd(root: Path) -> None:
    """Download and unpack ``Task07_Pancreas`` (about 12 GB) into ``root.parent`` with MONAI's MSD mirror and md5."""
    if root.name != TASK:
        raise ValueError(f"--download needs --root to end with {TASK}, got {root}")
    try:
        download_and_extract(
            DecathlonDataset.resource[TASK], root.parent / f"{TASK}.tar", root.parent, DecathlonDataset.md5[TASK]
        )
    except Exception as error:  # no network, a partial download, a full disk: say what to do instead
        raise RuntimeError(
            f"could not download {TASK} ({type(error).__name__}: {error}); without network access, download "
            f"{DecathlonDataset.resource[TASK]} elsewhere, unpack it and pass its folder as --root"
        ) from error


def msd_cases(root: Path) -> tuple[list[Case], dict]:
    """The cases listed in ``root/dataset.json`` (absolute paths) and that JSON's content."""
    meta_path = root / "dataset.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} not found: --root must be an MSD task folder (e.g. {TASK})")
    meta = read_json(meta_path)
    cases = [
        Case(case_name(entry["image"]), entry["image"], entry.get("label"))
        for entry in datalist_entries(meta, meta_path, sections=("training",))
    ]
    for entry in datalist_entries(meta, meta_path, sections=("test",)):
        cases.append(Case(case_name(entry["image"]), entry["image"], needs_label=False))
    return cases, meta


def relabel(case: Case, mapping: Mapping[int, int], labels_dir: Path) -> Case:
    """
    Write ``case.label`` with its values mapped by ``mapping`` (others kept) to ``labels_dir`` as uint8.

    The header, and so the geometry, is the original's. Returns the case pointing at the new file.
    Raises ``InputError`` when nothing but 0 is left.
    """
    if case.label is None:
        return case
    target = labels_dir / Path(case.label).name
    source = nib.load(case.label)
    original = np.asarray(source.dataobj)
    merged = original.astype(np.uint8)
    for old, new in mapping.items():
        merged[original == old] = new
    if not merged.any():
        raise InputError(case.label, f"empty label after merging labels {dict(mapping)}")
    image = nib.Nifti1Image(merged, source.affine, source.header)
    image.set_data_dtype(np.uint8)
    image.header.set_slope_inter(1, 0)
    with atomic_path(target) as tmp:
        nib.save(image, tmp)
    return Case(case.name, case.image, str(target), case.needs_label)


def msd(
    root: str,
    output: str,
    merge_labels: dict | None = None,
    write_labels: bool = False,
    labels_dir: str | None = None,
    download: bool = False,
    **options: Any,
) -> str:
    """
    Write the datalist of an MSD Task07_Pancreas folder; return the datalist path.

    Args:
        root: the task folder holding ``dataset.json``, ``imagesTr``, ``labelsTr`` and ``imagesTs``.
        output: datalist JSON to write (paths in it are relative to its folder).
        merge_labels: label value mapping, e.g. ``"{2: 1}"`` (tumour is pancreas, the default and what
            the training config does anyway) or ``"{1: 0, 2: 1}"`` (tumour only). Any other mapping than
            the default writes relabelled files.
        write_labels: write relabelled label files even for the default mapping.
        labels_dir: where relabelled labels go; default ``<output folder>/labelsTr_merged``.
        download: download the task first (needs network access) if ``root/dataset.json`` is absent.
        options: ``scripts.prepare.DatalistOptions`` (val_fraction, test_fraction, seed, folds, skip_invalid,
            num_workers, and overwrite, which also replaces relabelled files).
    """
    settings = DatalistOptions.from_flags(options)
    root_path = Path(root).expanduser().absolute()
    if download and not (root_path / "dataset.json").is_file():
        download_msd(root_path)
    cases, meta = msd_cases(root_path)
    mapping = {int(k): int(v) for k, v in (merge_labels or {2: 1}).items()}
    effective = {value: mapping.get(value, value) for value in MSD_PANCREAS_LABELS}
    labels = meta.get("labels", {"0": "background", "1": "pancreas", "2": "cancer"})
    finalize = None
    if write_labels or effective != TRAINING_MERGE:
        target = Path(labels_dir or Path(output).expanduser().absolute().parent / "labelsTr_merged").absolute()
        existing = [
            str(target / Path(c.label).name) for c in cases if c.label and (target / Path(c.label).name).exists()
        ]
        if not settings.overwrite:
            refuse_existing(existing, hint="pass --overwrite to replace the relabelled files")
        target.mkdir(parents=True, exist_ok=True)
        finalize = partial(relabel, mapping=mapping, labels_dir=target)
        labels = {
            str(v): "+".join(labels.get(str(k), str(k)) for k, e in effective.items() if e == v)
            for v in sorted(set(effective.values()))
        }
    info = {
        "name": meta.get("name", TASK),
        "description": f"datalist of {root_path} written by python -m scripts.prepare msd",
        "labels": labels,
    }
    return str(
        prepare_datalist(
            cases,
            output,
            info=info,
            allowed_label_values=MSD_PANCREAS_LABELS,
            options=settings,
            finalize=finalize,
        )
    )
