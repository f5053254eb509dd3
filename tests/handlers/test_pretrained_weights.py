"""Fine-tuning starts from the tensors of a state dict or checkpoint that match the network, and says which."""

from __future__ import annotations

import logging

import pytest
import torch

from scripts.data.errors import InputError
from scripts.handlers import PretrainedWeightsLoader
from scripts.handlers.checkpointing import atomic_torch_save
from scripts.networks import ConsistencyHeads, ResidualUNet


def _network(out_channels: int = 2) -> ResidualUNet:
    return ResidualUNet(channels=(4, 8, 16), num_res_units=1, out_channels=out_channels)


def test_a_pretraining_checkpoint_loads_its_network_and_not_its_heads(tmp_path, caplog):
    torch.manual_seed(0)
    pretrained = _network()
    heads = ConsistencyHeads([4, 16], hidden_channels=8, embedding_dim=8)
    path = atomic_torch_save(
        {"model": pretrained.state_dict(), "heads": heads.state_dict(), "target_network": pretrained.state_dict()},
        tmp_path / "checkpoint_final.pt",
    )
    torch.manual_seed(1)
    network = _network()
    with caplog.at_level(logging.INFO):
        PretrainedWeightsLoader(path, network)(None)
    torch.testing.assert_close(network.state_dict(), pretrained.state_dict())
    assert f"pretrained weights {path}: loaded {len(pretrained.state_dict())} of the network's" in caplog.text
    assert "encoder.0.conv.unit0.conv.weight" in caplog.text and "projectors" not in caplog.text


def test_tensors_of_another_shape_are_kept_and_named(tmp_path, caplog):
    torch.manual_seed(0)
    pretrained = _network(out_channels=3)  # another number of classes: the segmentation head does not fit
    path = atomic_torch_save(pretrained.state_dict(), tmp_path / "model.pt")
    network = _network()
    head_before = network.segmentation_head.conv.weight.clone()
    with caplog.at_level(logging.INFO):
        PretrainedWeightsLoader(path, network)(None)
    torch.testing.assert_close(network.encoder[0].conv.unit0.conv.weight, pretrained.encoder[0].conv.unit0.conv.weight)
    torch.testing.assert_close(network.segmentation_head.conv.weight, head_before)
    assert "not loaded (kept as initialised): 2 (segmentation_head.conv.weight, segmentation_head.conv.bias)" in caplog.text


def test_a_checkpoint_that_matches_nothing_is_refused_naming_the_file(tmp_path):
    path = atomic_torch_save({"model": torch.nn.Linear(3, 2).state_dict()}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="none of its 2 tensors matches the network") as error:
        PretrainedWeightsLoader(path, _network())(None)
    assert str(path) in str(error.value)
    empty = atomic_torch_save({"epoch": 3}, tmp_path / "no_tensors.pt")
    with pytest.raises(InputError, match="holds no state dict of tensors"):
        PretrainedWeightsLoader(empty, _network())(None)
    with pytest.raises(InputError, match="weights file not found"):
        PretrainedWeightsLoader(tmp_path / "missing.pt", _network())(None)
