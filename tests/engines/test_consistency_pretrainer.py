"""BYOL-style consistency pretraining (PGL local and the global baseline): gradients, EMA target, collapse monitor."""

from __future__ import annotations

import pytest
import torch
from monai.data import DataLoader, MetaTensor

from scripts.engines import ConsistencyPretrainer, frozen_copy
from scripts.losses import normalised_feature_std
from scripts.networks import ConsistencyHeads, ResidualUNet
from scripts.transforms import RandPairedViewsd

LOCATIONS = ["decoder:0", "encoder:2"]


def _loader(items: int = 2, seed: int = 0) -> DataLoader:
    torch.manual_seed(seed)
    transform = RandPairedViewsd("image", view_size=(16, 16, 16), scale_range=(0.9, 1.1), max_shift=0.2)
    transform.set_random_state(seed)
    data = [transform({"image": MetaTensor(torch.rand(1, 24, 24, 24), affine=torch.eye(4))}) for _ in range(items)]
    return DataLoader(data, batch_size=items, shuffle=False)


def _trainer_kwargs(network: ResidualUNet | None = None) -> dict:
    torch.manual_seed(0)
    network = ResidualUNet(channels=(4, 8, 16), num_res_units=1) if network is None else network
    heads = ConsistencyHeads([network.channels[0], network.channels[2]], hidden_channels=8, embedding_dim=8)
    optimizer = torch.optim.SGD(list(network.parameters()) + list(heads.parameters()), lr=0.1)
    return dict(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=_loader(),
        network=network,
        optimizer=optimizer,
        heads=heads,
        target_network=frozen_copy(network),
        target_heads=frozen_copy(heads),
        feature_locations=LOCATIONS,
        min_overlap_points=1,
    )


def _trainer(
    mode: str = "local", momentum: float = 0.9, network: ResidualUNet | None = None, points_per_pair: int | None = 4096
) -> ConsistencyPretrainer:
    return ConsistencyPretrainer(
        mode=mode, target_momentum=momentum, points_per_pair=points_per_pair, sampling_seed=0, **_trainer_kwargs(network)
    )


@pytest.mark.parametrize("mode", ["local", "global"])
def test_the_loss_has_a_gradient_reaching_the_encoder_and_the_target_follows_by_ema(mode):
    trainer = _trainer(mode)
    before_online = {k: v.clone() for k, v in trainer.network.state_dict().items()}
    torch.testing.assert_close(trainer.target_network.state_dict(), trainer.network.state_dict())
    trainer.run()
    output = trainer.state.output
    assert 0 < float(output["loss"]) < 4
    assert {"loss_decoder0", "loss_encoder2", "feature_std"} <= set(output)
    for name in ("encoder.0.conv.unit0.conv.weight", "encoder.2.conv.unit0.conv.weight", "decoder.1.fuse.conv.unit0.conv.weight"):
        grad = dict(trainer.network.named_parameters())[name].grad
        assert grad is not None and float(grad.abs().sum()) > 0, f"no gradient reaches {name}"
    assert all(p.grad is None for p in trainer.target_network.parameters())
    # one step with momentum 0.9: the target moved a tenth of the way to the new online weights
    name = "encoder.0.conv.unit0.conv.weight"
    online, target, start = trainer.network.state_dict()[name], trainer.target_network.state_dict()[name], before_online[name]
    torch.testing.assert_close(target, 0.9 * start + 0.1 * online, atol=1e-6, rtol=0)
    if mode == "local":
        assert 0 < output["overlap_fraction"] <= 1


def test_a_collapsed_encoder_is_reported_by_the_feature_std():
    collapsed = ResidualUNet(channels=(4, 8, 16), num_res_units=1)
    with torch.no_grad():
        for parameter in collapsed.parameters():
            parameter.zero_()
    trainer = _trainer(network=collapsed)
    trainer.run()
    assert trainer.state.output["feature_std"] == pytest.approx(0.0, abs=1e-7)
    healthy = _trainer()
    healthy.run()
    assert healthy.state.output["feature_std"] > 0.05
    assert normalised_feature_std(torch.ones(2, 8, 4, 4, 4)) == 0.0
    # C independent random channels: close to 1 / sqrt(C)
    assert normalised_feature_std(torch.randn(4, 16, 8, 8, 8)) == pytest.approx(0.25, abs=0.02)


def test_arguments_are_validated_at_construction():
    with pytest.raises(ValueError, match="mode"):
        _trainer(mode="pixel")
    with pytest.raises(ValueError, match="target_momentum"):
        _trainer(momentum=1.0)
    with pytest.raises(ValueError, match="points_per_pair"):
        ConsistencyPretrainer(points_per_pair=0, **_trainer_kwargs())
    network = ResidualUNet(channels=(4, 8, 16), num_res_units=1)
    heads = ConsistencyHeads([4, 16], hidden_channels=8, embedding_dim=8)
    kwargs = dict(device=torch.device("cpu"), max_epochs=1, train_data_loader=_loader(), network=network,
                  optimizer=torch.optim.SGD(network.parameters(), lr=0.1), heads=heads,
                  target_network=frozen_copy(network), target_heads=frozen_copy(heads))
    with pytest.raises(ValueError, match="encoder stage"):
        ConsistencyPretrainer(feature_locations=["decoder:0", "encoder:5"], **kwargs)
    with pytest.raises(ValueError, match="projectors"):
        ConsistencyPretrainer(feature_locations=["decoder:0"], **kwargs)


def test_the_sampled_local_loss_estimates_the_loss_over_the_whole_overlap_and_resumes_its_draws():
    dense = _trainer(points_per_pair=None)
    dense.run()
    sampled = _trainer(points_per_pair=512)
    sampled.run()
    # 16^3 views, overlaps of a few thousand points: 512 random points per pair give the same loss within a few %
    assert float(sampled.state.output["loss"]) == pytest.approx(float(dense.state.output["loss"]), rel=0.1)
    assert float(sampled.state.output["loss"]) != float(dense.state.output["loss"])
    state = sampled.state_dict()
    assert "sampling_generator" in state
    resumed = _trainer(points_per_pair=512)
    resumed.load_state_dict(state)
    generator = sampled.sampling_generator.get(torch.device("cpu"))
    torch.testing.assert_close(resumed.sampling_generator.get(torch.device("cpu")).get_state(), generator.get_state())
