"""Medical Segmentation Decathlon style folders of phantom cases: ``write_dataset`` and ``ensure_dataset``.

Layout: ``out_dir/imagesTr/<domain>_<index:03d>.nii.gz`` (int16 HU), ``out_dir/labelsTr/<same>.nii.gz``
(uint8), with ``organ_maps=True`` also ``out_dir/organsTr/<same>.nii.gz`` (uint8 ``ORGAN_LABELS`` map, listed
under the key ``organs`` of each datalist entry), and ``out_dir/dataset.json`` with the MSD keys plus a
``phantom`` entry recording the domain, its parameters, the seed, the anatomy, the organ-map flag and the
generator version. Every file is written under a temporary name in
its final folder and moved into place with ``os.replace``; ``dataset.json`` is written last, so its
presence means the folder is complete.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch.distributed as dist

from scripts.data.datalists import read_json
from scripts.data.writers import atomic_path, refuse_existing

from .anatomies import DEFAULT_ANATOMY, check_anatomy
from .anatomy import ORGAN_LABELS
from .case import generate_case
from .domains import AcquisitionDomain, get_domain

GENERATOR_VERSION = 1
"""Bumped whenever the generator changes its output for the same parameters and seed."""

RECORD_DEFAULTS = {"anatomy": DEFAULT_ANATOMY, "organ_maps": False}
"""Values of the ``phantom`` record keys added after generator version 1 that older records imply."""


def case_seed(seed: int, domain: str, index: int) -> int:
    """Patient seed of case ``index`` of a dataset: distinct across seeds, domains and indices."""
    return int(np.random.SeedSequence([seed, zlib.crc32(domain.encode()), index]).generate_state(1)[0])


def _save_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    img = nib.Nifti1Image(array, affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    with atomic_path(path) as tmp:
        nib.save(img, tmp)


def _phantom_record(
    dom: AcquisitionDomain, cases: int, seed: int, organ_labels: bool, anatomy: str, organ_maps: bool
) -> dict[str, Any]:
    return {
        "generator": "scripts.phantom",
        "generator_version": GENERATOR_VERSION,
        "domain": dom.name,
        "parameters": dom.to_dict(),
        "cases": cases,
        "seed": seed,
        "organ_labels": organ_labels,
        "anatomy": anatomy,
        "organ_maps": organ_maps,
    }


def write_dataset(
    out_dir: str | os.PathLike,
    domain: str | AcquisitionDomain = "source",
    cases: int = 16,
    seed: int = 0,
    organ_labels: bool = False,
    overwrite: bool = False,
    anatomy: str = DEFAULT_ANATOMY,
    organ_maps: bool = False,
) -> Path:
    """Generate ``cases`` cases of ``domain`` into ``out_dir`` (MSD layout) and return the folder as a Path.

    Case i is ``f"{domain}_{i:03d}"`` with patient seed ``case_seed(seed, domain, i)`` and patient ``anatomy``
    (``scripts.phantom.anatomies.ANATOMIES``). ``organ_labels``: the label files hold the ``ORGAN_LABELS`` map
    instead of 0/1 pancreas; ``organ_maps``: keep the 0/1 label and write the ``ORGAN_LABELS`` map as well, to
    ``organsTr/`` (key ``"organs"`` of each datalist entry; its pancreas voxels are the label's).

    Raises:
        FileExistsError: if ``out_dir/dataset.json`` exists and ``overwrite`` is False.
        ValueError: for an unknown domain or anatomy, ``cases < 1`` or ``seed < 0``.
    """
    dom = get_domain(domain)
    check_anatomy(anatomy)
    if int(cases) < 1 or int(seed) < 0:
        raise ValueError(f"cases must be >= 1 and seed >= 0, got cases={cases}, seed={seed}")
    out = Path(out_dir)
    meta_path = out / "dataset.json"
    if meta_path.exists():
        if not overwrite:
            refuse_existing([meta_path], hint="pass overwrite=True to replace the dataset")
        old = read_json(meta_path)
        meta_path.unlink()  # the folder is incomplete until the new dataset.json is written
    else:
        old = {}
    (out / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out / "labelsTr").mkdir(parents=True, exist_ok=True)
    if organ_maps:
        (out / "organsTr").mkdir(parents=True, exist_ok=True)
    training = []
    for index in range(int(cases)):
        name = f"{dom.name}_{index:03d}"
        case = generate_case(dom, case_seed(int(seed), dom.name, index), organ_labels or organ_maps, anatomy)
        label = case.label if organ_labels or not organ_maps else (case.label == ORGAN_LABELS["pancreas"])
        _save_nifti(case.image.astype(np.int16), case.affine, out / "imagesTr" / f"{name}.nii.gz")
        _save_nifti(label.astype(np.uint8), case.affine, out / "labelsTr" / f"{name}.nii.gz")
        entry = {"image": f"./imagesTr/{name}.nii.gz", "label": f"./labelsTr/{name}.nii.gz"}
        if organ_maps:
            _save_nifti(case.label, case.affine, out / "organsTr" / f"{name}.nii.gz")
            entry["organs"] = f"./organsTr/{name}.nii.gz"
        training.append(entry)
    kept = {p for entry in training for p in entry.values()}
    for entry in old.get("training", []):  # files of a replaced, larger dataset
        for rel in entry.values():
            if rel not in kept:
                (out / rel).unlink(missing_ok=True)
    organ_table = {str(v): k for k, v in ORGAN_LABELS.items()}
    labels = organ_table if organ_labels else {"0": "background", "1": "pancreas"}
    meta = {
        "name": f"PancreasPhantom_{dom.name}",
        "description": f"Procedural abdominal CT phantom with pancreas labels; domain {dom.name!r}: {dom.description}"
        + ("" if anatomy == DEFAULT_ANATOMY else f"; anatomy {anatomy!r}"),
        "reference": "synthetic data generated by scripts.phantom of this bundle",
        "licence": "CC0-1.0",
        "release": f"generator version {GENERATOR_VERSION}",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": labels,
        "numTraining": len(training),
        "numTest": 0,
        "training": training,
        "test": [],
        "phantom": _phantom_record(dom, int(cases), int(seed), bool(organ_labels), anatomy, bool(organ_maps)),
    }
    if organ_maps:
        meta["organ_labels"] = organ_table  # values of the "organs" maps
    with atomic_path(meta_path) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
    return out


def ensure_dataset(
    out_dir: str | os.PathLike,
    domain: str | AcquisitionDomain = "source",
    cases: int = 16,
    seed: int = 0,
    anatomy: str = DEFAULT_ANATOMY,
    organ_maps: bool = False,
) -> Path:
    """Return ``out_dir`` as a Path, generating the dataset first if ``out_dir/dataset.json`` is absent.

    An existing dataset is reused only if it records the same domain (name and parameters), case
    count, seed, anatomy, organ-map flag and generator version and all its files exist; a record written
    before the anatomy and organ maps existed counts as ``RECORD_DEFAULTS``.

    Raises:
        ValueError: for an unknown domain or anatomy, or explaining how an existing folder differs (nothing
            is overwritten) or what it lacks.
    """
    dom = get_domain(domain)
    check_anatomy(anatomy)
    out = Path(out_dir)
    meta_path = out / "dataset.json"
    if not meta_path.exists():
        return write_dataset(out, dom, cases, seed, anatomy=anatomy, organ_maps=organ_maps)
    meta = read_json(meta_path)
    recorded = meta.get("phantom") if isinstance(meta, dict) else None
    expected = _phantom_record(dom, int(cases), int(seed), False, anatomy, bool(organ_maps))
    if recorded is None:
        raise ValueError(f"{meta_path} is not a phantom dataset (no 'phantom' entry); choose another folder")
    recorded = {**RECORD_DEFAULTS, **recorded}
    diff = {k: (recorded.get(k), v) for k, v in expected.items() if recorded.get(k) != v}
    if diff:
        details = "; ".join(f"{k}: recorded {old!r}, requested {new!r}" for k, (old, new) in diff.items())
        raise ValueError(
            f"{out} holds a phantom dataset with different parameters ({details}); "
            "delete the folder or call write_dataset(..., overwrite=True) to regenerate it"
        )
    entries = meta["training"]
    missing = [rel for entry in entries for rel in entry.values() if not (out / rel).exists()]
    if missing:
        raise ValueError(f"{out} is incomplete (missing {missing[:3]}); regenerate it with overwrite=True")
    return out


def ensure_phantom_input(
    path: str | os.PathLike,
    phantom_dir: str | os.PathLike,
    domain: str | AcquisitionDomain = "source",
    cases: int = 16,
    seed: int = 0,
    anatomy: str = DEFAULT_ANATOMY,
    organ_maps: bool = False,
) -> str:
    """
    Return ``path``; generate the phantom dataset ``phantom_dir`` first when ``path`` is that folder or a file
    in it (e.g. its ``dataset.json``) and the dataset is not there yet (``ensure_dataset``).

    The configs' default inputs are phantom folders: this makes a user's own input (``--dataset_dir``,
    ``--input_path``, ``--datalist_file``) never trigger the phantom as a side effect.

    ``anatomy`` and ``organ_maps`` are passed to ``ensure_dataset``.

    In a distributed run (``torch.distributed`` initialised) rank 0 generates, the other ranks wait at a barrier
    and then only check the dataset, so two ranks never write one folder at once.

    Raises:
        ValueError: for an unknown anatomy (also when ``path`` is not in ``phantom_dir``), or as ``ensure_dataset``.
    """
    check_anatomy(anatomy)
    folder, target = Path(phantom_dir).absolute(), Path(path).absolute()
    if target == folder or folder in target.parents:
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if distributed and dist.get_rank() != 0:
            dist.barrier()  # rank 0 writes first
            ensure_dataset(folder, domain=domain, cases=cases, seed=seed, anatomy=anatomy, organ_maps=organ_maps)
        else:
            try:
                ensure_dataset(folder, domain=domain, cases=cases, seed=seed, anatomy=anatomy, organ_maps=organ_maps)
            finally:  # also when it failed: the others then find no dataset and fail with the reason, never hang
                if distributed:
                    dist.barrier()
    return str(path)
