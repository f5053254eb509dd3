"""Specification of PancreasStructureMapsd: skeleton, peripancreatic ring and boundary band of a label."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, RandCropByPosNegLabeld
from scipy import ndimage
from scipy.spatial import cKDTree

from scripts.transforms import PancreasStructureMapsd

SHAPE = (120, 48, 40)
PIXDIM = (0.8, 0.8, 2.5)  # anisotropic, as in typical abdominal CT


def curved_tube(shape=SHAPE) -> np.ndarray:
    """A bent elliptic cylinder along axis 0 (voxels 10..110), the long axis of the 'pancreas'."""
    x, y, z = np.meshgrid(*(np.arange(s) for s in shape), indexing="ij")
    centre_y = shape[1] / 2 + 10 * np.sin(np.pi * (x - 10) / 100)
    return (x >= 10) & (x <= 110) & (((y - centre_y) / 5) ** 2 + ((z - shape[2] / 2) / 3) ** 2 <= 1)


def as_label(mask: np.ndarray, pixdim=PIXDIM) -> MetaTensor:
    affine = torch.diag(torch.tensor([*pixdim, 1.0], dtype=torch.float64))
    affine[:3, 3] = torch.tensor([-10.0, 20.0, 30.0], dtype=torch.float64)
    label = MetaTensor(torch.from_numpy(mask[None].astype(np.float32)), affine=affine)
    label.meta["filename_or_obj"] = "case_000.nii.gz"
    return label


def physical_points(mask: np.ndarray, pixdim) -> np.ndarray:
    return np.argwhere(mask) * np.asarray(pixdim)


@pytest.fixture(scope="module")
def tube() -> np.ndarray:
    return curved_tube()


@pytest.fixture(scope="module")
def maps(tube) -> dict:
    return PancreasStructureMapsd(keys="label", ring_width_mm=10.0, band_width_mm=4.0)({"label": as_label(tube)})


def test_outputs_are_float_maps_with_label_meta(maps):
    label = maps["label"]
    for key in ("skeleton", "ring", "band"):
        out = maps[key]
        assert isinstance(out, MetaTensor)
        assert out.shape == label.shape == (1, *SHAPE)
        assert out.dtype == torch.float32
        assert set(torch.unique(out).tolist()) <= {0.0, 1.0}
        assert torch.equal(out.affine, label.affine)
        assert out.meta["filename_or_obj"] == "case_000.nii.gz"
        np.testing.assert_allclose(np.asarray(out.pixdim), PIXDIM)


def test_skeleton_lies_inside_label_and_spans_its_long_axis(maps, tube):
    skeleton = maps["skeleton"][0].numpy() > 0
    assert skeleton.any()
    assert not (skeleton & ~tube).any()
    label_x = np.nonzero(tube.any(axis=(1, 2)))[0]
    skeleton_x = np.nonzero(skeleton.any(axis=(1, 2)))[0]
    coverage = (skeleton_x.max() - skeleton_x.min() + 1) / (label_x.max() - label_x.min() + 1)
    assert coverage >= 0.9
    assert skeleton.sum() < 0.05 * tube.sum()  # a thin centreline, not the whole label


def test_ring_is_outside_label_within_ring_width(maps, tube):
    ring = maps["ring"][0].numpy() > 0
    assert ring.any()
    assert not (ring & tube).any()
    # brute-force physical distances from each ring voxel to the nearest label voxel
    distances, _ = cKDTree(physical_points(tube, PIXDIM)).query(physical_points(ring, PIXDIM))
    assert distances.max() <= 10.0 + max(PIXDIM)
    # and every outside voxel clearly within the width belongs to the ring
    outside = ~tube
    distances_all, _ = cKDTree(physical_points(tube, PIXDIM)).query(physical_points(outside, PIXDIM))
    close = np.zeros_like(tube)
    close[outside] = distances_all <= 10.0 - 1e-6
    assert not (close & ~ring).any()


def test_ring_width_follows_pixdim(tube):
    transform = PancreasStructureMapsd(keys="label", ring_width_mm=10.0)
    fine = transform({"label": as_label(tube, pixdim=(1.0, 1.0, 1.0))})["ring"][0].numpy() > 0
    coarse = transform({"label": as_label(tube, pixdim=(1.0, 1.0, 2.5))})["ring"][0].numpy() > 0
    # along the coarse axis (z) the ring is 10 voxels thick at 1 mm and 4 voxels thick at 2.5 mm
    column = (70, tube.shape[1] // 2 + int(round(10 * np.sin(np.pi * 60 / 100))))
    assert tube[column[0], column[1]].any()
    top_of_label = np.nonzero(tube[column])[0].max()

    def above(ring: np.ndarray) -> int:  # ring voxels above the label along z, in this column
        return int(ring[column[0], column[1], top_of_label + 1 :].sum())

    assert above(fine) == 10
    assert above(coarse) == 4
    assert coarse.sum() < fine.sum()


def test_band_covers_boundary_on_both_sides(maps, tube):
    band = maps["band"][0].numpy() > 0
    inner_boundary = tube & ~ndimage.binary_erosion(tube)
    outer_boundary = ndimage.binary_dilation(tube) & ~tube
    assert inner_boundary.any() and outer_boundary.any()
    assert not (inner_boundary & ~band).any()
    assert not (outer_boundary & ~band).any()
    # every band voxel is within band width (+1 voxel) of the boundary, in mm
    boundary_points = physical_points(inner_boundary | outer_boundary, PIXDIM)
    distances, _ = cKDTree(boundary_points).query(physical_points(band, PIXDIM))
    assert distances.max() <= 4.0 + max(PIXDIM)
    assert not (band & ~maps["ring"][0].numpy().astype(bool) & ~tube).any()  # outer band part lies in the ring


def test_band_is_never_empty_for_thin_widths(tube):
    band = PancreasStructureMapsd(keys="label", band_width_mm=0.1)({"label": as_label(tube)})["band"][0].numpy()
    inner_boundary = tube & ~ndimage.binary_erosion(tube)
    assert not (inner_boundary & (band == 0)).any()


def test_empty_label_gives_zero_maps():
    out = PancreasStructureMapsd(keys="label")({"label": as_label(np.zeros((20, 20, 10), dtype=bool))})
    for key in ("skeleton", "ring", "band"):
        assert out[key].shape == (1, 20, 20, 10)
        assert not out[key].any()


def test_tiny_label_still_has_a_skeleton():
    mask = np.zeros((12, 12, 12), dtype=bool)
    mask[5:7, 5:7, 5:7] = True
    skeleton = PancreasStructureMapsd(keys="label")({"label": as_label(mask)})["skeleton"][0].numpy() > 0
    assert skeleton.any()
    assert not (skeleton & ~mask).any()


def test_custom_output_keys_and_single_key_check(tube):
    out = PancreasStructureMapsd(keys="seg", skeleton_key="sk", ring_key="rg", band_key="bd")({"seg": as_label(tube)})
    assert {"seg", "sk", "rg", "bd"} == set(out)
    with pytest.raises(ValueError):
        PancreasStructureMapsd(keys=["label", "other"])


def test_maps_follow_random_crops_in_compose(tube):
    image = MetaTensor(torch.randn(1, *SHAPE), affine=as_label(tube).affine)
    keys = ["image", "label", "skeleton", "ring", "band"]
    pipeline = Compose(
        [
            PancreasStructureMapsd(keys="label"),
            RandCropByPosNegLabeld(
                keys=keys, label_key="label", spatial_size=(32, 32, 16), pos=1, neg=1, num_samples=4
            ),
        ]
    )
    pipeline.set_random_state(seed=0)
    samples = pipeline({"image": image, "label": as_label(tube)})
    assert len(samples) == 4
    for sample in samples:
        for key in keys:
            assert sample[key].shape == (1, 32, 32, 16)
        # the maps were cropped with the label: same affine, and the geometry still agrees
        assert torch.equal(sample["skeleton"].affine, sample["label"].affine)
        assert not (sample["skeleton"].bool() & ~sample["label"].bool()).any()
        assert not (sample["ring"].bool() & sample["label"].bool()).any()
