"""
Datalists: the JSON files that list cases, and the inference input turned into one.

``read_datalist`` is the one reader of datalist JSON in the bundle (training, inference inputs, labelled test
sets, data preparation); it reads what MONAI's ``load_decathlon_datalist`` reads, and names the file, the line
or the entry of anything it cannot. A file
is either a Medical Segmentation Decathlon style object (``{"training": [...], "test": [...], ...}``) or a
list; an entry is ``{"image": path, "label": path, ...}`` or a bare image path. Relative paths are resolved
against the JSON file's folder and may name DICOM series folders.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.config import PathLike
from monai.data import partition_dataset

from scripts.data.dicom import is_dicom_file, is_dicom_series
from scripts.data.errors import InputError
from scripts.data.readers import IMAGE_SUFFIXES, image_suffix

__all__ = [
    "PATH_KEYS",
    "datalist_entries",
    "extend_split",
    "read_datalist",
    "read_json",
    "resolve_images",
    "split_datalist",
    "split_labelled",
]

PATH_KEYS = ("image", "label", "organs")
"""Entry keys that hold paths (resolved against the datalist's folder); ``organs``: a multi-structure label map
(the phantom's ``organ_maps``) read by domain randomisation."""
logger = logging.getLogger(__name__)


def read_datalist(path: PathLike, sections: Sequence[str] = ("training",)) -> list[dict[str, Any]]:
    """
    The entries of a datalist JSON file, with absolute paths.

    Args:
        path: an MSD ``dataset.json`` style object or a JSON list of entries.
        sections: for an object, the lists it contributes, in this order (missing ones count as empty).

    Returns:
        ``[{"image": str, "label": str (if any), ...}, ...]``; other keys of an entry are kept as they are.

    Raises:
        InputError: naming the file (and the line, the section or the entry) when it does not exist, is not
            valid JSON, is neither an object nor a list, or holds an entry with no ``image`` or a path
            that is not a string.
    """
    path = Path(path).expanduser()
    return datalist_entries(read_json(path), path, sections)


def datalist_entries(content: Any, path: PathLike, sections: Sequence[str] = ("training",)) -> list[dict[str, Any]]:
    """``read_datalist`` of JSON ``content`` already read from ``path`` (paths resolved against its folder).

    Raises:
        InputError: as ``read_datalist``, naming ``path``.
    """
    path = Path(path)
    if isinstance(content, dict):
        listed = [(f"{section}[{index}]", entry) for section in sections
                  for index, entry in enumerate(_section(path, content, section))]
    elif isinstance(content, list):
        listed = [(f"entry {index}", entry) for index, entry in enumerate(content)]
    else:
        raise InputError(path, f"expected a JSON list of cases or an MSD dataset.json object, got {type(content).__name__}")
    return [_entry(path, where, entry) for where, entry in listed]


def read_json(path: PathLike) -> Any:
    """
    The content of a JSON file.

    Raises:
        InputError: naming the file (and the line and column of a syntax error) when it does not exist, is
            not text or is not valid JSON.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(path, "file not found" if not path.exists() else "not a file, expected a JSON file")
    try:
        return json.loads(path.read_text())
    except UnicodeDecodeError as error:
        raise InputError(path, f"not a text file, expected JSON ({error})") from None
    except json.JSONDecodeError as error:
        raise InputError(path, f"not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}") from None


def _section(path: Path, content: dict, section: str) -> list:
    entries = content.get(section, [])
    if not isinstance(entries, list):
        raise InputError(path, f"section {section!r} must be a list of cases, got {type(entries).__name__}")
    return entries


def _entry(path: Path, where: str, entry: Any) -> dict[str, Any]:
    entry = {"image": entry} if isinstance(entry, str) else entry
    if not isinstance(entry, dict):
        raise InputError(path, f"{where} must be an image path or an object with 'image', got {entry!r}")
    if "image" not in entry:
        raise InputError(path, f"{where} has no 'image' key: {entry!r}")
    resolved = dict(entry)
    for key in PATH_KEYS:
        if key in entry:
            if not isinstance(entry[key], str) or not entry[key]:
                raise InputError(path, f"{where}: {key!r} must be a non-empty path string, got {entry[key]!r}")
            resolved[key] = os.path.abspath(path.parent / Path(entry[key]).expanduser())
    return resolved


def _is_image(path: Path) -> bool:
    return path.is_file() and image_suffix(path) is not None


def resolve_images(input_path: PathLike) -> list[dict[str, str]]:
    """
    List the cases to segment as ``[{"image": path}, ...]``; a path is an image file or a DICOM series folder.

    ``input_path`` may be:

    - one image file (NIfTI ``.nii.gz``/``.nii``, NRRD ``.nrrd``, MetaImage ``.mha``/``.mhd``);
    - a folder that directly holds DICOM files: one DICOM series, one case;
    - a folder of cases: its image files and its subfolders that are DICOM series (other entries are
      ignored and logged), sorted by name;
    - an MSD-style folder holding a ``dataset.json``, or a datalist JSON file (``read_datalist``: its
      ``training`` and ``test`` entries).

    Whether a series is readable is checked when the case is loaded (``scripts.data.dicom``), so that one bad
    series fails only its own case.

    Raises:
        FileNotFoundError: naming the input, or every listed image that does not exist.
        InputError: a datalist file that cannot be read (``read_datalist``).
        ValueError: when the input holds no case, is a single DICOM file, or mixes DICOM files and images.
    """
    path = Path(input_path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"inference input does not exist: {path}")
    if path.is_dir() and (path / "dataset.json").is_file():
        path = path / "dataset.json"
    if path.is_dir() and is_dicom_series(path):
        images = [p.name for p in path.iterdir() if _is_image(p)]
        if images:
            raise ValueError(
                f"{path} holds DICOM files and image files ({images[:3]}): put the DICOM series in its own folder"
            )
        images = [str(path)]
    elif path.is_dir():
        images = []
        for entry in sorted(path.iterdir()):
            # a broken link named like an image is a case too: it fails, named in the run summary, not ignored
            broken_link = entry.is_symlink() and not entry.exists() and image_suffix(entry) is not None
            if _is_image(entry) or broken_link or (entry.is_dir() and is_dicom_series(entry)):
                images.append(str(entry))
            elif not entry.name.startswith("."):
                logger.info(
                    f"ignoring {entry}: neither an image ({', '.join(IMAGE_SUFFIXES)}) nor a DICOM series folder"
                )
    elif path.suffix == ".json":
        images = [entry["image"] for entry in read_datalist(path, sections=("training", "test"))]
    elif _is_image(path):
        images = [str(path)]
    elif is_dicom_file(path):
        raise ValueError(f"{path} is one DICOM file: pass the folder that holds the whole series")
    else:
        raise ValueError(
            f"unsupported inference input {path}: expected an image ({', '.join(IMAGE_SUFFIXES)}), "
            "a DICOM series folder, a folder of cases or a JSON datalist"
        )
    if not images:
        raise ValueError(
            f"no NIfTI, NRRD or MetaImage image ({', '.join(IMAGE_SUFFIXES)}) and no DICOM series found in {path}"
        )
    missing = [image for image in images if not Path(image).exists() and not Path(image).is_symlink()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} image(s) listed in {path} do not exist: {missing}")
    return [{"image": image} for image in images]


def split_datalist(datalist: Sequence[dict], val_fraction: float, seed: int = 0) -> list[list[dict]]:
    """
    ``[training, validation]`` cases: ``monai.data.partition_dataset`` with ratios ``1 - val_fraction`` and
    ``val_fraction``, shuffled with ``seed`` (the split the shipped model was trained with).

    Raises:
        ValueError: when ``val_fraction`` is not in (0, 1), or either part is empty: training without validation
            would save no ``model.pt`` and still exit 0.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    parts = partition_dataset(list(datalist), ratios=[1 - val_fraction, val_fraction], shuffle=True, seed=seed)
    for name, part in zip(("training", "validation"), parts):
        if not part:
            raise ValueError(
                f"val_fraction {val_fraction} of {len(datalist)} case(s) leaves no {name} case; "
                "give the datalist more cases or change val_fraction"
            )
    return parts


def extend_split(split: Sequence[Sequence[dict]], extra: Sequence[dict], val_cases: int) -> list[list[dict]]:
    """
    ``split`` (``[training, validation]``) with the cases of another datalist added: its last ``val_cases`` to the
    validation part, the others to the training part, in their order (configs/finetune_whole_abdomen.yaml).

    Raises:
        ValueError: when ``split`` is not two lists, or ``val_cases`` is not in [0, len(extra)): ``extra`` would
            add no training case.
    """
    if len(split) != 2:
        raise ValueError(f"split must be [training, validation], got {len(split)} part(s)")
    if not 0 <= val_cases < len(extra):
        raise ValueError(f"val_cases must be in [0, {len(extra)}) for a datalist of {len(extra)} case(s), got {val_cases}")
    cut = len(extra) - val_cases
    return [list(split[0]) + list(extra[:cut]), list(split[1]) + list(extra[cut:])]


def split_labelled(datalist: Sequence[dict], labelled_fraction: float, seed: int = 0) -> list[list[dict]]:
    """
    ``[labelled, unlabelled]`` training cases for semi-supervised training: ``round(labelled_fraction * N)`` cases
    (at least one) keep their labels, chosen with ``seed``; the others become ``{"image": ...}`` entries, their
    labels dropped so that nothing can read them. The order of the datalist is otherwise kept.

    Raises:
        ValueError: when ``labelled_fraction`` is not in (0, 1] or the datalist is empty.
    """
    if not 0.0 < labelled_fraction <= 1.0:
        raise ValueError(f"labelled_fraction must be in (0, 1], got {labelled_fraction}")
    if not datalist:
        raise ValueError("the training datalist is empty")
    count = max(1, round(labelled_fraction * len(datalist)))
    chosen = set(np.random.default_rng(seed).permutation(len(datalist))[:count].tolist())
    labelled = [dict(entry) for index, entry in enumerate(datalist) if index in chosen]
    unlabelled = [{"image": entry["image"]} for index, entry in enumerate(datalist) if index not in chosen]
    return [labelled, unlabelled]
