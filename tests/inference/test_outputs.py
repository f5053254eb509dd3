"""Output names of a batch: existing outputs skipped, clashing names refused; the overlay picture."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from scripts.data.naming import output_path
from scripts.inference.batch import pending_cases
from scripts.inference.overlay import save_overlay


def _nifti(path, shape=(12, 10, 8), affine=None, value=0):
    data = np.full(shape, value, dtype=np.int16)
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path

def test_pending_cases_skips_existing_outputs_and_refuses_clashes(tmp_path):
    items = [{"image": "/in/a.nii.gz"}, {"image": "/in/b.nii.gz"}]
    assert output_path("/in/a.nii.gz", tmp_path, "seg") == tmp_path / "a_seg.nii.gz"
    (tmp_path / "a_seg.nii.gz").write_bytes(b"x")
    assert pending_cases(items, tmp_path, "seg") == [items[1]]
    assert pending_cases(items, tmp_path, "seg", overwrite=True) == items
    with pytest.raises(ValueError, match="same output"):
        pending_cases([{"image": "/x/a.nii.gz"}, {"image": "/y/a.nii"}], tmp_path, "seg")

def test_overlay_png_is_written(tmp_path):
    image = _nifti(tmp_path / "ct.nii.gz", shape=(20, 20, 10), value=40)
    mask_data = np.zeros((20, 20, 10), np.uint8)
    mask_data[8:12, 8:12, 4:6] = 1
    nib.save(nib.Nifti1Image(mask_data, np.eye(4)), str(tmp_path / "ct_seg.nii.gz"))
    png = save_overlay(image, tmp_path / "ct_seg.nii.gz", tmp_path / "ct_overlay.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="shape"):
        save_overlay(_nifti(tmp_path / "other.nii.gz", shape=(5, 5, 5)), tmp_path / "ct_seg.nii.gz", tmp_path / "x.png")
