"""Specification of the local restoration task: uncertainty region, corruption and masked L1 loss."""

from __future__ import annotations

import time

import pytest
import torch

from scripts.engines import RandUncertaintyCorruption, uncertainty_region
from scripts.losses import MaskedL1Loss
from scripts.transforms import predictive_entropy

SHAPE = (2, 1, 32, 32, 32)


def cube_region(shape=SHAPE, low: int = 8, high: int = 24) -> torch.Tensor:
    region = torch.zeros(shape, dtype=torch.bool)
    region[..., low:high, low:high, low:high] = True
    return region


def smooth_image(shape=SHAPE, seed: int = 0) -> torch.Tensor:
    """A CT-like image with distinct values (so that any corruption is visible) in [-100, 300]."""
    generator = torch.Generator().manual_seed(seed)
    return -100.0 + 400.0 * torch.rand(shape, generator=generator)


# --------------------------------------------------------------------------------------- masked L1


def test_masked_l1_is_zero_for_perfect_restoration():
    target = torch.randn(2, 3, 8, 8, 8)
    mask = torch.rand(2, 1, 8, 8, 8) > 0.5
    assert MaskedL1Loss()(target.clone(), target, mask).item() == 0.0


def test_masked_l1_ignores_voxels_outside_the_mask():
    torch.manual_seed(0)
    restored, target = torch.randn(2, 2, 6, 6, 6), torch.randn(2, 2, 6, 6, 6)
    mask = torch.rand(2, 1, 6, 6, 6) > 0.5
    loss = MaskedL1Loss()(restored, target, mask)
    changed = torch.where(mask, restored, restored + 100.0 * torch.randn_like(restored))
    assert torch.equal(MaskedL1Loss()(changed, target, mask), loss)


def test_masked_l1_exact_value():
    restored = torch.tensor([[[1.0, 2.0, 3.0, 4.0]], [[0.0, 0.0, 0.0, 0.0]]])  # (B=2, C=1, 4)
    target = torch.tensor([[[1.5, 2.0, 0.0, 9.0]], [[1.0, 1.0, 1.0, 1.0]]])
    mask = torch.tensor([[[True, True, True, False]], [[False, False, False, True]]])
    # masked errors: 0.5, 0, 3 (item 0) and 1 (item 1) -> 4.5 / 4
    assert MaskedL1Loss()(restored, target, mask).item() == pytest.approx(1.125)
    # the mask is broadcast over channels: two identical channels give the same mean
    two_channels = MaskedL1Loss()(restored.repeat(1, 2, 1), target.repeat(1, 2, 1), mask)
    assert two_channels.item() == pytest.approx(1.125)


def test_masked_l1_empty_mask_gives_zero_with_graph():
    restored = torch.randn(1, 1, 4, 4, 4, requires_grad=True)
    loss = MaskedL1Loss()(restored, torch.randn(1, 1, 4, 4, 4), torch.zeros(1, 1, 4, 4, 4, dtype=torch.bool))
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    assert torch.equal(restored.grad, torch.zeros_like(restored))


def test_masked_l1_gradient_only_on_masked_voxels():
    restored = torch.zeros(1, 1, 2, 2, 2, requires_grad=True)
    mask = torch.zeros(1, 1, 2, 2, 2, dtype=torch.bool)
    mask[..., 0, 0, :] = True
    MaskedL1Loss()(restored, torch.ones(1, 1, 2, 2, 2), mask).backward()
    assert torch.equal(restored.grad, torch.where(mask, -0.5, 0.0))


def test_masked_l1_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        MaskedL1Loss()(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5), torch.ones(1, 1, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError):
        MaskedL1Loss()(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4), torch.ones(1, 2, 4, 4, dtype=torch.bool))


# ---------------------------------------------------------------------------------- entropy, region


def test_predictive_entropy_range_and_extremes():
    uniform = torch.full((1, 3, 4, 4, 4), 1 / 3)
    one_hot = torch.zeros(1, 3, 4, 4, 4)
    one_hot[:, 1] = 1.0
    random = torch.softmax(torch.randn(2, 2, 5, 5, 5), dim=1)
    assert predictive_entropy(uniform).shape == (1, 1, 4, 4, 4)
    assert torch.allclose(predictive_entropy(uniform), torch.ones(1, 1, 4, 4, 4))
    assert torch.allclose(predictive_entropy(one_hot), torch.zeros(1, 1, 4, 4, 4))
    entropy = predictive_entropy(random)
    assert ((entropy >= 0) & (entropy <= 1)).all()
    assert torch.allclose(predictive_entropy(torch.tensor([[0.5, 0.5]])), torch.ones(1, 1))


def test_uncertainty_region_is_band_plus_top_percent_per_item():
    band = torch.zeros(2, 1, 10, 10, 10)
    band[:, :, 0] = 1.0  # 100 voxels
    foreground = torch.zeros(2, 1, 10, 10, 10)
    foreground[0, 0, 5, 5, :] = 0.5  # item 0: 10 maximally uncertain voxels
    foreground[1, 0, 9, :, :] = 0.4  # item 1: 100 fairly uncertain voxels
    probabilities = torch.cat([1 - foreground, foreground], dim=1)
    region = uncertainty_region(band, probabilities, top_percent=1.0)  # top 10 voxels per item
    assert region.shape == (2, 1, 10, 10, 10) and region.dtype == torch.bool
    assert region[band > 0].all()
    assert region[0, 0, 5, 5, :].all()
    assert region[0].sum() == 110
    assert region[1, 0, 9].sum() == 10  # the 10 top voxels are drawn from the uncertain slice
    assert region[1].sum() == 110
    assert torch.equal(uncertainty_region(band, probabilities, top_percent=0.0), band > 0)
    assert uncertainty_region(band, probabilities, top_percent=100.0).all()


