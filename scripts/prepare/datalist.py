"""
Validate the cases a preparation command found, split them, and write the datalist JSON.

The output is a Medical Segmentation Decathlon style ``dataset.json`` that
``monai.data.load_decathlon_datalist(path, True, "training")`` reads (as ``configs/train.yaml`` does
through its ``datalist`` key)::

    {"name": ..., "labels": {...}, "split": {"seed": 0, "val_fraction": 0.2, ...},
     "training":   [{"image": "imagesTr/a.nii.gz", "label": "labelsTr/a.nii.gz", "fold": 0}, ...],
     "validation": [{"image": ..., "label": ...}, ...],
     "test":       [{"image": ...}, ...]}

Paths are relative to the JSON file's folder. ``fold`` is present only with ``folds`` > 1. Test
entries without a label are the cases that come without one (e.g. MSD ``imagesTs``); labelled cases
held out with ``test_fraction`` keep their label.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from scripts.bundle.options import check_bool_values, check_options
from scripts.data.checks import MSD_PANCREAS_LABELS, check_datalist
from scripts.data.errors import DatalistError, InputError
from scripts.data.writers import atomic_path, refuse_existing

__all__ = ["PANCREAS_LABELS", "Case", "DatalistOptions", "assign_folds", "prepare_datalist", "split_cases"]

SPLITS = ("training", "validation", "test")
PANCREAS_LABELS = {"0": "background", "1": "pancreas"}
"""``labels`` entry of a datalist whose labels are 0 background and 1 pancreas."""
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Case:
    """
    One case found by a preparation command.

    ``image`` / ``label``: absolute paths (a NIfTI or NRRD file, or a DICOM series folder), None when
    that file was not found. ``needs_label``: False for test images that come without a label.
    ``errors``: problems the command found itself (e.g. a failed DICOM conversion).
    """

    name: str
    image: str | None
    label: str | None = None
    needs_label: bool = True
    errors: tuple[InputError, ...] = field(default=())


def _check_split_options(val_fraction: float, test_fraction: float, folds: int = 0) -> None:
    if not (0.0 <= val_fraction < 1.0 and 0.0 <= test_fraction < 1.0):
        raise ValueError(f"val_fraction and test_fraction must be in [0, 1), got {val_fraction}, {test_fraction}")
    if folds < 0 or folds == 1:
        raise ValueError(f"folds must be 0 (no folds) or at least 2, got {folds}")


@dataclass(frozen=True)
class DatalistOptions:
    """
    The options every preparation command shares: how the cases are split, checked and written.

    Attributes:
        val_fraction: share of the labelled cases listed under ``validation`` (``split_cases``).
        test_fraction: share of the labelled cases held out under ``test`` with their labels.
        seed: seed of the split and of the folds.
        folds: > 1 adds a ``fold`` index to every training entry (``assign_folds``).
        overwrite: replace an existing datalist (and files the command converts or relabels).
        skip_invalid: leave bad cases out (listed in ``<output stem>.excluded.json``) instead of failing.
        num_workers: threads that load cases during validation.

    Raises:
        ValueError: a fraction outside [0, 1) or ``folds`` 1 or negative (``from_flags``: also an unknown
            option, with the closest known names).
    """

    val_fraction: float = 0.0
    test_fraction: float = 0.0
    seed: int = 0
    folds: int = 0
    overwrite: bool = False
    skip_invalid: bool = False
    num_workers: int = 2

    def __post_init__(self) -> None:
        _check_split_options(self.val_fraction, self.test_fraction, self.folds)

    @classmethod
    def from_flags(cls, flags: dict[str, Any]) -> DatalistOptions:
        """The options of a command's ``**options`` flags, refusing a misspelt one or a bool given as a string
        (``--overwrite false``) before any work."""
        check_options(flags, [f.name for f in fields(cls)], what="option")
        check_bool_values(flags, {f.name: f.default for f in fields(cls)})
        return cls(**flags)


def split_cases(
    names: Iterable[str], val_fraction: float = 0.0, test_fraction: float = 0.0, seed: int = 0
) -> dict[str, list[str]]:
    """
    Split case names into ``training`` / ``validation`` / ``test`` lists (each sorted).

    The names are sorted, shuffled with ``numpy.random.default_rng(seed)``, and ``round(n * fraction)``
    of them go to test, then validation: the same names and seed always give the same split.
    """
    _check_split_options(val_fraction, test_fraction)
    order = sorted(names)
    shuffled = [order[i] for i in np.random.default_rng(seed).permutation(len(order))]
    num_test, num_val = round(len(order) * test_fraction), round(len(order) * val_fraction)
    if len(order) - num_test - num_val < 1:
        raise ValueError(f"no training case left: {len(order)} cases, {num_val} for validation and {num_test} for test")
    return {
        "training": sorted(shuffled[num_test + num_val :]),
        "validation": sorted(shuffled[num_test : num_test + num_val]),
        "test": sorted(shuffled[:num_test]),
    }


def assign_folds(names: Iterable[str], folds: int, seed: int = 0) -> dict[str, int]:
    """Fold (``0..folds-1``) of each name: sorted, shuffled with ``seed``, dealt round-robin (sizes differ <= 1)."""
    order = sorted(names)
    if not 2 <= folds <= len(order):
        raise ValueError(f"folds must be between 2 and the number of training cases ({len(order)}), got {folds}")
    return {
        order[i]: position % folds for position, i in enumerate(np.random.default_rng(seed).permutation(len(order)))
    }


def _check(cases: Sequence[Case], num_workers: int, **check_kwargs: Any) -> dict[str, list[InputError]]:
    """Problems of every case by name: the command's own, missing partners, then ``check_case``'s."""
    problems: dict[str, list[InputError]] = {}
    complete = []
    for case in cases:
        if case.errors:
            problems[case.name] = list(case.errors)
        elif case.image is None:
            problems[case.name] = [InputError(case.label, f"no image found for case {case.name}")]
        elif case.needs_label and case.label is None:
            problems[case.name] = [InputError(case.image, f"no label found for case {case.name}")]
        else:
            complete.append(case)
    labelled = [c for c in complete if c.needs_label]
    unlabelled = [c for c in complete if not c.needs_label]
    results = check_datalist(
        [{"image": c.image, "label": c.label} for c in labelled], num_workers=num_workers, **check_kwargs
    ) + check_datalist([{"image": c.image} for c in unlabelled], num_workers=num_workers, label_key=None)
    for case, errors in zip(labelled + unlabelled, results, strict=True):
        if errors:
            problems[case.name] = errors
    return problems


def _datalist_error(cases: Sequence[Case], problems: dict[str, list[InputError]]) -> DatalistError:
    errors = [error for case in cases for error in problems.get(case.name, [])]
    return DatalistError(errors, num_cases=len(cases), num_bad_cases=len(problems))


def _write_json(path: Path, content: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(content, indent=2) + "\n")


def prepare_datalist(
    cases: Sequence[Case],
    output: str | os.PathLike,
    *,
    info: dict[str, Any],
    allowed_label_values: Iterable[float] | None = MSD_PANCREAS_LABELS,
    options: DatalistOptions = DatalistOptions(),
    finalize: Callable[[Case], Case] | None = None,
) -> Path:
    """
    Validate ``cases``, split the labelled ones and write the datalist JSON to ``output``; return its path.

    Every case is checked (``scripts.data.checks.check_case``: readable, a CT volume in HU, label on the
    image's grid with only ``allowed_label_values`` and some foreground; an image or a label without its
    partner is a problem too). Any problem raises ``DatalistError`` listing all of them, unless
    ``skip_invalid``: then the bad cases are left out and listed in ``<output stem>.excluded.json``.
    ``finalize`` is then applied to each good case (e.g. writing a relabelled label); an ``InputError``
    it raises is a problem of that case too.

    Args:
        info: top-level entries of the JSON (``name``, ``description``, ``labels``); ``tensorImageSize`` (3D)
            and ``modality`` (CT) are added.
        options: split, overwrite, skip_invalid and num_workers (``DatalistOptions``).

    Raises:
        FileExistsError: the datalist (or, with ``skip_invalid``, its exclusion report) exists and not ``overwrite``.
        DatalistError: listing every bad case, unless ``skip_invalid``.
        ValueError: no case, two cases with one name, or no valid case.
    """
    val_fraction, test_fraction, seed, folds = options.val_fraction, options.test_fraction, options.seed, options.folds
    skip_invalid = options.skip_invalid
    output = Path(output).expanduser().absolute()
    report = output.with_suffix(".excluded.json")
    if not options.overwrite:
        refuse_existing((output, report) if skip_invalid else (output,), hint="pass --overwrite to replace it")
    if not cases:
        raise ValueError("no case found")
    duplicates = sorted(name for name, count in Counter(case.name for case in cases).items() if count > 1)
    if duplicates:
        raise ValueError(f"several cases share a name (names pair images with labels): {duplicates}")
    problems = _check(cases, options.num_workers, allowed_label_values=allowed_label_values)
    if problems and not skip_invalid:
        raise _datalist_error(cases, problems)
    good = []
    for case in cases:
        if case.name in problems:
            continue
        try:
            good.append(finalize(case) if finalize else case)
        except InputError as error:
            problems[case.name] = [error]
    if problems:
        if not skip_invalid:
            raise _datalist_error(cases, problems)
        logger.warning(str(_datalist_error(cases, problems)))
        output.parent.mkdir(parents=True, exist_ok=True)
        excluded = [
            {"case": c.name, "file": e.path, "reason": e.reason} for c in cases for e in problems.get(c.name, [])
        ]
        _write_json(report, {"num_cases": len(cases), "num_excluded": len(problems), "excluded": excluded})
        logger.warning(f"left {len(problems)} invalid case(s) out of {output}; see {report}")
    if not good:
        raise ValueError(f"no valid case among the {len(cases)} found")
    labelled = {case.name: case for case in good if case.needs_label}
    split = split_cases(labelled, val_fraction, test_fraction, seed) if labelled else {k: [] for k in SPLITS}
    fold_of = assign_folds(split["training"], folds, seed) if folds else {}
    folder = output.parent

    def entry(case: Case) -> dict[str, Any]:
        item = {"image": os.path.relpath(case.image, folder)}
        if case.label is not None:
            item["label"] = os.path.relpath(case.label, folder)
        if case.name in fold_of:
            item["fold"] = fold_of[case.name]
        return item

    folder.mkdir(parents=True, exist_ok=True)
    content = {**info, "tensorImageSize": "3D", "modality": {"0": "CT"}}
    content["split"] = {"seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction, "folds": folds}
    for key in ("training", "validation"):
        content[key] = [entry(labelled[name]) for name in split[key]]
    unlabelled = sorted((c for c in good if not c.needs_label), key=lambda c: c.name)
    content["test"] = [entry(labelled[name]) for name in split["test"]] + [entry(c) for c in unlabelled]
    content.update(numTraining=len(content["training"]), numValidation=len(content["validation"]))
    content["numTest"] = len(content["test"])
    _write_json(output, content)
    logger.info(
        f"wrote {output}: {content['numTraining']} training, {content['numValidation']} validation, "
        f"{content['numTest']} test cases"
    )
    return output
