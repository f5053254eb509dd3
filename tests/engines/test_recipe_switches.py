"""The DualSSL recipe switches: appearance views (GIN), clean-patch segmentation, feature stages of the heads."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DiceCELoss

from scripts.engines import DualSSLTrainer, RandGlobalIntensityNetwork, RandUncertaintyCorruption, gather_voxels
from scripts.engines.features import capture_stages
from scripts.networks import DualSSLHeads, ResidualUNet
from tests.engines.test_dual_ssl_trainer import _batch


def _trainer(contrastive_stage: int = 0, restoration_stage: int = 0, lambdas=(1.0, 1.0), **kwargs):
    torch.manual_seed(0)
    network = ResidualUNet(channels=(8, 16, 32), num_res_units=1)
    heads = DualSSLHeads(
        network.stage_channels(contrastive_stage),
        embedding_dim=16,
        hidden_channels=16,
        restoration_channels=network.stage_channels(restoration_stage),
        restoration_scale=2**restoration_stage,
    )
    optimizer = torch.optim.SGD(list(network.parameters()) + list(heads.parameters()), lr=0.0)
    trainer = DualSSLTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=[_batch()],
        network=network,
        optimizer=optimizer,
        loss_function=DiceCELoss(to_onehot_y=True, softmax=True),
        ssl_heads=heads,
        lambda_contrastive=lambdas[0],
        lambda_restoration=lambdas[1],
        corruption=RandUncertaintyCorruption(block_size=6, num_blocks=6, seed=0),
        num_positive=16,
        num_negative=32,
        contrastive_stage=contrastive_stage,
        restoration_stage=restoration_stage,
        sampling_seed=0,
        decollate=False,
        **kwargs,
    )
    trainer.state.iteration = 1
    return trainer


def test_gin_changes_appearance_keeps_shape_norm_and_is_reproducible():
    image = torch.rand(3, 1, 16, 16, 16)
    first = RandGlobalIntensityNetwork(seed=0)(image)
    again = RandGlobalIntensityNetwork(seed=0)(image)
    assert first.shape == image.shape and first.dtype == image.dtype
    assert torch.equal(first, again)
    assert not torch.allclose(first, image, atol=1e-3)
    norms = torch.linalg.vector_norm(first.flatten(1), dim=1)
    assert torch.allclose(norms, torch.linalg.vector_norm(image.flatten(1), dim=1), rtol=1e-4)
    # one random network per batch item: two identical items get different appearances
    twins = RandGlobalIntensityNetwork(seed=1)(image[:1].repeat(2, 1, 1, 1, 1))
    assert not torch.allclose(twins[0], twins[1], atol=1e-3)


@pytest.mark.parametrize("kwargs", [{"num_layers": 0}, {"hidden_channels": 0}, {"kernel_sizes": [2]}, {"kernel_sizes": []}])
def test_gin_refuses_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        RandGlobalIntensityNetwork(**kwargs)


def test_gather_voxels_on_a_coarser_stage_takes_the_covering_voxel():
    features = torch.arange(2 * 3 * 4 * 4 * 4, dtype=torch.float).reshape(2, 3, 4, 4, 4)
    fine = (8, 8, 8)
    coordinates = torch.tensor([[0, 0, 0], [7, 7, 7], [3, 5, 6]])
    flat = torch.tensor([int(z * 64 + y * 8 + x) for z, y, x in coordinates.tolist()])
    picked = gather_voxels(features, flat[None].repeat(2, 1), fine)
    assert picked.shape == (2, 3, 3)
    for slot, (z, y, x) in enumerate(coordinates.tolist()):
        assert torch.equal(picked[1, slot], features[1, :, z // 2, y // 2, x // 2])


def test_feature_stages_have_the_documented_shape():
    network = ResidualUNet(channels=(8, 16, 32, 64), num_res_units=1)
    with capture_stages(network, (0, 1, 3)) as captured:
        network(torch.rand(1, 1, 32, 32, 16))
    assert captured[0].shape == (1, 8, 32, 32, 16)
    assert captured[1].shape == (1, 16, 16, 16, 8)
    assert captured[3].shape == (1, 64, 4, 4, 2)  # the bottleneck
    with pytest.raises(ValueError, match="stage"):
        network.feature_stage(4)


def test_appearance_views_add_consistency_and_contrast_both_views():
    trainer = _trainer(appearance_augmentation=RandGlobalIntensityNetwork(seed=0), lambda_consistency=1.0)
    output = trainer._iteration(trainer, _batch())
    assert output["loss_consistency"] > 0
    assert output["loss_contrastive"] > 0 and output["loss_restoration"] > 0
    assert output["pred"].shape == (2, 2, 32, 32, 32)  # the first view's prediction
    expected = output["loss_segmentation"] + output["loss_consistency"] + output["loss_contrastive"] + output[
        "loss_restoration"
    ]
    assert float(output["loss"]) == pytest.approx(float(expected), rel=1e-5)


def test_consistency_needs_appearance_views():
    with pytest.raises(ValueError, match="appearance_augmentation"):
        _trainer(lambda_consistency=1.0)


def test_clean_segmentation_runs_no_extra_no_grad_pass_and_restores_a_corrupted_copy():
    trainer = _trainer(segment_corrupted=False, entropy_top_percent=5.0)
    calls = []
    trainer.network.register_forward_hook(lambda m, a, o: calls.append((torch.is_grad_enabled(), a[0].clone())))
    batch = _batch()
    output = trainer._iteration(trainer, batch)
    assert [grad for grad, _ in calls] == [True, True]  # clean pass, then the corrupted copy; no no-grad pass
    assert torch.equal(calls[0][1], batch["image"])  # the segmented patch is the clean one
    assert not torch.equal(calls[1][1], batch["image"])
    assert output["loss_restoration"] > 0


@pytest.mark.parametrize("contrastive_stage, restoration_stage", [(1, 1), (2, 1)])
def test_heads_on_coarser_stages_get_gradients(contrastive_stage, restoration_stage):
    trainer = _trainer(contrastive_stage, restoration_stage)
    trainer.optimizer.zero_grad()
    output = trainer._iteration(trainer, _batch())
    assert output["loss_contrastive"] > 0 and output["loss_restoration"] > 0
    for head in (trainer.ssl_heads.projection, trainer.ssl_heads.restoration):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    stage = trainer.network.feature_stage(contrastive_stage)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in stage.parameters() if p.ndim > 1)


def test_a_stage_the_network_lacks_is_refused_at_construction():
    with pytest.raises(ValueError, match="stage"):
        _trainer(contrastive_stage=5)


def test_appearance_generator_state_travels_with_the_trainer_state():
    trainer = _trainer(appearance_augmentation=RandGlobalIntensityNetwork(seed=3), lambda_consistency=1.0)
    trainer.appearance_augmentation(torch.rand(1, 1, 8, 8, 8))
    state = trainer.state_dict()
    expected = trainer.appearance_augmentation(torch.rand(1, 1, 8, 8, 8) * 0 + 0.5)
    other = _trainer(appearance_augmentation=RandGlobalIntensityNetwork(seed=99), lambda_consistency=1.0)
    other.load_state_dict(state)
    assert torch.equal(other.appearance_augmentation(torch.full((1, 1, 8, 8, 8), 0.5)), expected)
