"""Two-subnetwork semi-supervised training: the two-stream batches, the gradients of every term, the switches."""

from __future__ import annotations

import pytest
import torch
from monai.data import DataLoader
from monai.losses import DiceCELoss
from monai.networks.nets import SegResNet

from scripts.engines import TwoNetworkSemiSupervisedTrainer, TwoStreamLoader
from scripts.networks import ResidualUNet, SoftmaxAveragedPair

SHAPE = (16, 16, 16)


def _labelled(count: int = 2) -> list[dict]:
    torch.manual_seed(1)
    items = []
    for _ in range(count):
        label = torch.zeros(1, *SHAPE)
        label[:, 4:10, 5:11, 6:12] = 1
        items.append({"image": torch.rand(1, *SHAPE) + label, "label": label})
    return items


def _unlabelled(count: int = 3, poisoned: bool = False) -> list[dict]:
    torch.manual_seed(2)
    items = [{"image": torch.rand(1, *SHAPE)} for _ in range(count)]
    if poisoned:  # a label on an unlabelled case must never be read: NaN would poison any loss it reached
        for item in items:
            item["label"] = torch.full((1, *SHAPE), float("nan"))
    return items


def _pair() -> SoftmaxAveragedPair:
    torch.manual_seed(0)
    return SoftmaxAveragedPair(
        ResidualUNet(channels=(4, 8, 16), num_res_units=1),
        SegResNet(spatial_dims=3, init_filters=8, in_channels=1, out_channels=2, blocks_down=(1, 1, 1), blocks_up=(1, 1)),
    )


def _trainer(pair=None, poisoned=False, iterations=1, **kwargs) -> TwoNetworkSemiSupervisedTrainer:
    pair = _pair() if pair is None else pair
    stream = TwoStreamLoader(DataLoader(_labelled(), batch_size=2), DataLoader(_unlabelled(poisoned=poisoned), batch_size=2))
    settings = dict(lambda_verification=0.5, lambda_pseudo=1.0, lambda_contrastive=1.0, rampup_iterations=0)
    settings.update(kwargs)
    return TwoNetworkSemiSupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=iterations,
        train_data_loader=stream,
        epoch_length=1,
        network=pair,
        optimizer=torch.optim.SGD(pair.parameters(), lr=0.0),  # lr 0: the gradients are inspected, weights kept
        loss_function=DiceCELoss(to_onehot_y=True, softmax=True, include_background=False),
        feature_modules=["segmentation_head", "conv_final"],
        **settings,
    )


def _output(trainer) -> dict:
    """The last iteration's output (decollated per item by MONAI: the loss terms are in every item)."""
    output = trainer.state.output
    return output[0] if isinstance(output, list) else output


def _gradients(trainer) -> dict[str, torch.Tensor]:
    trainer.run()
    return {n: p.grad.clone() for n, p in trainer.network.named_parameters() if p.grad is not None}


def test_the_two_stream_loader_gives_the_stated_mix_every_step_and_cycles_the_unlabelled_cases():
    stream = TwoStreamLoader(DataLoader(_labelled(4), batch_size=2), DataLoader(_unlabelled(3), batch_size=2))
    assert len(stream) == 2
    for _ in range(3):  # three epochs: 6 steps over 3 unlabelled cases in batches of 2 (the last one of 1)
        for batch in stream:
            assert batch["labelled"]["image"].shape[0] == 2 and batch["labelled"]["label"].shape[0] == 2
            assert "label" not in batch["unlabelled"] and batch["unlabelled"]["image"].shape[0] in (1, 2)
    with pytest.raises(ValueError, match="yields no batch"):
        next(iter(TwoStreamLoader([1], [])))


def test_unlabelled_labels_never_reach_a_loss():
    trainer = _trainer(poisoned=True)
    trainer.run()
    output = _output(trainer)
    for term in ("loss", "loss_supervised", "loss_verification", "loss_pseudo_label", "loss_contrastive"):
        assert torch.isfinite(torch.as_tensor(output[term])), term
    clean = _trainer()
    clean.run()
    assert float(output["loss"]) == pytest.approx(float(_output(clean)["loss"]))
    # the supervised term is the two subnetworks' CE + Dice on the labelled crops only
    pair, batch = _pair(), DataLoader(_labelled(), batch_size=2).__iter__().__next__()
    loss = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False)
    expected = sum(loss(net(batch["image"]), batch["label"]) for net in (pair.first, pair.second))
    assert float(output["loss_supervised"]) == pytest.approx(float(expected), rel=1e-5)


def test_the_contrastive_gradient_reaches_both_subnetworks_and_the_released_switch_removes_it():
    with_contrast = _gradients(_trainer(lambda_contrastive=1.0))
    without = _gradients(_trainer(lambda_contrastive=0.0))
    released = _gradients(_trainer(lambda_contrastive=1.0, contrastive_gradient=False))
    for prefix in ("first.", "second."):
        names = [n for n in with_contrast if n.startswith(prefix) and "weight" in n]
        difference = sum(float((with_contrast[n] - without[n]).abs().sum()) for n in names)
        assert difference > 1e-6, f"the contrastive term's gradient does not reach {prefix}"
        # as released (no_grad): exactly the gradients of training without the term
        assert all(torch.allclose(released[n], without[n], atol=1e-7) for n in names)


def test_the_verification_and_pseudo_label_terms_have_gradients_and_logged_fractions():
    only_verification = _gradients(_trainer(lambda_pseudo=0.0, lambda_contrastive=0.0, lambda_verification=5.0))
    supervised = _gradients(_trainer(lambda_pseudo=0.0, lambda_contrastive=0.0, lambda_verification=0.0))
    trainer = _trainer(lambda_pseudo=0.0, lambda_contrastive=0.0, lambda_verification=5.0)
    trainer.run()
    if _output(trainer)["verification_fraction"] > 0:
        assert any(not torch.allclose(only_verification[n], supervised[n]) for n in supervised)
    with_pseudo = _gradients(_trainer(lambda_contrastive=0.0, lambda_verification=0.0))
    assert any(not torch.allclose(with_pseudo[n], supervised[n]) for n in supervised)
    trainer = _trainer()
    trainer.run()
    assert 0.2 <= _output(trainer)["reliable_fraction"] <= 0.4  # 20 % of each network: between 20 and 40 %


def test_arguments_are_validated_at_construction():
    with pytest.raises(ValueError, match="confidence_threshold"):
        _trainer(confidence_threshold=0.5)
    with pytest.raises(ValueError, match="lambdas"):
        _trainer(lambda_pseudo=-1.0)
    with pytest.raises(AttributeError, match="first and second"):
        _trainer(pair=ResidualUNet(channels=(4, 8, 16)))
    with pytest.raises(KeyError, match="no submodule"):
        TwoNetworkSemiSupervisedTrainer(
            device=torch.device("cpu"), max_epochs=1, train_data_loader=[], epoch_length=1, network=_pair(),
            optimizer=torch.optim.SGD(_pair().parameters(), lr=0.1), loss_function=DiceCELoss(),
            feature_modules=["segmentation_head", "final_conv"],
        )


def test_the_averaged_pair_is_the_mean_of_the_softmax_and_scripts():
    pair = _pair().eval()
    x = torch.rand(1, 1, *SHAPE)
    with torch.no_grad():
        expected = (torch.softmax(pair.first(x), 1) + torch.softmax(pair.second(x), 1)) / 2
        torch.testing.assert_close(torch.softmax(pair(x), 1), expected, atol=1e-6, rtol=0)
        torch.testing.assert_close(torch.jit.script(pair)(x), pair(x), atol=1e-5, rtol=0)
