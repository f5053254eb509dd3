"""Turn what a user passes to the inference config into a datalist, name each case's outputs, keep earlier outputs safe."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from monai.config import PathLike
from monai.data import FolderLayoutBase

from scripts.dicom import is_dicom_file, is_dicom_series

__all__ = [
    "IMAGE_SUFFIXES",
    "CaseFolderLayout",
    "case_name",
    "image_suffix",
    "output_path",
    "pending_cases",
    "resolve_images",
]

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
"""Image files read as one case each (``scripts.loading.READERS`` names their readers)."""
logger = logging.getLogger(__name__)


def image_suffix(path: PathLike) -> str | None:
    """The ``IMAGE_SUFFIXES`` entry that ``path`` ends with (case-insensitive), or None."""
    name = Path(path).name.lower()
    return next((suffix for suffix in IMAGE_SUFFIXES if name.endswith(suffix)), None)


def _is_image(path: Path) -> bool:
    return path.is_file() and image_suffix(path) is not None


def case_name(path: PathLike) -> str:
    """The name of a case: an image file's name without its suffix, a DICOM series folder's name as it is."""
    path = Path(path)
    suffix = image_suffix(path)
    return path.name[: -len(suffix)] if suffix and not path.is_dir() else path.name


def resolve_images(input_path: PathLike) -> list[dict[str, str]]:
    """
    List the cases to segment as ``[{"image": path}, ...]``; a path is an image file or a DICOM series folder.

    ``input_path`` may be:

    - one image file (NIfTI ``.nii.gz``/``.nii``, NRRD ``.nrrd``, MetaImage ``.mha``/``.mhd``);
    - a folder that directly holds DICOM files: one DICOM series, one case;
    - a folder of cases: its image files and its subfolders that are DICOM series (other entries are
      ignored and logged), sorted by name;
    - an MSD-style folder holding a ``dataset.json``, or a datalist JSON file (a list of ``{"image": ...}``
      items or paths, or an MSD ``dataset.json`` whose ``training`` and ``test`` entries are used);
      relative paths are resolved against the JSON file's folder, and may name DICOM series folders.

    Whether a series is readable is checked when the case is loaded (``scripts.dicom``), so that one bad
    series fails only its own case.

    Raises:
        FileNotFoundError: naming the input, or every listed image that does not exist.
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
            if _is_image(entry) or (entry.is_dir() and is_dicom_series(entry)):
                images.append(str(entry))
            elif not entry.name.startswith("."):
                logger.info(
                    f"ignoring {entry}: neither an image ({', '.join(IMAGE_SUFFIXES)}) nor a DICOM series folder"
                )
    elif path.suffix == ".json":
        images = _images_from_json(path)
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
    missing = [image for image in images if not Path(image).exists()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} image(s) listed in {path} do not exist: {missing}")
    return [{"image": image} for image in images]


def _images_from_json(path: Path) -> list[str]:
    with open(path) as f:
        content = json.load(f)
    if isinstance(content, dict):
        entries = list(content.get("training", [])) + list(content.get("test", []))
    elif isinstance(content, list):
        entries = content
    else:
        raise ValueError(f"{path} is neither a datalist (list) nor an MSD dataset.json (object)")
    images = []
    for entry in entries:
        image = entry["image"] if isinstance(entry, dict) else entry
        images.append(str((path.parent / image).resolve()))
    return images


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


def pending_cases(
    datalist: Sequence[Mapping[str, str]], output_dir: PathLike, postfix: str, overwrite: bool = False
) -> list[dict[str, str]]:
    """
    Drop the cases whose output ``<case>_<postfix>.nii.gz`` already exists, unless ``overwrite``; each skipped
    case is logged.

    Output names come from the case names, so two inputs with the same name would write one file: that is
    refused up front instead of one output silently replacing the other.
    """
    outputs = [output_path(item["image"], output_dir, postfix) for item in datalist]
    clashes = sorted({str(o) for o in outputs if outputs.count(o) > 1})
    if clashes:
        raise ValueError(f"several inputs would write the same output file(s): {clashes}")
    pending = []
    for item, out in zip(datalist, outputs):
        if out.exists() and not overwrite:
            logger.warning(f"skipping {item['image']}: {out} exists (set overwrite to true to replace it)")
            continue
        pending.append(dict(item))
    return pending
