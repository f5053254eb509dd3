"""Atomic writers: a complete file under its final name or none."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import torch

from scripts.data.writers import AtomicNibabelWriter


def test_atomic_writer_leaves_only_the_final_file(tmp_path):
    writer = AtomicNibabelWriter()
    writer.set_data_array(torch.ones(1, 4, 4, 4), channel_dim=0)
    writer.set_metadata({"affine": np.diag([2.0, 2.0, 3.0, 1.0])}, resample=False)
    writer.write(tmp_path / "mask.nii.gz")
    assert [p.name for p in tmp_path.iterdir()] == ["mask.nii.gz"]
    np.testing.assert_allclose(nib.load(str(tmp_path / "mask.nii.gz")).affine, np.diag([2.0, 2.0, 3.0, 1.0]))
