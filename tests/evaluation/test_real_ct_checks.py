"""
The real-CT plausibility checks (python -m scripts.benchmarks.real_ct) on ../shared/data/real_ct with the shipped
model: the report, the overlays, and numbers recomputed here from the masks inference wrote. Skipped when the
folder is absent (a fresh clone has no ../shared).
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from scripts.benchmarks.real_ct import main
from scripts.evaluation.real_ct import REAL_CASES, canonical, check_case, ircad_references
from tests.bundle_cli import REAL_CT

pytestmark = [
    pytest.mark.real_ct,
    pytest.mark.skipif(not REAL_CT.is_dir(), reason=f"{REAL_CT} is absent"),
]


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    work = tmp_path_factory.mktemp("real_ct")
    main(real_ct_dir=str(REAL_CT), work_dir=str(work / "runs"), docs_dir=str(work / "docs"), threads=2)
    return work


def _mask(checked, case: str) -> np.ndarray:
    (mask_file,) = (checked / "runs" / "shipped" / case).glob("*_seg.nii.gz")
    image = nib.load(str(mask_file))
    return canonical(np.asarray(image.dataobj), image.affine)


def test_report_lists_every_case_with_its_overlay(checked):
    reports = json.loads((checked / "docs" / "real_ct_checks.json").read_text())["reports"]
    assert [(r["model"], r["case"]) for r in reports] == [("shipped", name) for name in REAL_CASES]
    table = (checked / "docs" / "real_ct_checks.md").read_text()
    for r in reports:
        assert f"| shipped | {r['case']} |" in table
        png = checked / "docs" / f"real_ct_shipped_{r['case']}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        fractions = [r["inside_any_organ"], r["in_air"], r["outside_body"], r["plausible"]]
        assert all(0.0 <= f <= 1.0 for f in fractions)
        assert r["plausible"] <= 1.0 - r["inside_any_organ"] + 1e-9


@pytest.mark.parametrize("case", list(REAL_CASES))
def test_volume_is_that_of_the_mask_inference_wrote(checked, case):
    report = next(r for r in json.loads((checked / "docs" / "real_ct_checks.json").read_text())["reports"]
                  if r["case"] == case)
    mask, affine = _mask(checked, case)
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000.0
    assert report["volume_ml"] == pytest.approx(np.count_nonzero(mask) * voxel_ml, rel=1e-6)


def test_totalseg_dice_is_against_its_pancreas_on_the_four_labelled_slices(checked):
    report = next(r for r in json.loads((checked / "docs" / "real_ct_checks.json").read_text())["reports"]
                  if r["case"] == "totalseg_b")
    seg_image = nib.load(str(REAL_CT / "totalseg_b_seg.nii.gz"))
    seg, _ = canonical(np.asarray(seg_image.dataobj), seg_image.affine)
    mask, _ = _mask(checked, "totalseg_b")
    pancreas = seg == 7
    assert report["labelled_slices"] == [0, 1, 2, 3]
    m, p = mask[:, :, :4] > 0, pancreas[:, :, :4]
    assert report["dice_labelled_slices"] == pytest.approx(2 * (m & p).sum() / (m.sum() + p.sum()))


def test_ircad_confluence_lies_on_contrast_filled_vein_outside_the_liver():
    refs = ircad_references(REAL_CT)
    at = tuple(np.rint(refs.landmark).astype(int))
    assert not refs.organs["liver"][at] and not refs.organs["spleen"][at]
    neighbourhood = refs.hu[at[0] - 2 : at[0] + 3, at[1] - 2 : at[1] + 3, at[2]]
    assert np.median(neighbourhood) > 130  # portal venous blood, brighter than liver parenchyma here


def test_a_mask_on_another_grid_is_refused_naming_it(tmp_path):
    wrong = tmp_path / "wrong_seg.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((512, 512, 19), np.uint8), np.eye(4)), str(wrong))
    with pytest.raises(ValueError, match="wrong_seg.nii.gz is not on its CT's grid"):
        check_case("totalseg_b", REAL_CT, wrong)
    with pytest.raises(ValueError, match="unknown real case 'ircad'"):
        check_case("ircad", REAL_CT, wrong)
