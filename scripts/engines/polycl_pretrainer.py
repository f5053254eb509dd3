"""Contrastive pretraining of a 2D segmentation network's encoder on slice triplets (PolyCL, arXiv 2505.19208)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.utils import convert_to_tensor
from torch import nn

from scripts.engines.features import capture_features, check_feature_locations
from scripts.engines.optimization import amp_autocast, backward_and_step, start_iteration
from scripts.losses import PolyCLLoss, normalised_feature_std

__all__ = ["PolyCLPretrainer", "polycl_terms"]

TRIPLET_KEYS = ("anchor", "positive", "negative")


def polycl_terms(output: Any) -> dict[str, float]:
    """``output_transform`` for Stats/TensorBoard handlers: the loss, both mean similarities and the feature std."""
    first = output[0] if isinstance(output, Sequence) and not isinstance(output, dict) else output
    return {
        key: float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
        for key, value in first.items()
        if key in ("loss", "cos_positive", "cos_negative", "feature_std")
    }


class PolyCLPretrainer(SupervisedTrainer):
    """
    One iteration passes the anchor, positive and negative slices of the batch (``scripts.data.slice_pairs
    .SlicePairDataset``) through the 2D network together, reads the encoder features at ``feature_location``
    (by a hook: the network's own forward runs), embeds them with ``head`` (pooling and projection) and scores
    ``PolyCLLoss``: InfoNCE with cosine similarity, one positive and one negative per anchor. The decoder and the
    segmentation output are not trained here; fine-tuning loads the whole network. ``engine.state.output`` holds the
    loss, the mean anchor-positive and anchor-negative cosine similarities (``cos_positive``, ``cos_negative``) and
    the mean L2-normalised standard deviation of the embeddings (``feature_std``: 0 when collapsed).

    Args:
        head: the ``ProjectionHead`` (or a DDP wrapper), (B, C, *S) -> (B, D).
        feature_location: the encoder features the head reads (``scripts.engines.capture_features``), e.g.
            ``"encoder:4"``: the bottleneck of a five-stage ``ResidualUNet``.
        triplet_keys: the batch keys of the anchor, positive and negative slices, (B, C, X, Y) each.
        args, kwargs: ``SupervisedTrainer``'s (``loss_function`` defaults to ``PolyCLLoss()``).

    Raises:
        ValueError: ``compile=True``, or not three triplet keys.
        AttributeError, ValueError: from ``capture_features`` for a location the network does not have.
        KeyError (in an iteration): a batch without one of the triplet keys.
    """

    def __init__(
        self,
        *args: Any,
        head: nn.Module,
        feature_location: str = "encoder:4",
        triplet_keys: Sequence[str] = TRIPLET_KEYS,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("compile", False):
            raise ValueError("PolyCLPretrainer does not support compile=True.")
        if len(triplet_keys) != 3:
            raise ValueError(f"triplet_keys must name the anchor, positive and negative, got {list(triplet_keys)}.")
        check_feature_locations(kwargs.get("network", args[3] if len(args) > 3 else None), [feature_location])
        kwargs.setdefault("loss_function", PolyCLLoss())
        kwargs.setdefault("decollate", False)
        super().__init__(*args, **kwargs)
        self.head = head
        self.feature_location = feature_location
        self.triplet_keys = tuple(triplet_keys)

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        """(N, C, X, Y) slices -> (N, D) embeddings of the online network and head."""
        with capture_features(self.network, [self.feature_location]) as captured:
            self.network(inputs)
        return self.head(captured[self.feature_location])

    def _iteration(self, engine: PolyCLPretrainer, batchdata: dict[str, Any]) -> dict:  # type: ignore[override]
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        missing = [key for key in engine.triplet_keys if key not in batchdata]
        if missing:
            raise KeyError(f"PolyCL pretraining needs {missing} in every batch (scripts.data.slice_pairs).")
        device = engine.state.device
        slices = [
            convert_to_tensor(batchdata[key], track_meta=False).to(device, non_blocking=engine.non_blocking)
            for key in engine.triplet_keys
        ]
        num_items = slices[0].shape[0]
        step = start_iteration(engine, [engine.network, engine.head])
        with amp_autocast(engine):
            embeddings = engine.embed(torch.cat(slices))
            engine.state.output = {"image": slices[0]}
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            anchor, positive, negative = torch.split(embeddings, num_items)
            loss = engine.loss_function(anchor, positive, negative)
        with torch.no_grad():
            cos_ap = F.cosine_similarity(anchor.float(), positive.float(), dim=1)
            cos_an = F.cosine_similarity(anchor.float(), negative.float(), dim=1)
        engine.state.output.update(
            {
                "loss": loss,
                "cos_positive": cos_ap.mean().detach(),
                "cos_negative": cos_an.mean().detach(),
                "feature_std": normalised_feature_std(embeddings.detach()[:, :, None]),
            }
        )
        engine.fire_event(IterationEvents.LOSS_COMPLETED)
        backward_and_step(engine, loss, step)
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output
