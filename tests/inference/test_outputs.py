"""Output names of a batch: existing outputs skipped, clashing names refused; the overlay picture."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from scripts.data.naming import output_path
from scripts.inference.batch import check_output_names
from scripts.inference.overlay import save_overlay


def _nifti(path, shape=(12, 10, 8), affine=None, value=0):
    data = np.full(shape, value, dtype=np.int16)
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path

def test_two_inputs_with_one_case_name_are_refused_before_any_work(tmp_path):
    assert output_path("/in/a.nii.gz", tmp_path, "seg") == tmp_path / "a_seg.nii.gz"
    check_output_names([{"image": "/in/a.nii.gz"}, {"image": "/in/b.nii.gz"}], tmp_path, "seg")
    with pytest.raises(ValueError, match="same output"):
        check_output_names([{"image": "/x/a.nii.gz"}, {"image": "/y/a.nii"}], tmp_path, "seg")


def test_overlay_png_is_written(tmp_path):
    image = _nifti(tmp_path / "ct.nii.gz", shape=(20, 20, 10), value=40)
    mask_data = np.zeros((20, 20, 10), np.uint8)
    mask_data[8:12, 8:12, 4:6] = 1
    nib.save(nib.Nifti1Image(mask_data, np.eye(4)), str(tmp_path / "ct_seg.nii.gz"))
    png = save_overlay(image, tmp_path / "ct_seg.nii.gz", tmp_path / "ct_overlay.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="shape"):
        save_overlay(_nifti(tmp_path / "other.nii.gz", shape=(5, 5, 5)), tmp_path / "ct_seg.nii.gz", tmp_path / "x.png")
