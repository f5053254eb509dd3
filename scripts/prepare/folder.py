"""
Datalist of any folders of images and labels, given as glob patterns and paired by case name.

A file's case name is its name without the image suffix (``.nii.gz``, ``.nii``, ``.nrrd``, ...) and
without the optional image or label postfix (e.g. nnU-Net's ``_0000`` or ``_seg``), or, with
``match``, the part of its name that the regular expression captures (group ``case``, else group 1,
else the whole match). Without ``labels`` every image becomes a test case.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scripts.data.checks import MSD_PANCREAS_LABELS
from scripts.data.errors import InputError
from scripts.data.naming import case_name

from .datalist import PANCREAS_LABELS, Case, DatalistOptions, prepare_datalist

__all__ = ["folder", "folder_cases"]


def _names(pattern: str, postfix: str, match: re.Pattern | None) -> tuple[dict[str, str], list[InputError]]:
    """Case name -> path of every file matching ``pattern``, and an error for each name that cannot be made."""
    paths = sorted(os.path.abspath(p) for p in glob.glob(os.path.expanduser(pattern)))
    if not paths:
        raise FileNotFoundError(f"no file matches {pattern!r}")
    names: dict[str, str] = {}
    errors = []
    for path in paths:
        if match is None:
            name = case_name(path, postfix)
        elif found := match.search(Path(path).name):
            name = found["case"] if "case" in match.groupindex else found[1] if match.groups else found[0]
        else:
            errors.append(InputError(path, f"name does not match --match {match.pattern!r}"))
            continue
        if name in names:
            errors.append(InputError(path, f"case name {name!r} is also that of {names[name]}"))
            continue
        names[name] = path
    return names, errors


def folder_cases(
    images: str, labels: str | None = None, match: str | None = None, image_postfix: str = "", label_postfix: str = ""
) -> list[Case]:
    """Cases paired by name from the ``images`` and ``labels`` glob patterns (unpaired files: cases without partner)."""
    regex = re.compile(match) if match else None
    image_names, errors = _names(images, image_postfix, regex)
    label_names, label_errors = _names(labels, label_postfix, regex) if labels else ({}, [])
    cases = [Case(error.path, error.path, errors=(error,)) for error in errors + label_errors]
    for name in sorted(image_names.keys() | label_names.keys()):
        cases.append(Case(name, image_names.get(name), label_names.get(name), needs_label=labels is not None))
    return cases


def folder(
    images: str,
    output: str,
    labels: str | None = None,
    match: str | None = None,
    image_postfix: str = "",
    label_postfix: str = "",
    label_values: Sequence[int] | None = MSD_PANCREAS_LABELS,
    **options: Any,
) -> str:
    """
    Write the datalist of images and labels found by glob patterns; return the datalist path.

    Args:
        images: glob pattern of the images, e.g. ``"/data/ct/*.nii.gz"`` (quote it in the shell).
        output: datalist JSON to write (paths in it are relative to its folder).
        labels: glob pattern of the labels; without it every image is a test case.
        match: regular expression that extracts the case name from a file name, e.g. ``"case_(\\d+)"``.
        image_postfix, label_postfix: removed from the end of the names (after the suffix), e.g. ``_seg``.
        label_values: values a label may hold (default 0, 1, 2; training counts every value > 0 as pancreas).
        options: ``scripts.prepare.DatalistOptions`` (val_fraction, test_fraction, seed, folds, overwrite,
            skip_invalid, num_workers).
    """
    settings = DatalistOptions.from_flags(options)
    cases = folder_cases(images, labels, match, image_postfix, label_postfix)
    info = {
        "name": "folder",
        "description": f"datalist of images {images} and labels {labels} written by python -m scripts.prepare folder",
        "labels": PANCREAS_LABELS,
    }
    return str(
        prepare_datalist(
            cases,
            output,
            info=info,
            allowed_label_values=label_values,
            options=settings,
        )
    )
