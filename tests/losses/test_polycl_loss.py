"""PolyCL's loss: the closed form cross_entropy([cos_ap, cos_an] / t, 0), and a gradient that reaches the encoder."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from scripts.engines.features import capture_features
from scripts.losses import PolyCLLoss
from scripts.networks import ProjectionHead, ResidualUNet


def test_the_loss_equals_the_closed_form():
    torch.manual_seed(0)
    anchor, positive, negative = torch.randn(3, 5, 8).unbind(0)
    loss = PolyCLLoss(temperature=0.2)(anchor, positive, negative)
    cos_ap = F.cosine_similarity(anchor, positive, dim=1)
    cos_an = F.cosine_similarity(anchor, negative, dim=1)
    expected = torch.stack([-(a / 0.2) + torch.logsumexp(torch.stack([a, n]) / 0.2, 0) for a, n in zip(cos_ap, cos_an)])
    assert loss.item() == pytest.approx(expected.mean().item(), rel=1e-6)
    assert loss.item() == pytest.approx(F.cross_entropy(torch.stack([cos_ap, cos_an], 1) / 0.2,
                                                        torch.zeros(5, dtype=torch.long)).item(), rel=1e-6)


def test_hand_made_embeddings():
    anchor = torch.tensor([[1.0, 0.0]])
    loss = PolyCLLoss(temperature=0.5)(anchor, torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 3.0]]))
    # cos_ap = 1, cos_an = 0: -log(e^2 / (e^2 + e^0))
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-2.0)), rel=1e-6)


def test_the_gradient_reaches_the_encoder():
    torch.manual_seed(0)
    network = ResidualUNet(spatial_dims=2, channels=(4, 8, 16), num_res_units=1)
    head = ProjectionHead(16, 8, 4)
    slices = torch.rand(6, 1, 16, 16)
    with capture_features(network, ["encoder:2"]) as captured:
        network(slices)
    anchor, positive, negative = head(captured["encoder:2"]).split(2)
    PolyCLLoss(0.1)(anchor, positive, negative).backward()
    first_conv = network.encoder[0].conv.unit0.conv.weight
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0
    assert network.segmentation_head.conv.weight.grad is None, "the decoder is not part of the contrastive loss"


def test_refusals():
    with pytest.raises(ValueError, match="temperature"):
        PolyCLLoss(0.0)
    with pytest.raises(ValueError, match="one shape"):
        PolyCLLoss()(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2, 3))
