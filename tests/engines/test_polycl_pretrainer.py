"""PolyCLPretrainer: the loss of the batch's triplets on the encoder's pooled features, what it trains and logs."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Events
from monai.engines.utils import IterationEvents
from torch.utils.data import DataLoader

from scripts.data.slice_pairs import SliceBank, SlicePairDataset
from scripts.engines import PolyCLPretrainer, polycl_terms
from scripts.losses import PolyCLLoss
from scripts.networks import ProjectionHead, ResidualUNet


def _engine(strategy="S", epochs=4, seed=0):
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    # two scans of 16 x 16 slices: scan 0 dark with a bright organ square in slices 2..5, scan 1 brighter
    scans = []
    for scan in range(2):
        image = torch.rand(1, 16, 16, 8, generator=generator) * 0.2 + 0.4 * scan
        label = torch.zeros(1, 16, 16, 8)
        label[0, 4:10, 4:10, 2:6] = 1
        image[label > 0] += 0.5
        scans.append({"image": image, "label": label})
    dataset = SlicePairDataset(SliceBank(scans), strategy, seed=seed)
    network = ResidualUNet(spatial_dims=2, channels=(4, 8, 16), num_res_units=1)
    head = ProjectionHead(16, 16, 8)
    optimizer = torch.optim.AdamW(list(network.parameters()) + list(head.parameters()), lr=0.01)
    engine = PolyCLPretrainer(
        device=torch.device("cpu"),
        max_epochs=epochs,
        train_data_loader=DataLoader(dataset, batch_size=8, shuffle=True),
        network=network,
        optimizer=optimizer,
        head=head,
        feature_location="encoder:2",
        loss_function=PolyCLLoss(0.1),
    )
    return engine, network, head


def test_an_iteration_trains_the_encoder_and_head_not_the_segmentation_head():
    engine, network, head = _engine(epochs=1)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    head_before = [p.clone() for p in head.parameters()]
    losses = []
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(polycl_terms(e.state.output)))
    engine.run()
    assert losses and set(losses[0]) == {"loss", "cos_positive", "cos_negative", "feature_std"}
    after = network.state_dict()
    assert not torch.equal(before["encoder.0.conv.unit0.conv.weight"], after["encoder.0.conv.unit0.conv.weight"])
    assert torch.equal(before["segmentation_head.conv.weight"], after["segmentation_head.conv.weight"])
    assert any(not torch.equal(a, b) for a, b in zip(head_before, head.parameters()))


def test_the_logged_loss_is_the_closed_form_of_the_batch_embeddings():
    engine, network, head = _engine(epochs=1)
    seen = {}

    def record(e):
        seen["loss"] = float(e.state.output["loss"])

    batches = []
    engine.add_event_handler(Events.ITERATION_STARTED, lambda e: batches.append(e.state.batch))
    engine.add_event_handler(IterationEvents.FORWARD_COMPLETED, lambda e: seen.setdefault("state", {
        "network": {k: v.clone() for k, v in network.state_dict().items()},
        "head": {k: v.clone() for k, v in head.state_dict().items()}}))
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: (record(e), e.terminate()))
    engine.run()
    network.load_state_dict(seen["state"]["network"])
    head.load_state_dict(seen["state"]["head"])
    batch = batches[0]
    embeddings = engine.embed(torch.cat([batch["anchor"], batch["positive"], batch["negative"]]))
    a, p, n = embeddings.split(len(batch["anchor"]))
    logits = torch.stack([torch.cosine_similarity(a, p), torch.cosine_similarity(a, n)], 1) / 0.1
    expected = torch.nn.functional.cross_entropy(logits, torch.zeros(len(a), dtype=torch.long))
    assert seen["loss"] == pytest.approx(float(expected), rel=1e-4)


def test_the_loss_falls_over_a_few_epochs():
    engine, _, _ = _engine("M", epochs=6)
    losses = []
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(float(e.state.output["loss"])))
    engine.run()
    assert sum(losses[-2:]) / 2 < 0.7 * sum(losses[:2]) / 2


def test_a_batch_without_the_triplet_is_refused():
    engine, _, _ = _engine(epochs=1)
    with pytest.raises(KeyError, match="positive"):
        engine._iteration(engine, {"anchor": torch.zeros(1, 1, 16, 16), "negative": torch.zeros(1, 1, 16, 16)})
