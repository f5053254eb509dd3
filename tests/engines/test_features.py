"""Feature locations of the pretrainers' heads, checked at construction (scripts.engines.features)."""

import pytest
import torch

from scripts.engines.features import capture_features, check_feature_locations
from scripts.networks import ResidualUNet


def _network():
    return ResidualUNet(spatial_dims=3, channels=(4, 8, 16), num_res_units=1)


def test_a_location_the_network_has_passes_and_is_captured_with_its_shape():
    network = _network()
    check_feature_locations(network, ["decoder:0", "encoder:1"])
    with capture_features(network, ["decoder:0", "encoder:1"]) as captured:
        network(torch.zeros(1, 1, 16, 16, 16))
    assert captured["decoder:0"].shape[2:] == (16, 16, 16)
    assert captured["encoder:1"].shape[2:] == (8, 8, 8)


@pytest.mark.parametrize("location, match", [("encoder:5", "encoder stage"), ("middle:0", "decoder")])
def test_a_location_the_network_lacks_is_refused_before_training(location, match):
    with pytest.raises(ValueError, match=match):
        check_feature_locations(_network(), ["decoder:0", location])


def test_no_network_yet_is_nothing_to_check():
    check_feature_locations(None, ["encoder:9"])
