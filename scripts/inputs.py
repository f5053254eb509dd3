"""Turn what a user passes to the inference config into a datalist, and keep earlier outputs safe."""

from __future__ import annotations

import json
import logging
from pathlib import Path

__all__ = ["IMAGE_SUFFIXES", "output_path", "pending_cases", "resolve_images"]

IMAGE_SUFFIXES = (".nii.gz", ".nii")
logger = logging.getLogger(__name__)


def _is_image(path: Path) -> bool:
    return path.is_file() and path.name.endswith(IMAGE_SUFFIXES)


def _case_name(path: str | Path) -> str:
    name = Path(path).name
    for suffix in IMAGE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def resolve_images(input_path: str | Path) -> list[dict[str, str]]:
    """
    List the images to segment as ``[{"image": path}, ...]``.

    ``input_path`` may be one NIfTI file, a folder of NIfTI files, an MSD-style folder holding a
    ``dataset.json``, or a datalist JSON file (a list of ``{"image": ...}`` items, or an MSD
    ``dataset.json`` whose ``training`` and ``test`` entries are used). Relative paths inside a JSON
    file are resolved against the JSON file's folder.

    Raises:
        FileNotFoundError: naming the input, or every listed image that does not exist.
        ValueError: when the input holds no image.
    """
    path = Path(input_path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"inference input does not exist: {path}")
    if path.is_dir() and (path / "dataset.json").is_file():
        path = path / "dataset.json"
    if path.is_dir():
        images = sorted(str(p) for p in path.iterdir() if _is_image(p))
    elif path.suffix == ".json":
        images = _images_from_json(path)
    elif _is_image(path):
        images = [str(path)]
    else:
        raise ValueError(f"unsupported inference input {path}: expected a NIfTI file, a folder or a JSON datalist")
    if not images:
        raise ValueError(f"no NIfTI image ({', '.join(IMAGE_SUFFIXES)}) found in {path}")
    missing = [image for image in images if not Path(image).is_file()]
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


def output_path(image: str | Path, output_dir: str | Path, postfix: str, ext: str = ".nii.gz") -> Path:
    """Where ``SaveImaged(separate_folder=False)`` writes the output of ``image``: ``<name>_<postfix><ext>``."""
    return Path(output_dir) / f"{_case_name(image)}_{postfix}{ext}"


def pending_cases(
    datalist: list[dict[str, str]], output_dir: str | Path, postfix: str, overwrite: bool = False
) -> list[dict[str, str]]:
    """
    Drop the cases whose output already exists, unless ``overwrite``; each skipped case is logged.

    Output names come from the input names, so two inputs with the same name would write one file:
    that is refused up front instead of one output silently replacing the other.
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
        pending.append(item)
    return pending
