"""The DualSSL iteration: loss terms, ramp, gradients of every self-supervised term."""

from __future__ import annotations

import pytest
import torch
from monai.engines import SupervisedTrainer
from monai.losses import DiceCELoss

from scripts.engines import DualSSLTrainer, RandUncertaintyCorruption, loss_terms
from scripts.engines.optimization import accumulation_schedule
from scripts.engines.random_state import LazyDeviceGenerator
from scripts.networks import DualSSLHeads, ResidualUNet


def _batch(batch_size: int = 2, size: int = 32) -> dict[str, torch.Tensor]:
    """A bright bar (the 'pancreas') in noise, with its skeleton, ring and boundary band."""
    generator = torch.Generator().manual_seed(0)
    shape = (batch_size, 1, size, size, size)
    label = torch.zeros(shape)
    label[:, :, 12:20, 12:20, 4:28] = 1
    image = 0.3 * torch.rand(shape, generator=generator) + 0.4 * label
    skeleton = torch.zeros(shape)
    skeleton[:, :, 16, 16, 5:27] = 1
    dilated = torch.nn.functional.max_pool3d(label, 9, stride=1, padding=4)
    band = torch.nn.functional.max_pool3d(label, 3, stride=1, padding=1) - (
        -torch.nn.functional.max_pool3d(-label, 3, stride=1, padding=1)
    )
    return {"image": image, "label": label, "skeleton": skeleton, "ring": dilated - label, "band": band}


