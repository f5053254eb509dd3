"""Tests of the procedural abdominal CT phantom (scripts.phantom)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from functools import lru_cache

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from scripts.phantom import (
    DOMAINS,
    ORGAN_LABELS,
    AcquisitionDomain,
    PhantomCase,
    case_seed,
    ensure_dataset,
    generate_case,
    get_domain,
    write_dataset,
)
from scripts.phantom.acquisition import tissue_values
from tests.bundle_cli import BUNDLE_ROOT as REPO

REQUIRED_DOMAINS = ("source", "target_arterial", "target_noncontrast", "target_lowdose")
SEED = 3

# noise-free pancreas median HU expected per contrast phase (before any scanner offset)
PANCREAS_HU = {"non_contrast": (30.0, 60.0), "pancreatic_arterial": (105.0, 150.0), "portal_venous": (80.0, 120.0)}


@lru_cache(maxsize=None)
def organ_case(domain: str, seed: int = SEED) -> PhantomCase:
    """Cached multi-organ case (the pancreas is label 1)."""
    return generate_case(domain, seed, organ_labels=True)


def spacing_of(affine: np.ndarray) -> np.ndarray:
    return np.linalg.norm(affine[:3, :3], axis=0)


def eroded(mask: np.ndarray, iterations: int = 2) -> np.ndarray:
    return ndimage.binary_erosion(mask, iterations=iterations)


def test_domain_registry():
    assert set(REQUIRED_DOMAINS) <= set(DOMAINS)
    for name, dom in DOMAINS.items():
        assert isinstance(dom, AcquisitionDomain) and dom.name == name
        assert get_domain(name) is dom
    assert {d.phase for d in DOMAINS.values()} == {"non_contrast", "pancreatic_arterial", "portal_venous"}
    assert any(d.orientation != DOMAINS["source"].orientation for d in DOMAINS.values())
    with pytest.raises(ValueError, match="target_lowdose"):
        get_domain("no_such_domain")
    with pytest.raises(ValueError, match="orientation"):
        dataclasses.replace(DOMAINS["source"], orientation="RAR")
    with pytest.raises(dataclasses.FrozenInstanceError):
        DOMAINS["source"].noise_std = 0.0  # type: ignore[misc]


def test_determinism():
    a, b = generate_case("source", 11), generate_case("source", 11)
    assert a.image.tobytes() == b.image.tobytes()
    assert a.label.tobytes() == b.label.tobytes()
    assert np.array_equal(a.affine, b.affine)
    c = generate_case("source", 12)
    assert c.image.shape != a.image.shape or not np.array_equal(c.image, a.image)
    assert c.label.shape != a.label.shape or not np.array_equal(c.label, a.label)


def test_organ_labels_consistent_with_pancreas_label():
    plain = generate_case("target_noncontrast", SEED)
    multi = organ_case("target_noncontrast")
    assert plain.label.dtype == np.uint8 and set(np.unique(plain.label)) == {0, 1}
    assert np.array_equal(plain.image, multi.image)
    assert np.array_equal(plain.label == 1, multi.label == 1)
    assert set(np.unique(multi.label)) <= set(ORGAN_LABELS.values())
    present = set(np.unique(multi.label))
    for organ in ("liver", "kidney_left", "kidney_right", "aorta", "portal_splenic_vein", "duodenum", "bone", "fat"):
        assert ORGAN_LABELS[organ] in present, organ


@pytest.mark.parametrize("domain", REQUIRED_DOMAINS)
def test_geometry_and_intensity_range(domain):
    dom, case = DOMAINS[domain], organ_case(domain)
    assert case.domain == domain
    assert case.image.dtype == np.float32 and case.label.dtype == np.uint8
    assert case.image.shape == case.label.shape and case.image.ndim == 3
    assert case.affine.shape == (4, 4) and case.affine.dtype == np.float64
    np.testing.assert_allclose(spacing_of(case.affine), dom.spacing, rtol=1e-6)
    assert nib.aff2axcodes(case.affine) == tuple(dom.orientation)
    np.testing.assert_allclose(np.array(case.image.shape[:2]) * dom.spacing[:2], dom.fov_mm, atol=max(dom.spacing[:2]))
    z_mm = case.image.shape[2] * dom.spacing[2]
    assert dom.z_extent_mm[0] - dom.spacing[2] <= z_mm <= dom.z_extent_mm[1] + 60.0
    assert case.image.min() >= -1024 and case.image.max() <= 3071
    assert np.array_equal(case.image, np.rint(case.image))


@pytest.mark.parametrize("domain", REQUIRED_DOMAINS)
def test_tissue_intensities(domain):
    case = organ_case(domain)
    img, lab = case.image, case.label
    corners = np.concatenate([img[:4, :4].ravel(), img[-4:, -4:].ravel(), img[:4, -4:].ravel(), img[-4:, :4].ravel()])
    assert abs(np.median(corners) + 1000) < 15, "air outside the body"
    fat = img[eroded(lab == ORGAN_LABELS["fat"])]
    assert np.median(fat) < -40, "fat inside the body"
    bone = img[eroded(lab == ORGAN_LABELS["bone"], 1)]
    assert np.median(bone) > 150
    pancreas = np.median(img[lab == 1])
    assert -20 < pancreas < 220


@pytest.mark.parametrize("phase", sorted(PANCREAS_HU))
def test_pancreas_hu_per_phase_noise_free(phase):
    base = next(d for d in DOMAINS.values() if d.phase == phase)
    clean = dataclasses.replace(base, spacing=(2.0, 2.0, 2.0), slice_thickness=2.0, kvp=120.0)
    clean = dataclasses.replace(clean, noise_std=0.0, hu_offset=0.0, bias_hu=0.0, streak_hu=0.0)
    lo, hi = PANCREAS_HU[phase]
    medians = []
    for seed in (1, 2):
        case = generate_case(clean, seed, organ_labels=True)
        medians.append(np.median(case.image[eroded(case.label == 1, 1)]))
        liver = np.median(case.image[eroded(case.label == ORGAN_LABELS["liver"])])
        assert 40 < liver < 140
    assert lo <= np.mean(medians) <= hi, medians


def test_label_sanity_all_domains():
    for domain in REQUIRED_DOMAINS:
        case = organ_case(domain)
        pancreas = case.label == 1
        sp = spacing_of(case.affine)
        volume_ml = pancreas.sum() * np.prod(sp) / 1000.0
        assert 30.0 <= volume_ml <= 150.0, (domain, volume_ml)
        idx = np.nonzero(pancreas)
        # left-right extent in world mm: array axis 0 is R or L in every domain
        assert (idx[0].max() - idx[0].min() + 1) * sp[0] > 80.0
        for axis in range(3):  # fully inside the volume
            assert idx[axis].min() > 0 and idx[axis].max() < pancreas.shape[axis] - 1
        assert ndimage.label(pancreas)[1] <= 3  # one gland (a vessel may cut off a sliver)


def test_pancreas_position_in_world():
    """Head right of midline, tail left and more cranial (world RAS+ coordinates)."""
    for domain in ("source", "target_lowdose"):  # RAS and LPS storage
        case = organ_case(domain)
        ijk = np.argwhere(case.label == 1)
        xyz = nib.affines.apply_affine(case.affine, ijk)
        right, left = xyz[xyz[:, 0] > np.percentile(xyz[:, 0], 90)], xyz[xyz[:, 0] < np.percentile(xyz[:, 0], 10)]
        assert right[:, 0].mean() > 15.0 and left[:, 0].mean() < -40.0
        assert left[:, 2].mean() > right[:, 2].mean()


def test_domains_differ_as_stated():
    src, arterial, nc, lowdose = (organ_case(d) for d in REQUIRED_DOMAINS)
    assert (arterial.domain, nc.domain, lowdose.domain) == REQUIRED_DOMAINS[1:]

    def liver_noise(case: PhantomCase) -> float:  # same patient in every domain: the liver is homogeneous
        return float(np.std(case.image[eroded(case.label == ORGAN_LABELS["liver"], 3)]))

    assert liver_noise(lowdose) > 2.0 * liver_noise(src)
    assert liver_noise(arterial) > 1.5 * liver_noise(src)

    def pancreas_hu(case: PhantomCase) -> float:
        return float(np.median(case.image[case.label == 1]))

    assert pancreas_hu(nc) < pancreas_hu(src) - 30.0
    assert pancreas_hu(arterial) > pancreas_hu(src)
    def aorta_hu(case: PhantomCase) -> float:
        return float(np.median(case.image[eroded(case.label == ORGAN_LABELS["aorta"], 1)]))

    assert aorta_hu(arterial) > aorta_hu(src) + 80 and aorta_hu(nc) < 80


def test_same_seed_is_same_patient_across_domains():
    """Anatomy depends on the seed only: the pancreas centroid in world mm agrees between domains."""
    centroids = []
    for domain in ("source", "target_lowdose"):
        case = organ_case(domain)
        centroids.append(nib.affines.apply_affine(case.affine, np.argwhere(case.label == 1)).mean(axis=0))
    assert np.linalg.norm(centroids[0] - centroids[1]) < 3.0


def test_tube_voltage_gains():
    """Lower kVp: brighter iodine and bone, more negative fat, air unchanged (same random draws)."""
    hu120, _ = tissue_values("pancreatic_arterial", 120.0, np.random.default_rng(0))
    hu80, _ = tissue_values("pancreatic_arterial", 80.0, np.random.default_rng(0))
    assert hu80["air"] == hu120["air"] == -1000.0
    assert hu80["artery"] > hu120["artery"] + 100 and hu80["pancreas"] > hu120["pancreas"] + 30
    assert hu80["bone_cortical"] > hu120["bone_cortical"] and hu80["fat"] < hu120["fat"]
    assert abs(hu80["fluid"] - hu120["fluid"]) < 1.0


def test_case_seeds_differ_between_domains():
    seeds = {case_seed(0, d, i) for d in REQUIRED_DOMAINS for i in range(3)}
    assert len(seeds) == 3 * len(REQUIRED_DOMAINS)
    assert case_seed(0, "source", 0) == case_seed(0, "source", 0) != case_seed(1, "source", 0)


def test_write_dataset(tmp_path):
    out = write_dataset(tmp_path / "ds", "source", cases=2, seed=5)
    assert out == tmp_path / "ds"
    meta = json.loads((out / "dataset.json").read_text())
    msd_keys = ("name", "description", "reference", "licence", "tensorImageSize", "modality", "labels")
    for key in msd_keys + ("numTraining", "numTest", "training", "test", "phantom"):
        assert key in meta
    assert meta["tensorImageSize"] == "3D" and meta["modality"] == {"0": "CT"}
    assert meta["labels"] == {"0": "background", "1": "pancreas"}
    assert meta["numTraining"] == 2 and meta["numTest"] == 0 and meta["test"] == []
    assert meta["training"][1] == {"image": "./imagesTr/source_001.nii.gz", "label": "./labelsTr/source_001.nii.gz"}
    assert meta["phantom"]["domain"] == "source" and meta["phantom"]["seed"] == 5 and meta["phantom"]["cases"] == 2
    assert meta["phantom"]["parameters"] == DOMAINS["source"].to_dict()
    expected = generate_case("source", case_seed(5, "source", 1))
    image = nib.load(out / "imagesTr" / "source_001.nii.gz")
    label = nib.load(out / "labelsTr" / "source_001.nii.gz")
    np.testing.assert_array_equal(image.get_fdata(dtype=np.float32), expected.image)
    np.testing.assert_array_equal(np.asarray(label.dataobj), expected.label)
    np.testing.assert_allclose(image.affine, expected.affine, atol=1e-5)
    np.testing.assert_allclose(label.affine, expected.affine, atol=1e-5)
    all_files = sorted(p.name for p in out.rglob("*") if p.is_file())
    names = ["source_000.nii.gz", "source_001.nii.gz"]
    assert all_files == ["dataset.json"] + sorted(names * 2)  # images and labels, no temporary files left
    with pytest.raises(FileExistsError, match="ds"):
        write_dataset(out, "source", cases=1, seed=5)
    write_dataset(out, "source", cases=1, seed=6, overwrite=True)  # replaces and removes the stale second case
    assert sorted(p.name for p in (out / "imagesTr").iterdir()) == ["source_000.nii.gz"]
    assert json.loads((out / "dataset.json").read_text())["phantom"]["seed"] == 6


def test_write_dataset_lps_affine_roundtrip(tmp_path):
    out = write_dataset(tmp_path / "lowdose", "target_lowdose", cases=1, seed=0)
    image = nib.load(out / "imagesTr" / "target_lowdose_000.nii.gz")
    assert nib.aff2axcodes(image.affine) == ("L", "P", "S")
    np.testing.assert_allclose(spacing_of(image.affine), DOMAINS["target_lowdose"].spacing, rtol=1e-5)


def test_ensure_dataset(tmp_path):
    out = tmp_path / "phantom"
    assert ensure_dataset(out, "source", cases=1, seed=2) == out
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    time.sleep(0.01)
    assert ensure_dataset(out, "source", cases=1, seed=2) == out  # idempotent: nothing rewritten
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamp
    with pytest.raises(ValueError, match="seed"):
        ensure_dataset(out, "source", cases=1, seed=3)
    with pytest.raises(ValueError, match="cases"):
        ensure_dataset(out, "source", cases=2, seed=2)
    with pytest.raises(ValueError, match="domain"):
        ensure_dataset(out, "target_noncontrast", cases=1, seed=2)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamp


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "scripts.phantom", *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_cli(tmp_path):
    out = tmp_path / "cli"
    result = _run_cli("--out", str(out), "--domain", "source", "--cases", "2", "--seed", "0")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (out / "imagesTr").iterdir()) == ["source_000.nii.gz", "source_001.nii.gz"]
    assert sorted(p.name for p in (out / "labelsTr").iterdir()) == ["source_000.nii.gz", "source_001.nii.gz"]
    assert json.loads((out / "dataset.json").read_text())["numTraining"] == 2
    bad = _run_cli("--out", str(tmp_path / "bad"), "--domain", "nope", "--cases", "1")
    assert bad.returncode != 0
    assert "source" in bad.stderr and "target_lowdose" in bad.stderr
    again = _run_cli("--out", str(out), "--domain", "source", "--cases", "2", "--seed", "0")
    assert again.returncode != 0 and "overwrite" in again.stderr
    # fire would pass "true" on as a string: refused, before the existing dataset is looked at or replaced
    mtimes = {f: f.stat().st_mtime_ns for f in out.rglob("*") if f.is_file()}
    lowercase = _run_cli("--out", str(out), "--cases", "2", "--overwrite", "true")
    assert lowercase.returncode == 1
    assert "error: option(s) of the wrong type: --overwrite 'true': expected True or False" in lowercase.stderr
    assert {f: f.stat().st_mtime_ns for f in out.rglob("*") if f.is_file()} == mtimes

