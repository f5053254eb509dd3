"""The segmentation network (network_def) and the training-only DualSSL heads."""

from __future__ import annotations

import pytest
import torch

from scripts.networks import DualSSLHeads, ResidualUNet

BUNDLE_CHANNELS = (16, 32, 64, 128, 192)


def test_bundle_network_size_keeps_model_pt_small():
    network = ResidualUNet(channels=BUNDLE_CHANNELS, num_res_units=1)
    num_parameters = sum(p.numel() for p in network.parameters())
    assert 3e6 < num_parameters <= 6e6
    assert num_parameters * 4 < 25 * 2**20


@pytest.mark.parametrize("shape", [(1, 1, 32, 32, 16), (2, 1, 64, 48, 32)])
def test_forward_shapes(shape):
    network = ResidualUNet(channels=(4, 8, 16), num_res_units=1).eval()
    x = torch.randn(shape)
    logits, features = network.forward_features(x)
    assert logits.shape == (shape[0], 2, *shape[2:])
    assert features.shape == (shape[0], network.feature_channels, *shape[2:])
    assert torch.equal(network(x), logits)


def test_rejects_single_stage():
    with pytest.raises(ValueError, match="two stages"):
        ResidualUNet(channels=(8,))


def test_torchscript_matches_eager():
    network = ResidualUNet(channels=(4, 8, 16), num_res_units=1).eval()
    scripted = torch.jit.script(network)
    x = torch.randn(1, 1, 16, 16, 16)
    torch.testing.assert_close(scripted(x), network(x))


def test_heads_shapes_and_unit_norm_embeddings():
    heads = DualSSLHeads(feature_channels=8, embedding_dim=32, hidden_channels=16)
    embeddings = heads.embed(torch.randn(2, 10, 8))
    assert embeddings.shape == (2, 10, 32)
    torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(2, 10))
    assert heads.restore(torch.randn(2, 8, 8, 8, 8)).shape == (2, 1, 8, 8, 8)


def test_heads_are_not_part_of_the_segmentation_state_dict():
    network = ResidualUNet(channels=(4, 8, 16), num_res_units=1)
    keys = set(network.state_dict())
    assert not any(k.startswith(("projection", "restoration")) for k in keys)
    reloaded = ResidualUNet(channels=(4, 8, 16), num_res_units=1)
    reloaded.load_state_dict(network.state_dict(), strict=True)
