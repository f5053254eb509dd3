"""PGL's prior: two views made by crops, scalings, flips and 90-degree rotations are aligned exactly by their affines."""

from __future__ import annotations

import itertools

import pytest
import torch
from monai.data import MetaTensor

from scripts.engines import align_views, feature_map_affine
from scripts.losses import CosineConsistencyLoss
from scripts.transforms import RandPairedViewsd

SHAPE = (40, 36, 30)
VIEW = (16, 16, 12)


def _scan(values: torch.Tensor) -> MetaTensor:
    affine = torch.diag(torch.tensor([2.0, 2.0, 3.0, 1.0], dtype=torch.float64))
    affine[:3, 3] = torch.tensor([-30.0, 12.0, 4.0])
    return MetaTensor(values[None].float(), affine=affine)


def _ramp() -> MetaTensor:
    """A linear image: any linear interpolation of it is exact, so rescaled views compare exactly too."""
    grid = torch.meshgrid(*[torch.arange(n, dtype=torch.float64) for n in SHAPE], indexing="ij")
    return _scan(0.01 * grid[0] + 0.03 * grid[1] + 0.07 * grid[2])


def _identity_features(view: MetaTensor) -> torch.Tensor:
    """The 'network' of these tests: three channels computed voxel by voxel from the image."""
    x = view.as_tensor()
    return torch.cat([x, x**2, 1 - x])


def _views(image: MetaTensor, first: dict, second: dict) -> tuple[MetaTensor, MetaTensor]:
    transform = RandPairedViewsd("image", view_size=VIEW, rotate90_prob=0.0 if VIEW[0] != VIEW[1] else 0.5)
    return transform.make_view(image, first), transform.make_view(image, second)


def _parameters(centre, scale=1.0, flip_axes=(), k=0) -> dict:
    return {"centre": torch.tensor(centre, dtype=torch.float64).numpy(), "scale": scale, "flip_axes": flip_axes,
            "rotate90_k": k}


FLIPS = [(), (0,), (1,), (2,), (0, 1, 2)]
ROTATIONS = [0, 1, 2, 3]


@pytest.mark.parametrize("flip_axes,k", list(itertools.product(FLIPS, ROTATIONS)))
def test_identity_features_of_two_views_align_exactly_and_the_loss_is_zero(flip_axes, k):
    torch.manual_seed(0)
    image = _scan(torch.rand(SHAPE))
    first = _parameters((18.0, 17.0, 14.0))
    second = _parameters((21.0, 14.0, 16.0), flip_axes=flip_axes, k=k)
    view_a, view_b = _views(image, first, second)
    aligned = align_views(_identity_features(view_a), _identity_features(view_b), view_a.affine, view_b.affine)
    assert aligned is not None
    a, b = aligned
    assert a.shape == b.shape and a.shape[0] == 3
    # the overlap of an integer shift of (3, 3, 2) voxels: 13 x 13 x 10 voxels, whatever the flips and rotation
    assert sorted(a.shape[1:]) == sorted((13, 13, 10))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert float(CosineConsistencyLoss()(a[None], b[None])) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("scale_b,flip_axes,k", [(0.8, (), 0), (1.25, (0,), 1), (0.9, (1, 2), 2), (1.1, (2,), 3)])
def test_rescaled_views_align_exactly_on_a_linear_image(scale_b, flip_axes, k):
    image = _ramp()
    view_a, view_b = _views(image, _parameters((18.0, 17.0, 14.0), scale=1.1), _parameters((20.0, 16.0, 15.0),
                            scale=scale_b, flip_axes=flip_axes, k=k))
    a, b = align_views(view_a.as_tensor(), view_b.as_tensor(), view_a.affine, view_b.affine)
    # a rescaled view's outermost voxels are extrapolated by the resampling (edge values): compare inside them
    inner = (slice(None),) + (slice(1, -1),) * 3
    torch.testing.assert_close(a[inner], b[inner], atol=2e-4, rtol=0)
    assert min(a.shape[1:]) >= 6


def test_a_shift_of_k_voxels_gives_a_loss_before_alignment_and_none_after():
    torch.manual_seed(1)
    image = _scan(torch.rand(SHAPE))
    view_a, view_b = _views(image, _parameters((18.0, 17.0, 14.0)), _parameters((20.0, 17.0, 14.0)))
    features_a, features_b = _identity_features(view_a), _identity_features(view_b)
    loss = CosineConsistencyLoss()
    assert float(loss(features_a[None], features_b[None])) > 0.05  # voxel i of a and of b: different places
    a, b = align_views(features_a, features_b, view_a.affine, view_b.affine)
    assert a.shape[1:] == (VIEW[0] - 2, VIEW[1], VIEW[2])  # the overlap: 2 voxels fewer along the shifted axis
    assert float(loss(a[None], b[None])) == pytest.approx(0.0, abs=1e-6)
    torch.testing.assert_close(a, features_a[:, 2:], atol=1e-6, rtol=0)
    torch.testing.assert_close(b, features_b[:, :-2], atol=1e-6, rtol=0)


def test_strided_feature_maps_align_by_their_feature_affine():
    """Features at 1/2 resolution (voxel j on view voxel 2j) of views shifted by 4 voxels are 2 feature voxels apart."""
    torch.manual_seed(2)
    image = _scan(torch.rand(SHAPE))
    view_a, view_b = _views(image, _parameters((18.0, 17.0, 14.0)), _parameters((22.0, 17.0, 14.0)))
    half_a, half_b = view_a.as_tensor()[:, ::2, ::2, ::2], view_b.as_tensor()[:, ::2, ::2, ::2]
    a, b = align_views(half_a, half_b, feature_map_affine(view_a.affine, 2), feature_map_affine(view_b.affine, 2))
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert a.shape[1:] == (VIEW[0] // 2 - 2, VIEW[1] // 2, VIEW[2] // 2)


def test_views_that_do_not_overlap_give_none_and_oblique_relations_are_refused():
    image = _scan(torch.rand(SHAPE))
    view_a, view_b = _views(image, _parameters((8.0, 8.0, 6.0)), _parameters((31.0, 27.0, 23.0)))
    assert align_views(view_a.as_tensor(), view_b.as_tensor(), view_a.affine, view_b.affine) is None
    oblique = view_b.affine.clone()
    oblique[:3, :3] = oblique[:3, :3] @ torch.tensor([[0.8, -0.6, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]],
                                                      dtype=torch.float64)
    with pytest.raises(ValueError, match="not axis-aligned"):
        align_views(view_a.as_tensor(), view_b.as_tensor(), view_a.affine, oblique)


def test_random_views_record_their_affine_and_keep_their_size():
    transform = RandPairedViewsd("image", view_size=VIEW, rotate90_prob=1.0, scale_range=(0.8, 1.25))
    transform.set_random_state(3)
    out = transform({"image": _ramp()})
    assert "image" not in out
    for key in ("view_1", "view_2"):
        assert out[key].shape == (1, *VIEW) and out[key].affine.shape == (4, 4)
    with pytest.raises(ValueError, match="equal along it"):
        RandPairedViewsd("image", view_size=(16, 12, 12), rotate90_prob=0.5)
    with pytest.raises(TypeError, match="MetaTensor"):
        transform({"image": torch.zeros(1, *SHAPE)})
