"""Semi-supervised training of two different subnetworks on labelled and unlabelled CT in every step."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.utils import convert_to_tensor
from monai.utils.enums import CommonKeys as Keys
from torch.nn import functional as F

from scripts.engines.features import capture_inputs, unwrap
from scripts.engines.optimization import amp_autocast, backward_and_step, start_iteration
from scripts.losses import (
    PrototypeContrastiveLoss,
    confident_disagreement,
    masked_mean,
    reliable_voxels,
    sigmoid_rampup,
)

__all__ = ["SEMI_SUPERVISED_TERMS", "TwoNetworkSemiSupervisedTrainer", "TwoStreamLoader", "semi_supervised_terms"]

SEMI_SUPERVISED_TERMS = (
    "loss",
    "loss_supervised",
    "loss_verification",
    "loss_pseudo_label",
    "loss_contrastive",
    "unsupervised_weight",
    "verification_fraction",
    "reliable_fraction",
)


def semi_supervised_terms(output: Any) -> dict[str, float]:
    """``output_transform`` for Stats/TensorBoard handlers: every loss term and weight of the iteration, by name."""
    first = output[0] if isinstance(output, Sequence) and not isinstance(output, dict) else output
    return {key: float(torch.as_tensor(first[key]).detach()) for key in SEMI_SUPERVISED_TERMS if key in first}


class TwoStreamLoader:
    """
    Each step, one batch of ``labelled`` and the next batch of ``unlabelled`` (started again whenever it runs out,
    so its shuffling goes on): ``{labelled_key: batch, unlabelled_key: batch}``. One epoch is one pass over
    ``labelled``. With ``unlabelled`` None, the unlabelled batch is None (supervised training on the same path).

    Raises:
        ValueError: when ``unlabelled`` yields no batch.
    """

    def __init__(
        self,
        labelled: Iterable,
        unlabelled: Iterable | None,
        labelled_key: str = "labelled",
        unlabelled_key: str = "unlabelled",
    ) -> None:
        self.labelled, self.unlabelled = labelled, unlabelled
        self.labelled_key, self.unlabelled_key = labelled_key, unlabelled_key
        self._unlabelled_iterator: Iterator | None = None

    def __len__(self) -> int:
        return len(self.labelled)  # type: ignore[arg-type]

    def _next_unlabelled(self) -> Any:
        if self.unlabelled is None:
            return None
        for _ in range(2):
            if self._unlabelled_iterator is None:
                self._unlabelled_iterator = iter(self.unlabelled)
            try:
                return next(self._unlabelled_iterator)
            except StopIteration:
                self._unlabelled_iterator = None
        raise ValueError("the unlabelled data loader yields no batch: give it at least one case.")

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self.labelled:
            yield {self.labelled_key: batch, self.unlabelled_key: self._next_unlabelled()}


def _entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """(B, K, *S) probabilities -> (B, 1, *S) entropy in nats."""
    return -(probabilities * torch.log(probabilities.clamp_min(1e-12))).sum(dim=1, keepdim=True)


class TwoNetworkSemiSupervisedTrainer(SupervisedTrainer):
    """
    Two different subnetworks (``network.first``, ``network.second`` of a ``scripts.networks.SoftmaxAveragedPair``)
    see the same labelled and unlabelled crops every step (Karimijafarbigloo et al., arXiv 2311.12617). The loss is

    ``supervised + lambda_verification * verification + w(t) * (lambda_pseudo * pseudo + lambda_contrastive * contrastive)``

    - supervised: ``loss_function`` (CE + Dice) of each subnetwork on the labelled crops;
    - verification: on the labelled crops, where exactly one subnetwork predicts pancreas with probability
      >= ``confidence_threshold`` (``confident_disagreement``), the MSE of each subnetwork's pancreas probability
      to the label;
    - pseudo: on the unlabelled crops, the pseudo-label is the union of both subnetworks' pancreas predictions; each
      subnetwork's cross-entropy to it over the voxels among the ``reliable_percent`` % lowest-entropy voxels of at
      least one subnetwork (``reliable_voxels``); the others are ignored;
    - contrastive: ``PrototypeContrastiveLoss`` of each subnetwork's decoder features (the inputs of the modules named
      ``feature_modules``) on the unlabelled crops: unreliable voxels pulled to their class prototype, the prototypes
      pushed apart. With ``contrastive_gradient=False`` it is computed under ``torch.no_grad()`` as in the released
      code: logged, but without effect on training (the switch measures what the gradient adds);
    - ``w(t)``: ``sigmoid_rampup`` over ``rampup_iterations``.

    With both unlabelled lambdas 0 the unlabelled crops are not even passed through the networks. Every term, the
    ramp weight, the fraction of labelled voxels in the verification mask and of unlabelled voxels that are reliable
    are in ``engine.state.output``. ``Keys.PRED`` holds the pair's averaged prediction on the labelled crops.

    Args:
        feature_modules: per subnetwork, the name of the module whose input are the decoder features
            (``scripts.engines.capture_inputs``).
        lambda_verification, lambda_pseudo, lambda_contrastive: weights, >= 0.
        confidence_threshold: in (0.5, 1].
        reliable_percent: in (0, 100].
        rampup_iterations: of ``w``, >= 0.
        contrastive_loss: default ``PrototypeContrastiveLoss()``.
        contrastive_gradient: see above.
        labelled_key, unlabelled_key: the two parts of every batch (``TwoStreamLoader``).
        args, kwargs: ``SupervisedTrainer``'s; ``network`` must have ``first`` and ``second`` subnetworks.

    Raises:
        ValueError: a negative weight or ramp, a threshold or percent out of range, ``compile=True``, or two
            feature module names not given.
        AttributeError: a network without ``first`` and ``second``.
        KeyError: a feature module a subnetwork does not have.
    """

    def __init__(
        self,
        *args: Any,
        feature_modules: Sequence[str] = ("segmentation_head", "segmentation_head"),
        lambda_verification: float = 0.5,
        lambda_pseudo: float = 1.0,
        lambda_contrastive: float = 0.1,
        confidence_threshold: float = 0.6,
        reliable_percent: float = 20.0,
        rampup_iterations: int = 200,
        contrastive_loss: PrototypeContrastiveLoss | None = None,
        contrastive_gradient: bool = True,
        labelled_key: str = "labelled",
        unlabelled_key: str = "unlabelled",
        **kwargs: Any,
    ) -> None:
        if min(lambda_verification, lambda_pseudo, lambda_contrastive, rampup_iterations) < 0:
            raise ValueError("the lambdas and rampup_iterations must be >= 0.")
        if not 0.5 < confidence_threshold <= 1 or not 0 < reliable_percent <= 100:
            raise ValueError(
                f"confidence_threshold must be in (0.5, 1] and reliable_percent in (0, 100], got "
                f"{confidence_threshold}, {reliable_percent}."
            )
        if len(feature_modules) != 2:
            raise ValueError(f"feature_modules names one module per subnetwork, got {feature_modules}.")
        if kwargs.get("compile", False):
            raise ValueError("TwoNetworkSemiSupervisedTrainer does not support compile=True.")
        network = kwargs.get("network", args[3] if len(args) > 3 else None)
        if network is not None:
            inner = unwrap(network)
            if not all(hasattr(inner, name) for name in ("first", "second")):
                raise AttributeError(f"{type(inner).__name__} has no first and second subnetworks (SoftmaxAveragedPair).")
            for subnetwork, name in zip((inner.first, inner.second), feature_modules):
                with capture_inputs(subnetwork, [name]):  # raises for a module the subnetwork lacks
                    pass
        super().__init__(*args, **kwargs)
        self.feature_modules = tuple(feature_modules)
        self.lambda_verification = float(lambda_verification)
        self.lambda_pseudo = float(lambda_pseudo)
        self.lambda_contrastive = float(lambda_contrastive)
        self.confidence_threshold = float(confidence_threshold)
        self.reliable_percent = float(reliable_percent)
        self.rampup_iterations = int(rampup_iterations)
        self.contrastive_loss = PrototypeContrastiveLoss() if contrastive_loss is None else contrastive_loss
        self.contrastive_gradient = bool(contrastive_gradient)
        self.labelled_key, self.unlabelled_key = labelled_key, unlabelled_key

    def _tensor(self, batch: dict, key: str) -> torch.Tensor:
        if key not in batch:
            raise KeyError(f"every batch needs '{key}' (got {sorted(batch)})")
        return convert_to_tensor(batch[key], track_meta=False).to(self.state.device, non_blocking=self.non_blocking)

    def _iteration(self, engine: TwoNetworkSemiSupervisedTrainer, batchdata: dict) -> dict:  # type: ignore[override]
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        labelled, unlabelled = batchdata[engine.labelled_key], batchdata.get(engine.unlabelled_key)
        images, labels = engine._tensor(labelled, Keys.IMAGE), engine._tensor(labelled, Keys.LABEL)
        weight = sigmoid_rampup(engine.state.iteration - 1, engine.rampup_iterations)
        use_unlabelled = unlabelled is not None and (engine.lambda_pseudo > 0 or engine.lambda_contrastive > 0)
        inputs = torch.cat([images, engine._tensor(unlabelled, Keys.IMAGE)]) if use_unlabelled else images
        num_labelled = images.shape[0]
        step = start_iteration(engine, [engine.network])
        pair = unwrap(engine.network)
        with amp_autocast(engine):
            logits, features = [], []
            for subnetwork, name in zip((pair.first, pair.second), engine.feature_modules):
                with capture_inputs(subnetwork, [name]) as captured:
                    logits.append(subnetwork(inputs).float())
                features.append(captured[name])
            probabilities = [F.softmax(x, dim=1) for x in logits]
            averaged = torch.log(((probabilities[0] + probabilities[1]) / 2)[:num_labelled].clamp_min(1e-12))
            engine.state.output = {Keys.IMAGE: images, Keys.LABEL: labels, Keys.PRED: averaged.detach()}
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            supervised = sum(engine.loss_function(x[:num_labelled], labels) for x in logits)
            foreground = (labels > 0).float()
            disagreement = confident_disagreement(
                probabilities[0][:num_labelled, 1:2], probabilities[1][:num_labelled, 1:2], engine.confidence_threshold
            )
            verification = sum(
                masked_mean((p[:num_labelled, 1:2] - foreground) ** 2, disagreement) for p in probabilities
            )
            pseudo = contrastive = inputs.new_zeros(())
            reliable_fraction = 0.0
            if use_unlabelled:
                detached = [p[num_labelled:].detach() for p in probabilities]
                pseudo_label = ((detached[0].argmax(1) > 0) | (detached[1].argmax(1) > 0)).unsqueeze(1)
                reliable = reliable_voxels(_entropy(detached[0]), _entropy(detached[1]), engine.reliable_percent)
                reliable_fraction = float(reliable.float().mean())
                pseudo = sum(
                    masked_mean(
                        F.cross_entropy(x[num_labelled:], pseudo_label[:, 0].long(), reduction="none").unsqueeze(1),
                        reliable,
                    )
                    for x in logits
                )
                if engine.lambda_contrastive > 0:
                    with nullcontext() if engine.contrastive_gradient else torch.no_grad():
                        contrastive = sum(
                            engine.contrastive_loss(f[num_labelled:], pseudo_label, reliable) for f in features
                        )
            loss = (
                supervised
                + engine.lambda_verification * verification
                + weight * (engine.lambda_pseudo * pseudo + engine.lambda_contrastive * contrastive)
            )
        engine.state.output.update(
            {
                Keys.LOSS: loss,
                "loss_supervised": supervised.detach(),
                "loss_verification": verification.detach(),
                "loss_pseudo_label": pseudo.detach(),
                "loss_contrastive": contrastive.detach(),
                "unsupervised_weight": weight,
                "verification_fraction": float(disagreement.float().mean()),
                "reliable_fraction": reliable_fraction,
            }
        )
        engine.fire_event(IterationEvents.LOSS_COMPLETED)
        backward_and_step(engine, loss, step)
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output
