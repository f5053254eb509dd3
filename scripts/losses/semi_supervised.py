"""
The terms of two-subnetwork semi-supervised training (Karimijafarbigloo et al., arXiv 2311.12617): the verification
mask where the confident predictions disagree, the reliable (low-entropy) voxels of the pseudo-label, and the
confidence-guided prototype contrastive loss (here with a gradient, and with the prototypes pushed apart).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F
from torch.nn.modules.loss import _Loss

__all__ = ["PrototypeContrastiveLoss", "confident_disagreement", "masked_mean", "reliable_voxels", "sigmoid_rampup"]


def sigmoid_rampup(iteration: int, rampup_iterations: int) -> float:
    """``exp(-5 (1 - t / T)^2)`` for ``t < T``, then 1 (Laine and Aila's ramp, used by MCF and the method)."""
    if rampup_iterations <= 0 or iteration >= rampup_iterations:
        return 1.0
    phase = 1.0 - max(iteration, 0) / rampup_iterations
    return float(torch.exp(torch.tensor(-5.0 * phase * phase)))


def confident_disagreement(probability_a: torch.Tensor, probability_b: torch.Tensor, threshold: float = 0.6) -> torch.Tensor:
    """
    Where exactly one of two networks predicts pancreas with probability >= ``threshold``: the XOR of
    ``{p >= threshold}`` (with two classes, p >= 0.6 > 0.5 also means the prediction is pancreas).

    Args:
        probability_a: (B, 1, *S) pancreas probability of the first network.
        probability_b: the same for the second.
        threshold: the confidence threshold, in (0.5, 1] (lower ones would count background predictions).

    Raises:
        ValueError: shapes that differ or a threshold outside (0.5, 1].
    """
    if probability_a.shape != probability_b.shape:
        raise ValueError(f"probabilities must have one shape, got {tuple(probability_a.shape)}, {tuple(probability_b.shape)}")
    if not 0.5 < threshold <= 1:
        raise ValueError(f"threshold must be in (0.5, 1], got {threshold}.")
    return (probability_a >= threshold) ^ (probability_b >= threshold)


def reliable_voxels(entropy_a: torch.Tensor, entropy_b: torch.Tensor, percent: float = 20.0) -> torch.Tensor:
    """
    The voxels among the ``percent`` % lowest-entropy voxels of at least one of two networks, per item:
    (B, 1, *S) entropies -> (B, 1, *S) bool. Each network's share is exactly ``round(percent / 100 * N)`` voxels
    of the N of an item (ties broken by position), so the union holds between that and twice that.

    Raises:
        ValueError: shapes that differ or ``percent`` outside (0, 100].
    """
    if entropy_a.shape != entropy_b.shape:
        raise ValueError(f"entropies must have one shape, got {tuple(entropy_a.shape)}, {tuple(entropy_b.shape)}")
    if not 0 < percent <= 100:
        raise ValueError(f"percent must be in (0, 100], got {percent}.")
    flat = torch.stack([entropy_a.flatten(1), entropy_b.flatten(1)])  # (2, B, N)
    count = max(1, round(percent / 100 * flat.shape[-1]))
    lowest = flat.topk(count, dim=-1, largest=False).indices
    chosen = torch.zeros_like(flat, dtype=torch.bool).scatter_(-1, lowest, True)
    return (chosen[0] | chosen[1]).reshape(entropy_a.shape)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over ``mask`` (broadcast); an empty mask gives a zero connected to ``values``' graph."""
    mask = mask.expand_as(values)
    return torch.where(mask, values, 0.0).sum() / mask.sum().clamp_min(1)


class PrototypeContrastiveLoss(_Loss):
    """
    Confidence-guided prototype contrast. Per item, the foreground and background prototypes are the mean
    L2-normalised features of the reliable voxels of each pseudo-label class; every unreliable voxel is pulled to
    the prototype of its class against the other one (a two-way InfoNCE over the cosine similarities, prototypes
    detached there), and the prototypes are pushed apart: ``relu(cos(p_fg, p_bg) - margin)``, with a gradient
    through the prototypes. An item without reliable voxels of both classes contributes nothing.

    Unlike the released code of the method, every part has a gradient, and the prototype term separates the two
    prototypes instead of pulling them together.

    Args:
        temperature: of the InfoNCE, > 0.
        margin: cosine similarity of the prototypes below which they are not pushed further, in [-1, 1].

    Raises:
        ValueError: a temperature <= 0 or a margin outside [-1, 1].
    """

    def __init__(self, temperature: float = 0.1, margin: float = 0.0) -> None:
        super().__init__()
        if temperature <= 0 or not -1 <= margin <= 1:
            raise ValueError(f"temperature must be > 0 and margin in [-1, 1], got {temperature}, {margin}.")
        self.temperature = float(temperature)
        self.margin = float(margin)

    @staticmethod
    def prototypes(features: torch.Tensor, pseudo_label: torch.Tensor, reliable: torch.Tensor) -> torch.Tensor:
        """(B, 2, C) mean normalised features of the reliable background (0) and foreground (1) voxels; NaN where
        a class has no reliable voxel."""
        normalised = F.normalize(features.float(), dim=1).flatten(2)  # (B, C, N)
        label, keep = pseudo_label.flatten(1).bool(), reliable.flatten(1)
        result = []
        for cls in (~label & keep, label & keep):
            weights = cls.float()
            count = weights.sum(dim=1, keepdim=True)
            mean = torch.einsum("bcn,bn->bc", normalised, weights) / count.clamp_min(1)
            result.append(torch.where(count > 0, F.normalize(mean, dim=1), torch.nan))
        return torch.stack(result, dim=1)

    def forward(self, features: torch.Tensor, pseudo_label: torch.Tensor, reliable: torch.Tensor) -> torch.Tensor:
        """
        Args:
            features: (B, C, *S) features of one network.
            pseudo_label: (B, 1, *S) pseudo-label, > 0 pancreas.
            reliable: (B, 1, *S) bool, the reliable voxels.

        Returns:
            the scalar loss (a zero connected to ``features`` when no item has both prototypes).

        Raises:
            ValueError: when the maps' shapes do not fit the features.
        """
        expected = (features.shape[0], 1, *features.shape[2:])
        if tuple(pseudo_label.shape) != expected or tuple(reliable.shape) != expected:
            raise ValueError(f"pseudo_label and reliable must be {expected}, got {tuple(pseudo_label.shape)}, "
                             f"{tuple(reliable.shape)}.")
        prototypes = self.prototypes(features, pseudo_label, reliable)  # (B, 2, C)
        normalised = F.normalize(features.float(), dim=1).flatten(2)
        label, unreliable = pseudo_label.flatten(1).long().clamp(0, 1), ~reliable.flatten(1)
        terms = []
        for item in range(features.shape[0]):
            if torch.isnan(prototypes[item]).any() or not unreliable[item].any():
                continue
            voxels = normalised[item][:, unreliable[item]]  # (C, M)
            logits = prototypes[item].detach() @ voxels / self.temperature  # (2, M)
            pull = F.cross_entropy(logits.T, label[item][unreliable[item]])
            separation = F.relu(torch.dot(prototypes[item, 0], prototypes[item, 1]) - self.margin)
            terms.append(pull + separation)
        if not terms:
            return features.sum() * 0.0
        return torch.stack(terms).mean()
