"""MONAI Label's data carries ``image_path`` (a str): MONAI's Spacingd fails on it, MetaSafeSpacingd and the
bundle's preprocessing do not, and give what Spacingd gives without it."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Spacingd

from scripts.bundle import bundle_parser
from scripts.transforms.spacing import MetaSafeSpacingd

AFFINE = np.array([[0.8, 0, 0, -40], [0, 0.8, 0, -30], [0, 0, 2.5, 10], [0, 0, 0, 1]])


@pytest.fixture
def ct_file(tmp_path):
    """A small NIfTI CT: the metadata copy of Spacingd runs for .nii/.nii.gz files only."""
    rng = np.random.default_rng(0)
    ct = rng.integers(-1000, 400, size=(40, 36, 12)).astype(np.int16)
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(ct, AFFINE), str(path))
    return str(path)


def _loaded(path: str) -> dict:
    """What MONAI Label's LoadImageTensord gives the bundle's transforms: image, image_meta_dict, image_path."""
    data = Compose([LoadImaged(keys="image", image_only=False), EnsureChannelFirstd(keys="image")])({"image": path})
    data["image_path"] = path
    data["model"] = "pancreas_ct_dualssl"
    return data


def test_monai_spacingd_takes_the_image_path_string_for_metadata(ct_file):
    """The failure MONAI Label's server answered with HTTP 500 (MONAI 1.6): plain MONAI reproduces it."""
    with pytest.raises(AttributeError, match="'str' object has no attribute 'update'"):
        Spacingd(keys="image", pixdim=(2.0, 2.0, 2.0))(_loaded(ct_file))


def test_meta_safe_spacingd_is_spacingd_and_keeps_the_string(ct_file):
    data = _loaded(ct_file)
    spacing = MetaSafeSpacingd(keys="image", pixdim=(2.0, 2.0, 2.0), dtype=torch.float32)
    result = spacing(data)
    without_path = {name: value for name, value in _loaded(ct_file).items() if name != "image_path"}
    expected = Spacingd(keys="image", pixdim=(2.0, 2.0, 2.0), dtype=torch.float32)(without_path)

    assert result["image_path"] == ct_file and result["model"] == "pancreas_ct_dualssl"
    assert list(result) == list(data)  # the input's item order
    assert tuple(result["image"].shape) == (1, 17, 15, 15) == tuple(expected["image"].shape)
    torch.testing.assert_close(result["image"].as_tensor(), expected["image"].as_tensor(), rtol=0, atol=0)
    np.testing.assert_allclose(result["image"].affine.numpy(), expected["image"].affine.numpy())
    np.testing.assert_allclose(np.diag(result["image"].affine.numpy())[:3], [2.0, 2.0, 2.0])
    # the metadata dictionary is still updated as Spacingd updates it
    np.testing.assert_allclose(
        np.asarray(result["image_meta_dict"]["affine"]), np.asarray(expected["image_meta_dict"]["affine"])
    )
    inverted = spacing.inverse(result)["image"]
    assert tuple(inverted.shape) == (1, 40, 36, 12)
    np.testing.assert_allclose(inverted.affine.numpy(), AFFINE, atol=1e-6)


def test_meta_safe_spacingd_without_such_items_is_spacingd(ct_file):
    data = {"image": LoadImaged(keys="image", ensure_channel_first=True)({"image": ct_file})["image"]}
    result = MetaSafeSpacingd(keys="image", pixdim=(1.5, 1.5, 3.0))(dict(data))
    expected = Spacingd(keys="image", pixdim=(1.5, 1.5, 3.0))(dict(data))
    assert list(result) == ["image"]
    torch.testing.assert_close(result["image"].as_tensor(), expected["image"].as_tensor(), rtol=0, atol=0)


def test_the_bundle_preprocessing_accepts_monai_labels_data(ct_file):
    """The inference config's preprocessing, as MONAI Label's bundle task runs it (image_path in the data)."""
    preprocessing = bundle_parser(["inference.yaml"]).get_parsed_content("preprocessing")
    result = preprocessing({"image": ct_file, "image_path": ct_file, "model": "pancreas_ct_dualssl", "device": "cpu"})
    plain = preprocessing({"image": ct_file})
    assert result["image_path"] == ct_file
    assert tuple(result["image"].shape) == tuple(plain["image"].shape)
    torch.testing.assert_close(result["image"].as_tensor(), plain["image"].as_tensor(), rtol=0, atol=0)
    np.testing.assert_allclose(np.diag(result["image"].affine.numpy())[:3], [2.0, 2.0, 2.0])