class _ZeroLoss(torch.nn.Module):
    """A segmentation loss of exactly zero (still in the graph), to isolate the SSL terms."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return logits.sum() * 0.0


def _trainer(lambda_contrastive: float, lambda_restoration: float, loss=None, lr: float = 0.0, **kwargs):
    torch.manual_seed(0)
    network = ResidualUNet(channels=(8, 16, 32), num_res_units=1)
    heads = DualSSLHeads(network.feature_channels, embedding_dim=16, hidden_channels=16)
    optimizer = torch.optim.SGD(list(network.parameters()) + list(heads.parameters()), lr=lr)
    batch = _batch()
    trainer = DualSSLTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=[batch],
        network=network,
        optimizer=optimizer,
        loss_function=loss if loss is not None else DiceCELoss(to_onehot_y=True, softmax=True),
        ssl_heads=heads,
        lambda_contrastive=lambda_contrastive,
        lambda_restoration=lambda_restoration,
        **{
            "corruption": RandUncertaintyCorruption(block_size=6, num_blocks=6, seed=0),
            "num_positive": 16,
            "num_negative": 32,
            "sampling_seed": 0,
            "decollate": False,
            **kwargs,
        },
    )
    return trainer, batch


def _encoder_gradient(trainer: DualSSLTrainer) -> torch.Tensor:
    first_conv = next(p for name, p in trainer.network.named_parameters() if name.startswith("encoder.0"))
    return first_conv.grad


@pytest.mark.parametrize(
    "term, lambdas, head",
    [("loss_contrastive", (1.0, 0.0), "projection"), ("loss_restoration", (0.0, 1.0), "restoration")],
)
def test_each_ssl_term_reaches_the_encoder_and_its_head(term, lambdas, head):
    trainer, batch = _trainer(*lambdas, loss=_ZeroLoss())
    trainer.state.iteration = 1
    output = trainer._iteration(trainer, batch)
    assert output[term] > 0
    assert output["loss_segmentation"] == 0
    gradient = _encoder_gradient(trainer)
    assert gradient is not None and gradient.abs().sum() > 0, f"{term} does not reach the encoder"
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in getattr(trainer.ssl_heads, head).parameters())


def test_total_is_weighted_sum_of_terms():
    trainer, batch = _trainer(0.3, 2.0, ssl_start_iteration=1, ssl_rampup_iterations=4)
    trainer.state.iteration = 2
    out = trainer._iteration(trainer, batch)
    assert out["ssl_weight"] == pytest.approx(0.5)
    expected = out["loss_segmentation"] + 0.5 * (0.3 * out["loss_contrastive"] + 2.0 * out["loss_restoration"])
    assert float(out["loss"]) == pytest.approx(float(expected), rel=1e-5)
    assert set(loss_terms(out)) == {
        "loss",
        "loss_segmentation",
        "loss_consistency",
        "loss_contrastive",
        "loss_restoration",
        "ssl_weight",
        "contrastive_skipped",
    }


def test_ramp_schedule():
    trainer, _ = _trainer(1.0, 1.0, ssl_start_iteration=10, ssl_rampup_iterations=5)
    weights = [trainer.ssl_weight(i) for i in (1, 9, 10, 12, 14, 15, 100)]
    assert weights == pytest.approx([0.0, 0.0, 0.2, 0.6, 1.0, 1.0, 1.0])


def test_before_ssl_start_the_iteration_is_plain_supervised():
    trainer, batch = _trainer(1.0, 1.0, ssl_start_iteration=5)
    trainer.state.iteration = 1
    out = trainer._iteration(trainer, batch)
    assert out["loss_contrastive"] == 0 and out["loss_restoration"] == 0
    assert torch.equal(out["image"], batch["image"]), "the input must not be corrupted before SSL starts"
    assert float(out["loss"]) == pytest.approx(float(out["loss_segmentation"]))


def test_restoration_corrupts_only_the_uncertainty_region():
    trainer, batch = _trainer(0.0, 1.0, entropy_top_percent=0.0)
    trainer.state.iteration = 1
    out = trainer._iteration(trainer, batch)
    changed = out["image"] != batch["image"]
    assert changed.any()
    assert not (changed & (batch["band"] == 0)).any()


def test_patch_without_pancreas_is_skipped_and_counted():
    trainer, batch = _trainer(1.0, 0.0, loss=_ZeroLoss())
    for key in ("label", "skeleton", "ring", "band"):
        batch[key][1] = 0
    trainer.state.iteration = 1
    out = trainer._iteration(trainer, batch)
    assert out["contrastive_skipped"] == 1
    assert out["loss_contrastive"] > 0


def test_missing_structure_maps_are_reported():
    trainer, batch = _trainer(1.0, 0.0)
    del batch["skeleton"]
    trainer.state.iteration = 1
    with pytest.raises(KeyError, match="skeleton"):
        trainer._iteration(trainer, batch)


def test_training_steps_lower_every_loss_term():
    trainer, batch = _trainer(0.5, 1.0, lr=0.0)
    optimizer = torch.optim.Adam(list(trainer.network.parameters()) + list(trainer.ssl_heads.parameters()), lr=3e-3)
    trainer.optimizer = optimizer
    trainer.corruption.set_random_state(0)
    history = []
    for iteration in range(1, 31):
        trainer.state.iteration = iteration
        trainer.corruption.set_random_state(0)
        trainer.sampling_generator = LazyDeviceGenerator(trainer.sampling_generator.seed)
        history.append(loss_terms(trainer._iteration(trainer, batch)))
    for term in ("loss_segmentation", "loss_contrastive", "loss_restoration"):
        first = sum(h[term] for h in history[:3]) / 3
        last = sum(h[term] for h in history[-3:]) / 3
        assert last < 0.8 * first, f"{term} did not decrease: {first:.4f} -> {last:.4f}"


def test_gradient_accumulation_steps_the_optimizer_every_n_iterations():
    trainer, batch = _trainer(1.0, 1.0, lr=0.1, accumulation_steps=2)
    trainer.state.epoch_length = 4
    weights = [p.detach().clone() for p in trainer.network.parameters()]

    def changed() -> bool:
        return any(not torch.equal(w, p) for w, p in zip(weights, trainer.network.parameters()))

    trainer.state.iteration = 1
    trainer._iteration(trainer, batch)
    assert not changed(), "the first of two accumulated iterations must not step"
    trainer.state.iteration = 2
    trainer._iteration(trainer, batch)
    assert changed(), "the second accumulated iteration must step"


def test_state_dict_carries_the_ssl_generators_through_a_checkpoint():
    trainer, batch = _trainer(1.0, 1.0)
    trainer.state.iteration = 1
    trainer._iteration(trainer, batch)
    state = trainer.state_dict()
    assert {"sampling_generator", "corruption_generator", "iteration"} <= set(state)
    expected = (
        torch.rand(4, generator=trainer.sampling_generator.get(torch.device("cpu"))),
        torch.rand(4, generator=trainer.corruption.generator.get(torch.device("cpu"))),
    )
    resumed, _ = _trainer(1.0, 1.0)
    resumed.load_state_dict(state)
    restored = (
        torch.rand(4, generator=resumed.sampling_generator.get(torch.device("cpu"))),
        torch.rand(4, generator=resumed.corruption.generator.get(torch.device("cpu"))),
    )
    for a, b in zip(expected, restored):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert resumed.state.iteration == 1


@pytest.mark.parametrize("classes", [2, 3])
def test_foreground_of_logits_equals_argmax_above_background(classes):
    from scripts.engines.dual_ssl_trainer import _foreground

    logits = torch.randn(2, classes, 7, 6, 5, generator=torch.Generator().manual_seed(classes))
    assert torch.equal(_foreground(logits), logits.argmax(dim=1, keepdim=True) > 0)


@pytest.mark.parametrize("bfloat16", [False, True])
def test_entropy_pass_runs_in_bfloat16_only_when_asked(bfloat16):
    trainer, batch = _trainer(0.0, 1.0, entropy_bfloat16=bfloat16)
    seen = []
    first_conv = next(m for m in trainer.network.modules() if isinstance(m, torch.nn.Conv3d))
    first_conv.register_forward_pre_hook(lambda module, args: seen.append(torch.is_autocast_enabled("cpu")))
    trainer.state.iteration = 1
    output = trainer._iteration(trainer, batch)
    assert seen == [bfloat16, False], "entropy pass first (bfloat16 if asked), then the training pass in float32"
    assert torch.isfinite(output["loss"]) and output["loss_restoration"] > 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lambda_contrastive": -1.0}, "non-negative"),
        ({"num_positive": 0}, "num_positive"),
        ({"hard_negative_ratio": 1.5}, "hard_negative_ratio"),
        ({"entropy_top_percent": 101.0}, "entropy_top_percent"),
        ({"ssl_start_iteration": 0}, "ssl_start_iteration"),
        ({"compile": True}, "compile=True"),
    ],
)
def test_bad_arguments_are_refused_at_construction(kwargs, message):
    lambdas = {"lambda_contrastive": kwargs.pop("lambda_contrastive", 1.0), "lambda_restoration": 1.0}
    with pytest.raises(ValueError, match=message):
        _trainer(**lambdas, **kwargs)


def test_a_contrastive_loss_without_a_skipped_count_is_refused():
    with pytest.raises(TypeError, match="return_num_skipped"):
        _trainer(1.0, 0.0, contrastive_loss=torch.nn.MSELoss())


def test_a_network_without_segmentation_head_is_refused_when_ssl_is_on():
    trainer, _ = _trainer(0.0, 0.0)
    with pytest.raises(AttributeError, match="segmentation_head"):
        DualSSLTrainer(
            device=torch.device("cpu"), max_epochs=1, train_data_loader=[], network=torch.nn.Conv3d(1, 2, 1),
            optimizer=trainer.optimizer, loss_function=DiceCELoss(), ssl_heads=trainer.ssl_heads,
        )


@pytest.mark.parametrize("epoch_length", [None, 3, 5])
def test_accumulation_schedule_is_that_of_supervised_trainer(epoch_length):
    """zero_grad/step of every iteration against the counts of MONAI's SupervisedTrainer on the same loop."""
    calls = []

    class Recorder(torch.optim.SGD):
        def zero_grad(self, set_to_none=True):
            calls.append(("zero", trainer.state.iteration))
            super().zero_grad(set_to_none)

        def step(self, closure=None):
            calls.append(("step", trainer.state.iteration))
            return super().step(closure)

    network = torch.nn.Conv3d(1, 2, 1)
    length = epoch_length or 4
    data = [{"image": torch.rand(1, 1, 4, 4, 4), "label": torch.zeros(1, 1, 4, 4, 4)}] * length
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=2, train_data_loader=data, network=network,
        optimizer=Recorder(network.parameters(), lr=0.1), loss_function=DiceCELoss(to_onehot_y=True, softmax=True),
        accumulation_steps=2, epoch_length=epoch_length, decollate=False,
    )
    trainer.run()
    expected = []
    for iteration in range(1, trainer.state.iteration + 1):
        zero, step = accumulation_schedule(iteration, epoch_length or length, 2)
        expected += [("zero", iteration)] * zero + [("step", iteration)] * step
    assert calls == expected


