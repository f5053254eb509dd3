"""Specification of the phantom's opt-in whole-abdomen anatomy (scripts.phantom.whole_abdomen) and its plumbing."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from functools import lru_cache

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from scripts.phantom import (
    ANATOMIES,
    DEFAULT_ANATOMY,
    ORGAN_LABELS,
    PhantomCase,
    ensure_dataset,
    ensure_phantom_input,
    generate_case,
    get_domain,
    write_dataset,
)
from scripts.phantom.acquisition import Scan, scan
from scripts.phantom.anatomies import sample_patient
from scripts.phantom.anatomy import UpperAbdomenBuilder
from scripts.phantom.shapes import LoftedSuperEllipse, Shell, ZSlab
from scripts.phantom.whole_abdomen import COVERAGE_MM, WholeAbdomenBuilder
from tests.bundle_cli import BUNDLE_ROOT as REPO

# sha256 of generate_case("source", 0) (image, label, organ map) computed before the whole-abdomen anatomy existed:
# the default anatomy must keep producing exactly these bytes
DEFAULT_CASE_SHA256 = {
    "image": "2b1eb7537036ff2903bc7b6f1acb10337cd77e1b2d62294c6ab0acc84c119d2d",
    "label": "8829ec2d1c40345381b34af9388ba618e64089ee1ff704eafd60074cc3e24e9f",
    "organs": "dc97cfd7bdf7080ae1e42cdab79bea6e7da6152add4e9e695d495ca3df83e789",
}
LOWDOSE_7_SHA256 = {  # generate_case("target_lowdose", 7, organ_labels=True), LPS storage and 3 mm slices
    "image": "4d3171bfdf91c305c5969db7d22a6368cb83760aa2072cd9cbf303461c9d7681",
    "label": "24027250f43f8f22f0ace7ec98a2d6a59d1fac790865bee8f68b48d356f5a0d0",
}

COARSE = dataclasses.replace(get_domain("source"), spacing=(4.0, 4.0, 4.0), slice_thickness=4.0, noise_std=0.0)
"""Noise-free 4 mm version of the source protocol: fine resolution is not what these tests are about."""
COARSE_NONCONTRAST = dataclasses.replace(COARSE, name="coarse_noncontrast", phase="non_contrast")
NEW_ORGANS = ("lung", "heart", "urinary_bladder", "lymph_node")


def sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


@lru_cache(maxsize=None)
def whole_case(seed: int) -> PhantomCase:
    return generate_case(COARSE, seed, organ_labels=True, anatomy="whole_abdomen")


@lru_cache(maxsize=None)
def whole_extent_scan(seed: int) -> Scan:
    """Non-contrast, noise-free 4 mm scan of a whole-abdomen patient over everything its anatomy models."""
    patient = sample_patient(np.random.default_rng([seed, 0]), "whole_abdomen")
    lo, hi = patient.z_limits_mm
    full = dataclasses.replace(patient, z_coverage_mm=(hi - lo, hi - lo))
    return scan(full, COARSE_NONCONTRAST, np.random.default_rng(seed), organ_labels=True)


def eroded(mask: np.ndarray) -> np.ndarray:
    return ndimage.binary_erosion(mask)


def test_the_default_anatomy_is_the_upper_abdomen_and_its_output_is_unchanged():
    assert DEFAULT_ANATOMY == "upper_abdomen" and set(ANATOMIES) == {"upper_abdomen", "whole_abdomen"}
    plain, explicit = generate_case("source", 0), generate_case("source", 0, anatomy="upper_abdomen")
    multi = generate_case("source", 0, organ_labels=True)
    assert plain.anatomy == explicit.anatomy == "upper_abdomen"
    assert sha256(plain.image) == sha256(explicit.image) == sha256(multi.image) == DEFAULT_CASE_SHA256["image"]
    assert sha256(plain.label) == sha256(explicit.label) == DEFAULT_CASE_SHA256["label"]
    assert sha256(multi.label) == DEFAULT_CASE_SHA256["organs"]
    lowdose = generate_case("target_lowdose", 7, organ_labels=True)
    assert {"image": sha256(lowdose.image), "label": sha256(lowdose.label)} == LOWDOSE_7_SHA256


def test_whole_abdomen_is_deterministic_from_the_seed():
    a, b = generate_case(COARSE, 11, anatomy="whole_abdomen"), generate_case(COARSE, 11, anatomy="whole_abdomen")
    assert a.anatomy == "whole_abdomen"
    assert a.image.tobytes() == b.image.tobytes() and a.label.tobytes() == b.label.tobytes()
    assert np.array_equal(a.affine, b.affine)
    c = generate_case(COARSE, 12, anatomy="whole_abdomen")
    assert c.image.shape != a.image.shape or not np.array_equal(c.image, a.image)


def test_whole_abdomen_shares_the_upper_abdomen_landmarks_and_ages_the_pancreas():
    """Same seed: same random stream for the shared structures (pancreas centreline, aorta); the gland is only
    thinned, the more the older the patient."""
    ratios = []
    for seed in range(6):
        upper = UpperAbdomenBuilder(np.random.default_rng([seed, 0]))
        upper.patient()
        whole = WholeAbdomenBuilder(np.random.default_rng([seed, 0]))
        whole.patient()
        np.testing.assert_array_equal(whole.pancreas_pts, upper.pancreas_pts)
        np.testing.assert_array_equal(whole.aorta_xy, upper.aorta_xy)
        ratio = float(np.max(whole.pancreas_r / upper.pancreas_r))
        assert ratio <= 1.0 + 1e-12
        if whole.age <= 40:
            assert ratio == pytest.approx(1.0)
        ratios.append((whole.aging, ratio))
    old = [r for aging, r in ratios if aging > 0.5]
    assert old and max(old) < 0.97


def test_whole_abdomen_covers_lung_bases_to_pelvis_around_the_pancreas():
    for seed in range(4):
        case = whole_case(seed)
        z_mm = case.image.shape[2] * COARSE.spacing[2]
        assert COVERAGE_MM[0] - COARSE.spacing[2] <= z_mm <= COVERAGE_MM[1] + COARSE.spacing[2]
        assert z_mm >= 300.0
        pancreas = np.argwhere(case.label == ORGAN_LABELS["pancreas"])
        assert len(pancreas) > 0
        assert pancreas[:, 2].min() > 0 and pancreas[:, 2].max() < case.image.shape[2] - 1  # inside the coverage
        top = case.label[:, :, -3:]  # every scan starts above the liver dome: lung bases in its first slices
        assert (top == ORGAN_LABELS["lung"]).any()
        present = set(np.unique(case.label))
        for organ in ("lung", "colon", "small_bowel", "liver", "pancreas", "bone", "muscle", "fat"):
            assert ORGAN_LABELS[organ] in present, (seed, organ)


def test_whole_extent_holds_every_new_structure_with_plausible_hounsfield_units():
    for seed in range(3):
        result = whole_extent_scan(seed)
        img, lab = result.image, result.label
        assert img.shape[2] * COARSE.spacing[2] >= 400.0
        for organ in NEW_ORGANS:
            assert (lab == ORGAN_LABELS[organ]).sum() > 0, (seed, organ)
        assert np.median(img[eroded(lab == ORGAN_LABELS["lung"])]) < -700
        assert 0.0 <= np.median(img[eroded(lab == ORGAN_LABELS["urinary_bladder"])]) <= 30.0  # non-contrast urine
        assert np.median(img[eroded(lab == ORGAN_LABELS["bone"])]) > 200
        assert 20.0 < np.median(img[eroded(lab == ORGAN_LABELS["heart"])]) < 70.0  # unenhanced blood and muscle
        # bones reach from the ribs above the domes to the femoral heads: the bone label spans (almost) all slices
        bone_slices = np.flatnonzero((lab == ORGAN_LABELS["bone"]).any(axis=(0, 1)))
        assert len(bone_slices) >= 0.95 * img.shape[2]


def test_faeces_are_mottled_gas_pockets_in_soft_tissue_density_content():
    """What a model confused with pancreas: the colon holds both gas and soft-tissue voxels, the gas in many
    separate pockets, not only one gas column."""
    for seed in range(3):
        result = whole_extent_scan(seed)
        colon = result.label == ORGAN_LABELS["colon"]
        values = result.image[colon]
        assert (values < -500).mean() > 0.05 and ((values > -100) & (values < 100)).mean() > 0.3
        pockets = ndimage.label(colon & (result.image < -500))[1]
        assert pockets >= 10, (seed, pockets)


def test_pancreas_label_semantics_are_unchanged_in_the_whole_abdomen():
    for seed in range(3):
        multi = whole_case(seed)
        plain = generate_case(COARSE, seed, anatomy="whole_abdomen")
        assert plain.label.dtype == np.uint8 and set(np.unique(plain.label)) == {0, 1}
        assert np.array_equal(plain.image, multi.image)
        assert np.array_equal(plain.label == 1, multi.label == ORGAN_LABELS["pancreas"])
        volume_ml = plain.label.sum() * np.prod(COARSE.spacing) / 1000.0
        assert 15.0 <= volume_ml <= 150.0
        assert set(np.unique(multi.label)) <= set(ORGAN_LABELS.values())


def test_new_labels_are_appended_after_the_existing_ones():
    assert list(ORGAN_LABELS)[:19][-1] == "other" and ORGAN_LABELS["other"] == 18
    assert [ORGAN_LABELS[o] for o in NEW_ORGANS] == [19, 20, 21, 22]
    assert sorted(ORGAN_LABELS.values()) == list(range(len(ORGAN_LABELS)))


def test_write_dataset_with_organ_maps(tmp_path):
    out = write_dataset(tmp_path / "wa", COARSE, cases=2, seed=1, anatomy="whole_abdomen", organ_maps=True)
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["labels"] == {"0": "background", "1": "pancreas"}
    assert meta["organ_labels"] == {str(v): k for k, v in ORGAN_LABELS.items()}
    assert meta["phantom"]["anatomy"] == "whole_abdomen" and meta["phantom"]["organ_maps"] is True
    for entry in meta["training"]:
        name = entry["image"].split("/")[-1]
        assert entry == {"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}", "organs": f"./organsTr/{name}"}
        label = np.asarray(nib.load(out / entry["label"]).dataobj)
        organs = np.asarray(nib.load(out / entry["organs"]).dataobj)
        assert label.dtype == organs.dtype == np.uint8 and set(np.unique(label)) == {0, 1}
        assert np.array_equal(organs == ORGAN_LABELS["pancreas"], label == 1)
        assert ORGAN_LABELS["lung"] in set(np.unique(organs))
    assert ensure_dataset(out, COARSE, cases=2, seed=1, anatomy="whole_abdomen", organ_maps=True) == out
    plain = write_dataset(tmp_path / "plain", COARSE, cases=1, seed=1)  # default: no organsTr, no organs key
    meta = json.loads((plain / "dataset.json").read_text())
    assert not (plain / "organsTr").exists() and "organs" not in meta["training"][0] and "organ_labels" not in meta
    assert meta["phantom"]["anatomy"] == "upper_abdomen" and meta["phantom"]["organ_maps"] is False


def test_ensure_dataset_refuses_other_anatomy_or_organ_maps_and_accepts_older_records(tmp_path):
    out = ensure_dataset(tmp_path / "ds", COARSE, cases=1, seed=2)
    with pytest.raises(ValueError, match="anatomy"):
        ensure_dataset(out, COARSE, cases=1, seed=2, anatomy="whole_abdomen")
    with pytest.raises(ValueError, match="organ_maps"):
        ensure_dataset(out, COARSE, cases=1, seed=2, organ_maps=True)
    # a folder written before anatomy and organ maps existed: its record lacks both keys
    meta_path = out / "dataset.json"
    meta = json.loads(meta_path.read_text())
    del meta["phantom"]["anatomy"], meta["phantom"]["organ_maps"]
    meta_path.write_text(json.dumps(meta))
    assert ensure_dataset(out, COARSE, cases=1, seed=2) == out
    assert ensure_phantom_input(out / "dataset.json", out, COARSE, 1, 2) == str(out / "dataset.json")
    with pytest.raises(ValueError, match="anatomy"):
        ensure_dataset(out, COARSE, cases=1, seed=2, anatomy="whole_abdomen")


def test_unknown_anatomy_is_refused_naming_the_allowed_values(tmp_path):
    calls = [
        lambda: generate_case(COARSE, 0, anatomy="pelvis"),
        lambda: sample_patient(np.random.default_rng(0), "pelvis"),
        lambda: write_dataset(tmp_path / "bad", COARSE, cases=1, anatomy="pelvis"),
        lambda: ensure_dataset(tmp_path / "bad", COARSE, cases=1, anatomy="pelvis"),
        lambda: ensure_phantom_input(tmp_path / "elsewhere", tmp_path / "bad", COARSE, 1, 0, "pelvis"),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="upper_abdomen, whole_abdomen"):
            call()
    assert not (tmp_path / "bad").exists()


def test_cli_writes_a_whole_abdomen_dataset_with_organ_maps(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = tmp_path / "cli"
    args = ["--out", str(out), "--cases", "1", "--anatomy", "whole_abdomen", "--organ_maps"]
    result = subprocess.run(
        [sys.executable, "-m", "scripts.phantom", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["phantom"]["anatomy"] == "whole_abdomen" and meta["training"][0]["organs"].startswith("./organsTr/")
    bad = subprocess.run(
        [sys.executable, "-m", "scripts.phantom", "--out", str(tmp_path / "bad"), "--anatomy", "chest"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert bad.returncode != 0 and "whole_abdomen" in bad.stderr


def test_new_shape_primitives_validate_their_arguments():
    loft = LoftedSuperEllipse((0.0, 0.0), [0.0, 100.0], [100.0, 150.0], [80.0, 80.0], [90.0, 90.0], 2.0)
    assert loft.section(50.0).a == pytest.approx(125.0) and loft.section(-50.0).a == pytest.approx(100.0)
    z = np.array([[[-10.0, 50.0, 200.0]]], np.float32)
    inside = loft.sdf((np.array([[[120.0]]], np.float32), np.array([[[0.0]]], np.float32), z))
    assert inside[0, 0, 0] > 0 > inside[0, 0, 1] and inside[0, 0, 2] < 0  # 120 mm: outside at z=-10, inside above
    with pytest.raises(ValueError, match="increase"):
        LoftedSuperEllipse((0.0, 0.0), [10.0, 0.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0], 2.0)
    with pytest.raises(ValueError, match="one length"):
        LoftedSuperEllipse((0.0, 0.0), [0.0, 10.0], [1.0], [1.0, 1.0], [1.0, 1.0], 2.0)
    with pytest.raises(ValueError, match="lo must be"):
        ZSlab(5.0, 1.0)
    with pytest.raises(ValueError, match="thickness"):
        Shell(ZSlab(0.0, 1.0), 0.0)
