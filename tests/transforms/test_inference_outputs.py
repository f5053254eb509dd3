"""The memory-lean inference outputs equal MONAI's: ResampleToInputd against Invertd, KeepLargestComponentd against
KeepLargestConnectedComponentd."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Invertd, KeepLargestConnectedComponent

from scripts.bundle import bundle_parser
from scripts.transforms import KeepLargestComponentd, ResampleToInputd, largest_component

AFFINES = {
    "RAS 0.8 mm": np.diag([0.8, 0.8, 1.0, 1.0]),
    "LPS 5 mm slices": np.array([[-0.9, 0, 0, 120], [0, -0.9, 0, 90], [0, 0, 5.0, -60], [0, 0, 0, 1]]),
    "permuted, flipped": np.array([[0, 0, 2.5, -30], [-1.1, 0, 0, 70], [0, -0.7, 0, 40], [0, 0, 0, 1]]),
    "oblique": np.array([[0.95, -0.2, 0.1, -50], [0.2, 0.95, 0, -40], [-0.1, 0, 2.0, 10], [0, 0, 0, 1]]),
}


@pytest.mark.parametrize("affine", AFFINES.values(), ids=AFFINES.keys())
@pytest.mark.parametrize("slab_voxels", [2**22, 500], ids=["one slab", "many slabs"])
def test_resampling_to_the_input_gives_the_values_of_invertd(tmp_path, affine, slab_voxels):
    shape = (61, 53, 23)
    ct = np.full(shape, -1000.0, np.float32)
    ct[5:-5, 4:-4, :] = 40.0  # the foreground crop cuts x and y, not z
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(ct, affine), str(path))
    preprocessing = bundle_parser(["inference.yaml"]).get_parsed_content("preprocessing")
    data = preprocessing({"image": str(path)})
    generator = torch.Generator().manual_seed(0)
    prediction = MetaTensor(torch.rand((1, *data["image"].shape[1:]), generator=generator), meta=data["image"].meta)
    expected = Invertd(keys="pred", transform=preprocessing, orig_keys="image", nearest_interp=False, to_tensor=True)(
        {"image": data["image"], "pred": prediction.clone()}
    )["pred"]
    result = ResampleToInputd(keys="pred", slab_voxels=slab_voxels)({"image": data["image"], "pred": prediction})["pred"]
    assert tuple(result.shape) == (1, *shape)
    np.testing.assert_allclose(result.affine.numpy(), affine, atol=1e-6)
    np.testing.assert_allclose(result.numpy(), expected.numpy(), atol=1e-4)
    assert result.meta["filename_or_obj"] == str(path)


def test_resampling_refuses_a_prediction_off_the_image_grid():
    image = MetaTensor(torch.zeros(1, 4, 4, 4), meta={"original_affine": np.eye(4), "spatial_shape": (4, 4, 4)})
    with pytest.raises(ValueError, match="is not on the grid of 'image'"):
        ResampleToInputd(keys="pred")({"image": image, "pred": torch.zeros(1, 3, 4, 4)})


def test_the_largest_component_is_monais_in_uint8():
    rng = np.random.default_rng(1)
    mask = (rng.random((30, 28, 26)) > 0.7).astype(np.uint8)  # many components, touching diagonally
    mask[2:12, 2:12, 2:12] = 1
    expected = KeepLargestConnectedComponent(applied_labels=[1])(torch.from_numpy(mask)[None].float())[0].numpy() > 0
    np.testing.assert_array_equal(largest_component(mask), expected)
    out = KeepLargestComponentd(keys="pred")({"pred": MetaTensor(torch.from_numpy(mask)[None], affine=torch.eye(4) * 2)})
    assert out["pred"].dtype == torch.uint8 and tuple(out["pred"].shape) == (1, 30, 28, 26)
    np.testing.assert_array_equal(out["pred"][0].numpy() > 0, expected)
    np.testing.assert_allclose(out["pred"].affine.numpy(), np.eye(4) * 2)
    assert not largest_component(np.zeros((3, 3, 3), np.uint8)).any()