def test_without_ssl_terms_the_weights_equal_supervised_trainer_ones():
    """Same data, initialisation and accumulation: DualSSLTrainer with both lambdas 0 is SupervisedTrainer."""
    results = []
    for trainer_class in (SupervisedTrainer, DualSSLTrainer):
        torch.manual_seed(0)
        network = ResidualUNet(channels=(8, 16, 32), num_res_units=1)
        extra = {"ssl_heads": DualSSLHeads(8, 16, 16), "lambda_contrastive": 0.0, "lambda_restoration": 0.0}
        trainer = trainer_class(
            device=torch.device("cpu"), max_epochs=1, train_data_loader=[_batch()] * 3, network=network,
            optimizer=torch.optim.SGD(network.parameters(), lr=0.1), accumulation_steps=2, decollate=False,
            loss_function=DiceCELoss(to_onehot_y=True, softmax=True),
            **(extra if trainer_class is DualSSLTrainer else {}),
        )
        trainer.run()
        results.append([p.detach().clone() for p in network.parameters()])
    for supervised, dual in zip(*results):
        torch.testing.assert_close(dual, supervised, rtol=0, atol=0)


def test_the_iteration_runs_inside_distributed_data_parallel(tmp_path):
    """The decoder features come through DDP's own forward: same loss terms as the plain network."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        plain, batch = _trainer(1.0, 1.0)
        plain.state.iteration = 1
        expected = plain._iteration(plain, batch)
        wrapped, batch = _trainer(1.0, 1.0)
        wrapped.network = torch.nn.parallel.DistributedDataParallel(wrapped.network)
        wrapped.state.iteration = 1
        output = wrapped._iteration(wrapped, batch)
    finally:
        dist.destroy_process_group()
    for term in ("loss_segmentation", "loss_contrastive", "loss_restoration"):
        assert float(output[term]) == pytest.approx(float(expected[term]), rel=1e-5), term
