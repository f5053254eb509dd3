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


@pytest.mark.parametrize("affine", AFFINES.values(), ids=AFFINES.keys())
@pytest.mark.parametrize("where", ["inside", "at the border", "nowhere"])
def test_resampling_only_above_the_threshold_gives_the_same_mask(affine, where):
    """A trilinear value reaches 0.5 only next to a source voxel that does: the mask is that of full resampling."""
    from scripts.transforms import resample_to_grid

    generator = torch.Generator().manual_seed(3)
    source = 0.45 * torch.rand((1, 30, 28, 20), generator=generator)
    if where == "inside":
        source[0, 10:17, 8:13, 6:12] = torch.rand((7, 5, 6), generator=generator)
    elif where == "at the border":  # on every face: border padding carries it beyond the source grid
        for axis in range(1, 4):
            source.narrow(axis, 0, 1).fill_(0.9)
            source.narrow(axis, source.shape[axis] - 1, 1).fill_(0.9)
    shape = (70, 66, 18)
    source_affine = np.diag([2.0, 2.0, 2.0, 1.0])  # centred on the target's field of view
    source_affine[:3, 3] = (affine @ [*(np.array(shape) / 2), 1.0])[:3] - np.array(source.shape[1:]) / 2 * 2.0
    full = resample_to_grid(source, source_affine, affine, shape)
    fast = resample_to_grid(source, source_affine, affine, shape, only_above=0.5)
    assert torch.equal(fast >= 0.5, full >= 0.5)
    if where == "nowhere":
        assert not fast.any()
    else:
        assert (full >= 0.5).any()
        kept = fast != 0
        torch.testing.assert_close(fast[kept], full[kept])  # the values it computes are the full resampling's


def test_the_largest_component_in_a_corner_of_a_large_volume():
    mask = np.zeros((200, 180, 90), np.uint8)
    mask[150:160, 170:180, 80:90] = 1  # touches the far corner
    mask[10:12, 10:12, 10:12] = 1
    kept = largest_component(mask)
    assert kept.shape == mask.shape and kept.sum() == 1000 and kept[150:160, 170:180, 80:90].all()
