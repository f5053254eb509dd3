"""The terms of two-subnetwork semi-supervised training, on hand-made inputs."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from scripts.losses import PrototypeContrastiveLoss, confident_disagreement, reliable_voxels, sigmoid_rampup


def test_the_verification_mask_is_the_xor_of_the_confident_pancreas_predictions():
    a = torch.tensor([0.9, 0.9, 0.55, 0.2, 0.61, 0.59]).reshape(1, 1, 6, 1, 1)
    b = torch.tensor([0.95, 0.3, 0.9, 0.1, 0.59, 0.61]).reshape(1, 1, 6, 1, 1)
    mask = confident_disagreement(a, b, threshold=0.6)
    assert mask.flatten().tolist() == [False, True, True, False, True, True]
    with pytest.raises(ValueError, match="threshold"):
        confident_disagreement(a, b, threshold=0.4)


def test_the_entropy_filter_keeps_exactly_the_percentile_of_each_network():
    torch.manual_seed(0)
    entropy_a, entropy_b = torch.rand(2, 1, 10, 10, 10), torch.rand(2, 1, 10, 10, 10)
    reliable = reliable_voxels(entropy_a, entropy_b, percent=20.0)
    for item in range(2):
        for entropy in (entropy_a, entropy_b):
            threshold = entropy[item].flatten().kthvalue(200).values
            lowest = entropy[item] <= threshold
            assert int(lowest.sum()) == 200  # 20 % of 1000 voxels
            assert bool(reliable[item][lowest].all()), "a lowest-entropy voxel of one network is not reliable"
        union = (entropy_a[item] <= entropy_a[item].flatten().kthvalue(200).values) | (
            entropy_b[item] <= entropy_b[item].flatten().kthvalue(200).values
        )
        assert torch.equal(reliable[item], union)


def _features(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    features = torch.randn(2, 8, 6, 6, 6) + 2.0  # all prototypes start close together
    pseudo_label = torch.zeros(2, 1, 6, 6, 6, dtype=torch.bool)
    pseudo_label[:, :, :3] = True
    reliable = torch.rand(2, 1, 6, 6, 6) < 0.5
    return features, pseudo_label, reliable


def _prototype_cosine(features, pseudo_label, reliable) -> torch.Tensor:
    prototypes = PrototypeContrastiveLoss.prototypes(features, pseudo_label, reliable)
    return (prototypes[:, 0] * prototypes[:, 1]).sum(dim=1)


def test_the_contrastive_term_has_a_gradient_and_pushes_the_prototypes_apart():
    features, pseudo_label, reliable = _features()
    features.requires_grad_(True)
    loss_function = PrototypeContrastiveLoss(temperature=0.1, margin=0.0)
    before = _prototype_cosine(features.detach(), pseudo_label, reliable)
    assert (before > 0.5).all()
    optimizer = torch.optim.Adam([features], lr=0.1)
    for step in range(20):
        optimizer.zero_grad()
        loss = loss_function(features, pseudo_label, reliable)
        loss.backward()
        assert features.grad is not None and float(features.grad.abs().sum()) > 0
        if step == 0:  # reliable voxels get the separation's gradient (through the prototypes), unreliable the pull's
            assert float(features.grad[reliable.expand_as(features)].abs().sum()) > 0
            assert float(features.grad[~reliable.expand_as(features)].abs().sum()) > 0
        optimizer.step()
    after = _prototype_cosine(features.detach(), pseudo_label, reliable)
    assert (after < before - 0.3).all(), f"prototype cosine {before.tolist()} -> {after.tolist()}"


def test_unreliable_voxels_are_pulled_to_the_prototype_of_their_class():
    features, pseudo_label, reliable = _features(1)
    features.requires_grad_(True)
    loss = PrototypeContrastiveLoss(temperature=0.1, margin=1.0)  # margin 1: no separation term, the pull alone
    optimizer = torch.optim.Adam([features], lr=0.1)
    prototypes = PrototypeContrastiveLoss.prototypes(features.detach(), pseudo_label, reliable)  # fixed: detached
    pulled = (~reliable[:, 0]) & pseudo_label[:, 0]

    def preference() -> torch.Tensor:
        """Mean over unreliable pancreas voxels of cos(voxel, pancreas prototype) - cos(voxel, background one)."""
        normalised = F.normalize(features.detach(), dim=1)
        cos = torch.einsum("bkc,bcxyz->bkxyz", prototypes, normalised)
        return (cos[:, 1] - cos[:, 0])[pulled].mean()

    start = preference()
    for _ in range(10):
        optimizer.zero_grad()
        loss(features, pseudo_label, reliable).backward()
        optimizer.step()
    assert preference() > start + 0.02


def test_an_item_without_both_prototypes_contributes_a_connected_zero():
    features = torch.randn(1, 4, 3, 3, 3, requires_grad=True)
    loss = PrototypeContrastiveLoss()(features, torch.zeros(1, 1, 3, 3, 3), torch.ones(1, 1, 3, 3, 3, dtype=torch.bool))
    assert float(loss) == 0.0 and loss.requires_grad


def test_the_ramp_is_sigmoid_shaped():
    assert sigmoid_rampup(0, 100) == pytest.approx(torch.exp(torch.tensor(-5.0)).item())
    assert sigmoid_rampup(50, 100) == pytest.approx(torch.exp(torch.tensor(-1.25)).item())
    assert sigmoid_rampup(100, 100) == 1.0 and sigmoid_rampup(3, 0) == 1.0
