"""
Check CT images and image/label pairs before anything trains or infers on them.

A bad case found here is reported with its file and the reason, for every case at once, instead of
a crash in the middle of an epoch (or a silently wrong model) later:

    # in a config: training refuses to start and lists every bad case
    train#dataset#data: "$scripts.data.checks.validate_datalist(@data_split[0])"
    # in a transform chain, right after the loader (scripts.transforms.CheckImaged)
    - _target_: scripts.transforms.CheckImaged
      keys: image

What counts as a CT image here (``image_problems``): one channel and 3 spatial dimensions of at least 2
voxels, every voxel finite, and intensities in Hounsfield units. The HU test looks for fat or air: CT of
the abdomen always holds fat (-150..-50 HU, around the pancreas and the other organs) and nearly always
air (-1000 HU), so at least ``min_low_fraction`` (0.1 %) of the voxels must lie in
``[padding_hu, max_low_hu]`` = [-1500, -50] HU; even a small crop around the pancreas passes. Values below
-1500 HU are the padding some scanners store outside the reconstructed circle (-2048, -3024, -32768) and
do not count. An MR image, a CT stored without its DICOM rescale (all values >= 0), or intensities already
normalised (to [0, 1] or z-scores) hold no such voxels. An image that is all fat or air (at least 99.9 % of
the voxels at or below -50 HU) is refused as blank. Small volumes, any voxel spacing and any stored
orientation pass.

A label (``label_problems``) must describe the same voxel grid as its image (same shape and affine
within ``atol`` = 1e-3 mm, compared after bringing both to the same axis order, so a label stored in
another orientation of the same grid passes, as the training pipeline reorients both to RAS), hold
only the allowed values (MSD Task07: 0 background, 1 pancreas, 2 tumour) and some foreground.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.utils import convert_to_tensor
from nibabel.orientations import inv_ornt_aff, io_orientation
from pydicom.misc import is_dicom

from scripts.data.errors import DatalistError, InputError
from scripts.data.readers import load_input

__all__ = [
    "check_case",
    "check_datalist",
    "image_problems",
    "label_problems",
    "MSD_PANCREAS_LABELS",
    "validate_datalist",
]

MSD_PANCREAS_LABELS = (0, 1, 2)
"""Label values of MSD Task07_Pancreas: 0 background, 1 pancreas, 2 tumour."""

logger = logging.getLogger(__name__)


def _format_value(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in x.shape)


def image_problems(
    image: torch.Tensor | np.ndarray,
    *,
    path: str = "",
    max_low_hu: float = -50.0,
    padding_hu: float = -1500.0,
    min_low_fraction: float = 1e-3,
) -> list[str]:
    """
    Reasons why ``image`` is not a usable CT volume (an empty list when it is).

    Args:
        image: channel-first image, ``(1, H, W, D)``, as ``LoadImage(ensure_channel_first=True)`` returns it.
        path: the image's file, named in the debug log only (reasons never repeat it).
        max_low_hu: voxels at or below this (and at or above ``padding_hu``) count as fat or air.
        padding_hu: voxels below this are scanner padding outside the field of view, not air.
        min_low_fraction: fewest fat or air voxels (fraction of the finite voxels) that a CT in HU must hold;
            also the fewest other voxels of an image that is not blank.
    """
    problems = []
    shape = _shape(image)
    if len(shape) != 4 or min(shape[1:], default=0) < 2:
        problems.append(f"not a 3D image: shape {shape}, expected (1, H, W, D) with H, W, D >= 2")
    elif shape[0] != 1:
        problems.append(f"{shape[0]} channels (shape {shape}), expected a single-channel CT volume")
    values = convert_to_tensor(image, track_meta=False).detach().float().flatten()
    finite = torch.isfinite(values)
    if not finite.all():
        nan, inf = int(torch.isnan(values).sum()), int(torch.isinf(values).sum())
        problems.append(f"non-finite voxels: {nan} NaN, {inf} Inf of {values.numel()}")
        values = values[finite]
    if values.numel():
        low, high = _format_value(float(values.min())), _format_value(float(values.max()))
        fat_or_air = int(torch.count_nonzero((values >= padding_hu) & (values <= max_low_hu))) / values.numel()
        body = int(torch.count_nonzero(values > max_low_hu)) / values.numel()
        if fat_or_air < min_low_fraction:
            problems.append(
                f"not CT in Hounsfield units: no fat or air ({fat_or_air:.3%} of the voxels in "
                f"[{_format_value(padding_hu)}, {_format_value(max_low_hu)}] HU): MR-like or unscaled "
                f"intensities, range {low}..{high}"
            )
        elif body < min_low_fraction:
            problems.append(
                f"blank image: {body:.3%} of the voxels above {_format_value(max_low_hu)} HU, range {low}..{high}"
            )
    if problems:
        logger.debug(f"{path}: {'; '.join(problems)}")
    return problems


def _format_affine(affine: np.ndarray) -> str:
    return str(np.round(affine[:3], 3).tolist()).replace(".0,", ",").replace(".0]", "]")


def _canonical_grid(shape: Sequence[int], affine: np.ndarray) -> tuple[tuple[int, ...], np.ndarray]:
    """Shape and affine of the same voxel grid with its axes permuted and flipped to RAS order."""
    ornt = io_orientation(affine)
    canonical_affine = affine @ inv_ornt_aff(ornt, shape)
    canonical_shape = tuple(int(shape[int(axis)]) for axis in np.argsort(ornt[:, 0]))
    return canonical_shape, canonical_affine


def label_problems(
    label: torch.Tensor | np.ndarray,
    image: torch.Tensor | np.ndarray,
    *,
    allowed_values: Iterable[float] | None = MSD_PANCREAS_LABELS,
    require_foreground: bool = True,
    atol: float = 1e-3,
) -> list[str]:
    """
    Reasons why ``label`` does not fit ``image`` (an empty list when it does).

    Args:
        label: channel-first label, ``(1, H, W, D)``; a ``MetaTensor`` carries its affine.
        image: its channel-first image; when both are ``MetaTensor`` their voxel grids (shape and
            affine, compared in RAS axis order) must agree within ``atol`` (mm).
        allowed_values: the values a label may hold; None accepts any value.
        require_foreground: refuse a label with no voxel other than 0.
        atol: tolerance of the affine comparison, in mm.
    """
    problems = []
    if _shape(label)[0] != 1:
        problems.append(f"{_shape(label)[0]} label channels (shape {_shape(label)}), expected one")
    label_shape, image_shape = _shape(label)[1:], _shape(image)[1:]
    if isinstance(label, MetaTensor) and isinstance(image, MetaTensor) and len(label_shape) == len(image_shape) == 3:
        label_affine = label.affine.detach().cpu().numpy().astype(np.float64)
        image_affine = image.affine.detach().cpu().numpy().astype(np.float64)
        label_grid, image_grid = _canonical_grid(label_shape, label_affine), _canonical_grid(image_shape, image_affine)
        if label_grid[0] != image_grid[0]:
            problems.append(f"label shape {label_shape} does not match image shape {image_shape}")
        elif not np.allclose(label_grid[1], image_grid[1], atol=atol, rtol=0.0):
            difference = float(np.abs(label_grid[1] - image_grid[1]).max())
            problems.append(
                f"label affine differs from the image affine by up to {difference:.4g} mm (tolerance {atol:g} mm): "
                f"label {_format_affine(label_affine)} vs image {_format_affine(image_affine)}"
            )
    elif label_shape != image_shape:
        problems.append(f"label shape {label_shape} does not match image shape {image_shape}")
    values = convert_to_tensor(label, track_meta=False).detach()
    if allowed_values is not None:
        allowed = sorted({float(v) for v in allowed_values})
        outside = values[~torch.isin(values, torch.tensor(allowed, dtype=values.dtype, device=values.device))]
        unexpected = torch.unique(outside).tolist()
        if unexpected:
            shown = ", ".join(_format_value(v) for v in unexpected[:10]) + (", ..." if len(unexpected) > 10 else "")
            problems.append(
                f"unexpected label values {shown} (allowed: {', '.join(_format_value(v) for v in allowed)})"
            )
    if require_foreground and not bool((values != 0).any()):
        problems.append("empty label: no foreground voxel (all 0)")
    return problems


def _read_reason(path: str | os.PathLike, error: Exception) -> str:
    if os.path.isdir(path):
        files = [entry.path for entry in os.scandir(path) if entry.is_file()]
        dicom = sum(is_dicom(f) for f in files)
        cause = f"{type(error).__name__}: {error}"
        return f"cannot be read as a DICOM series ({dicom} of {len(files)} files are DICOM; {cause})"
    if isinstance(error, EOFError):
        return f"cannot be read, truncated file ({error})"
    return f"cannot be read, corrupt or unsupported file ({type(error).__name__}: {error})"


def _load(path: str | os.PathLike) -> tuple[MetaTensor | None, InputError | None]:
    if not os.path.exists(path):
        return None, InputError(path, "file not found")
    try:
        return load_input(path), None
    except InputError as error:
        # a reader's own finding (e.g. a DICOM series with a missing slice) is reported as it is
        return None, error if error.__cause__ is None else InputError(path, _read_reason(path, error.__cause__))
    except Exception as error:  # any reader failure is a property of the file: report it, never crash
        return None, InputError(path, _read_reason(path, error))


def check_case(
    item: Mapping[str, Any],
    *,
    image_key: str = "image",
    label_key: str | None = "label",
    allowed_label_values: Iterable[float] | None = MSD_PANCREAS_LABELS,
    require_foreground: bool = True,
    **image_problems_kwargs: Any,
) -> list[InputError]:
    """
    Load one datalist item and return its problems, at most one ``InputError`` per file.

    Files are read as the configs read them (``scripts.data.readers.load_input``: NIfTI, NRRD, MetaImage with
    ``itk``, DICOM series folders with their series checks). A missing, truncated or unreadable file is
    reported, never raised. ``label_key=None`` checks the image alone (e.g. test cases).
    ``image_problems_kwargs`` go to ``image_problems``.
    """
    image_path = item[image_key]
    image, error = _load(image_path)
    errors = [error] if error else []
    if image is not None:
        problems = image_problems(image, path=str(image_path), **image_problems_kwargs)
        if problems:
            errors.append(InputError(image_path, "; ".join(problems)))
    if label_key is None:
        return errors
    if label_key not in item:
        return errors + [InputError(image_path, f"no label: the item has no {label_key!r} entry")]
    label, error = _load(item[label_key])
    if error:
        return errors + [error]
    if image is not None:
        problems = label_problems(
            label, image, allowed_values=allowed_label_values, require_foreground=require_foreground
        )
        if problems:
            errors.append(InputError(item[label_key], f"{'; '.join(problems)} (image {image_path})"))
    return errors


def check_datalist(
    datalist: Sequence[Mapping[str, Any]], num_workers: int = 0, **check_case_kwargs: Any
) -> list[list[InputError]]:
    """``check_case`` on every item (in ``num_workers`` threads when > 0); one list of errors per item."""
    if num_workers > 0:
        with ThreadPoolExecutor(num_workers) as pool:
            return list(pool.map(lambda item: check_case(item, **check_case_kwargs), datalist))
    return [check_case(item, **check_case_kwargs) for item in datalist]


def validate_datalist(
    datalist: Sequence[Mapping[str, Any]], num_workers: int = 0, **check_case_kwargs: Any
) -> Sequence[Mapping[str, Any]]:
    """
    Check every case of ``datalist`` (never stopping at the first bad one) and return it unchanged.

    Raises:
        DatalistError: listing every bad file with its reason, when any case has a problem.
    """
    per_case = check_datalist(datalist, num_workers=num_workers, **check_case_kwargs)
    errors = [error for case_errors in per_case for error in case_errors]
    if errors:
        raise DatalistError(errors, num_cases=len(datalist), num_bad_cases=sum(1 for e in per_case if e))
    return datalist
