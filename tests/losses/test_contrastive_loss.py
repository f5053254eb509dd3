"""Specification of the structure-guided contrastive task: voxel sampling, gathering and the loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from scripts.engines import VoxelSamples, gather_voxels, sample_structure_voxels
from scripts.losses import StructureContrastiveLoss


def embeddings_from_directions(positive: torch.Tensor, negative: torch.Tensor, num_pos: int, num_neg: int):
    """(1, num_pos + num_neg, D) embeddings: positives first, then negatives."""
    z = torch.cat([positive.expand(num_pos, -1), negative.expand(num_neg, -1)])[None]
    is_positive = torch.tensor([True] * num_pos + [False] * num_neg)[None]
    return z, is_positive, torch.ones_like(is_positive)


# ---------------------------------------------------------------------------------------------- loss


def test_perfect_separation_gives_near_zero_loss():
    e = F.normalize(torch.randn(16), dim=0)
    z, is_positive, valid = embeddings_from_directions(e, -e, 8, 24)
    loss = StructureContrastiveLoss(temperature=0.07)(z, is_positive, valid)
    assert loss.ndim == 0
    assert 0.0 <= loss.item() < 1e-3


def test_swapped_embeddings_give_large_loss():
    # positives mutually orthogonal, negatives all along their common direction
    num_pos, num_neg = 4, 12
    positives = torch.eye(num_pos, 8)
    negative = F.normalize(positives.sum(0), dim=0)
    z = torch.cat([positives, negative.expand(num_neg, -1)])[None]
    is_positive = torch.tensor([True] * num_pos + [False] * num_neg)[None]
    loss = StructureContrastiveLoss(temperature=0.07)(z, is_positive, torch.ones_like(is_positive))
    # every pair: s_ip = 0, s_in = 0.5 -> l = log(1 + num_neg * exp(0.5 / 0.07))
    assert loss.item() == pytest.approx(math.log(1 + num_neg * math.exp(0.5 / 0.07)), rel=1e-5)
    assert loss.item() > 2


def test_exact_value_against_reference_formula():
    torch.manual_seed(0)
    z = F.normalize(torch.randn(1, 7, 5), dim=-1)
    is_positive = torch.tensor([[True, True, True, False, False, False, False]])
    valid = torch.tensor([[True, True, True, True, True, False, True]])  # slot 5 is ignored
    t = 0.1
    s = (z[0] @ z[0].T) / t
    positives, negatives = [0, 1, 2], [3, 4, 6]
    pair_losses = [
        -(s[i, p] - torch.logsumexp(torch.stack([s[i, p], *[s[i, n] for n in negatives]]), 0))
        for i in positives
        for p in positives
        if i != p
    ]
    expected = torch.stack(pair_losses).mean()
    loss = StructureContrastiveLoss(temperature=t)(z, is_positive, valid)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_items_without_pairs_or_negatives_are_skipped_and_counted():
    e = F.normalize(torch.randn(8), dim=0)
    z_good, is_pos, valid = embeddings_from_directions(e, e, 4, 4)  # a bad (high-loss) item
    z = z_good.repeat(3, 1, 1)
    is_positive = is_pos.repeat(3, 1)
    valid = valid.repeat(3, 1)
    valid[1, 1:4] = False  # item 1: a single valid positive
    valid[2, 4:] = False  # item 2: no valid negative
    loss_fn = StructureContrastiveLoss()
    loss, skipped = loss_fn(z, is_positive, valid, return_num_skipped=True)
    assert skipped.item() == 2
    reference, skipped = loss_fn(z[:1], is_positive[:1], valid[:1], return_num_skipped=True)  # mean over the kept item
    assert skipped.item() == 0
    assert torch.equal(loss_fn(z, is_positive, valid), loss)
    assert loss.item() == pytest.approx(reference.item())


def test_all_skipped_gives_zero_with_graph():
    z = F.normalize(torch.randn(2, 6, 4), dim=-1).requires_grad_()
    is_positive = torch.tensor([[True, False, False, False, False, False]] * 2)  # one positive each
    loss_fn = StructureContrastiveLoss()
    loss, skipped = loss_fn(z, is_positive, torch.ones_like(is_positive), return_num_skipped=True)
    assert skipped.item() == 2
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    assert torch.equal(z.grad, torch.zeros_like(z))


def test_gradient_flows_to_embeddings():
    torch.manual_seed(0)
    raw = torch.randn(2, 10, 8, requires_grad=True)
    is_positive = torch.tensor([[True] * 4 + [False] * 6] * 2)
    valid = torch.ones_like(is_positive)
    valid[1, 5:] = False  # invalid slots receive no gradient
    loss = StructureContrastiveLoss()(F.normalize(raw, dim=-1), is_positive, valid)
    loss.backward()
    assert torch.isfinite(raw.grad).all()
    assert raw.grad[0].abs().sum() > 0
    assert raw.grad[1, :5].abs().sum() > 0
    assert torch.equal(raw.grad[1, 5:], torch.zeros_like(raw.grad[1, 5:]))


# ------------------------------------------------------------------------------------------- sampler


def structure_masks(batch: int = 2, shape=(16, 48, 12)):
    """A line skeleton along axis 1 inside a slab label, a ring around it and a mispredicted blob."""
    label = torch.zeros(batch, 1, *shape)
    label[:, :, 6:10, 4:44, 4:8] = 1
    skeleton = torch.zeros_like(label)
    skeleton[:, :, 8, 5:43, 6] = 1
    ring = torch.zeros_like(label)
    ring[:, :, 3:13, 1:47, 2:10] = 1
    ring[label > 0] = 0
    prediction = label.clone()
    prediction[:, :, 0:2, 0:4, 0:2] = 1  # hard negatives, outside the ring
    return skeleton, ring, label, prediction


def test_sample_shapes_and_sets():
    skeleton, ring, label, prediction = structure_masks()
    samples = sample_structure_voxels(
        skeleton, ring, label, prediction, num_positive=16, num_negative=40, hard_negative_ratio=0.25
    )
    assert isinstance(samples, VoxelSamples)
    for tensor in samples:
        assert tensor.shape == (2, 56)
    assert samples.indices.dtype == torch.long
    assert samples.is_positive[:, :16].all() and not samples.is_positive[:, 16:].any()
    assert samples.valid.all()

    def on(mask: torch.Tensor) -> torch.Tensor:  # (B, N): whether each sampled voxel lies in ``mask``
        return mask.flatten(1).gather(1, samples.indices) > 0

    hard = (prediction > 0) & (label == 0)
    assert on(skeleton)[samples.is_positive].all()
    negatives_ok = on(ring) | on(hard)
    assert negatives_ok[~samples.is_positive].all()
    assert (on(hard) & ~samples.is_positive).sum(1).tolist() == [10, 10]  # round(0.25 * 40)
    for item in samples.indices:  # drawn without replacement
        assert item.unique().numel() == item.numel()


def test_hard_negatives_fill_a_short_ring_and_vice_versa():
    skeleton, ring, label, prediction = structure_masks(batch=2)
    ring = torch.zeros_like(ring)
    ring[0, 0, 3, 1, 2:5] = 1  # item 0: three ring voxels; both items: 16 hard-negative voxels
    samples = sample_structure_voxels(skeleton, ring, label, prediction, num_positive=4, num_negative=40)
    negative_valid = samples.valid[:, 4:]
    assert negative_valid.sum(1).tolist() == [19, 16]  # 3 ring + 16 hard; item 1: hard only
    prediction = label.clone()  # no hard negatives: the ring fills every slot
    _, ring_full, _, _ = structure_masks(batch=2)
    samples = sample_structure_voxels(skeleton, ring_full, label, prediction, num_positive=4, num_negative=40)
    assert samples.valid.all()


def test_valid_is_false_for_empty_sets_and_label_fallback():
    skeleton, ring, label, prediction = structure_masks(batch=3)
    skeleton[1] = 0  # item 1: label but no skeleton in the crop -> label voxels
    skeleton[2], label[2], ring[2], prediction[2] = 0, 0, 0, 0  # item 2: nothing at all
    samples = sample_structure_voxels(skeleton, ring, label, prediction, num_positive=8, num_negative=8)
    assert samples.valid[0].all()
    assert samples.valid[1].all()
    assert (label[1].flatten()[samples.indices[1, :8]] > 0).all()
    assert not samples.valid[2].any()
    # more slots than voxels: the extra slots are invalid
    samples = sample_structure_voxels(skeleton, ring, label, prediction, num_positive=100, num_negative=8)
    assert samples.valid[0, :100].sum() == 38  # skeleton voxels of item 0
    assert samples.indices.shape == (3, 108)


def test_positives_cover_the_skeleton_span():
    skeleton, ring, label, prediction = structure_masks(batch=1)  # a 38-voxel skeleton along axis 1
    for seed in range(10):
        generator = torch.Generator().manual_seed(seed)
        samples = sample_structure_voxels(
            skeleton, ring, label, prediction, num_positive=32, num_negative=8, generator=generator
        )
        y = (samples.indices[0, :32] // 12) % 48  # coordinate along the skeleton axis
        assert (y.max() - y.min() + 1).item() >= 0.8 * 38


def test_sampler_is_reproducible_with_a_seeded_generator():
    masks = structure_masks()
    first = sample_structure_voxels(*masks, generator=torch.Generator().manual_seed(7))
    second = sample_structure_voxels(*masks, generator=torch.Generator().manual_seed(7))
    other = sample_structure_voxels(*masks, generator=torch.Generator().manual_seed(8))
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(first.indices, other.indices)


# -------------------------------------------------------------------------------------------- gather


def test_gather_voxels_shape_values_and_gradient():
    features = torch.arange(2 * 3 * 4 * 5 * 6, dtype=torch.float32).view(2, 3, 4, 5, 6).requires_grad_()
    indices = torch.tensor([[0, 7, 119], [5, 5, 60]])
    gathered = gather_voxels(features, indices)
    assert gathered.shape == (2, 3, 3)
    flat = features.detach().flatten(2)
    for b in range(2):
        for n in range(3):
            assert torch.equal(gathered[b, n], flat[b, :, indices[b, n]])
    gathered.sum().backward()
    grad = features.grad.flatten(2)
    assert grad[1, :, 5].tolist() == [2.0, 2.0, 2.0]  # picked twice
    assert grad.sum() == 2 * 3 * 3


def test_sampling_gathering_and_loss_end_to_end():
    skeleton, ring, label, prediction = structure_masks()
    features = torch.randn(2, 8, *label.shape[2:], requires_grad=True)
    samples = sample_structure_voxels(skeleton, ring, label, prediction, generator=torch.Generator().manual_seed(0))
    embeddings = F.normalize(gather_voxels(features, samples.indices), dim=-1)
    loss = StructureContrastiveLoss()(embeddings, samples.is_positive, samples.valid)
    loss.backward()
    assert loss.item() > 0
    touched = features.grad.abs().sum(1) > 0  # (B, *spatial)
    assert not (touched & (skeleton[:, 0] == 0) & (ring[:, 0] == 0) & (prediction[:, 0] == 0)).any()