# -------------------------------------------------------------------------------------- corruption


def test_corruption_changes_only_region_voxels():
    image, region = smooth_image(), cube_region()
    corrupted, mask = RandUncertaintyCorruption(block_size=8, num_blocks=8, seed=0)(image, region)
    assert corrupted.shape == image.shape and corrupted.dtype == image.dtype
    assert mask.shape == image.shape and mask.dtype == torch.bool
    assert torch.equal(corrupted[~region], image[~region])  # bit for bit outside the region
    assert torch.equal(corrupted[~mask], image[~mask])  # and outside the returned mask
    assert not (mask & ~region).any()
    changed = corrupted != image
    for item in range(2):
        assert mask[item].sum() > 512  # several 8^3 blocks
        assert changed[item].sum() > 0.5 * mask[item].sum()


def test_corruption_never_touches_voxels_outside_a_sparse_region():
    image = smooth_image()
    region = torch.rand(SHAPE, generator=torch.Generator().manual_seed(1)) > 0.9
    corrupted, mask = RandUncertaintyCorruption(num_blocks=16, seed=3)(image, region)
    assert torch.equal(corrupted[~region], image[~region])
    assert not (mask & ~region).any() and mask.any()


def test_corruption_is_reproducible():
    image, region = smooth_image(), cube_region()
    first = RandUncertaintyCorruption(seed=42)(image, region)
    second = RandUncertaintyCorruption(seed=42)(image, region)
    other = RandUncertaintyCorruption(seed=43)(image, region)
    reseeded = RandUncertaintyCorruption(seed=0).set_random_state(42)(image, region)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert torch.equal(first[0], reseeded[0])
    assert not torch.equal(first[0], other[0])
    # successive calls draw new blocks
    transform = RandUncertaintyCorruption(seed=42)
    assert not torch.equal(transform(image, region)[0], transform(image, region)[0])


def test_global_seed_makes_unseeded_corruption_reproducible():
    image, region = smooth_image(), cube_region()
    torch.manual_seed(5)
    first = RandUncertaintyCorruption()(image, region)[0]
    torch.manual_seed(5)
    assert torch.equal(RandUncertaintyCorruption()(image, region)[0], first)


@pytest.mark.parametrize("corruption_type", [0, 1, 2, 3])
def test_each_corruption_type(corruption_type):
    image, region = smooth_image(), cube_region()
    weights = [0.0] * 4
    weights[corruption_type] = 1.0
    transform = RandUncertaintyCorruption(block_size=6, num_blocks=4, corruption_weights=weights, seed=1)
    corrupted, mask = transform(image, region)
    assert mask.any()
    assert torch.equal(corrupted[~mask], image[~mask])
    assert (corrupted[mask] != image[mask]).float().mean() > 0.5
    for item in range(2):  # corrupted values stay in the item's intensity range
        assert image[item].min() <= corrupted[item].min() and corrupted[item].max() <= image[item].max()
    if corruption_type == 0:  # local shuffle: values come from neighbours of the original image
        assert set(corrupted[mask].tolist()) <= set(image.flatten().tolist())


def test_nonlinear_remap_is_monotonic_within_a_block():
    image, region = smooth_image((1, 1, 32, 32, 32)), cube_region((1, 1, 32, 32, 32))
    transform = RandUncertaintyCorruption(block_size=8, num_blocks=1, corruption_weights=(0, 1, 0, 0), seed=2)
    for _ in range(5):
        corrupted, mask = transform(image, region)
        before, after = image[mask], corrupted[mask]
        assert not torch.equal(before, after)
        assert (after[torch.argsort(before)].diff() >= 0).all()  # the intensity order is kept


def test_constant_in_painting_gives_one_constant_per_block():
    image = smooth_image()
    region = torch.zeros(SHAPE, dtype=torch.bool)
    region[..., 2:6, 2:6, 2:6] = True  # two well separated regions: a block cannot cover both
    region[..., 24:28, 24:28, 24:28] = True
    transform = RandUncertaintyCorruption(block_size=4, num_blocks=1, corruption_weights=(0, 0, 0, 1), seed=0)
    for _ in range(5):
        corrupted, mask = transform(image, region)
        for item in range(2):
            values = corrupted[item][mask[item]]
            assert values.numel() > 0
            assert torch.all(values == values[0])
            assert image[item].min() <= values[0] <= image[item].max()


def test_prob_zero_and_empty_region_leave_the_image_unchanged():
    image, region = smooth_image(), cube_region()
    corrupted, mask = RandUncertaintyCorruption(prob=0.0, seed=0)(image, region)
    assert torch.equal(corrupted, image) and not mask.any()
    corrupted, mask = RandUncertaintyCorruption(seed=0)(image, torch.zeros_like(region))
    assert torch.equal(corrupted, image) and not mask.any()


def test_corruption_works_in_2d():
    image = smooth_image((2, 1, 32, 32))
    region = torch.zeros(2, 1, 32, 32, dtype=torch.bool)
    region[..., 8:24, 8:24] = True
    corrupted, mask = RandUncertaintyCorruption(block_size=(4, 6), seed=0)(image, region)
    assert mask.any() and not (mask & ~region).any()
    assert torch.equal(corrupted[~mask], image[~mask])


def test_corruption_is_fast_for_a_batch_of_two():
    image, region = smooth_image(), cube_region()
    transform = RandUncertaintyCorruption(seed=0)
    transform(image, region)  # warm-up
    start = time.perf_counter()
    transform(image, region)
    assert time.perf_counter() - start < 1.0
