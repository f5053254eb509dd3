"""Structure-guided voxel contrastive loss between pancreas and peripancreatic embeddings (sampling: ``scripts.engines.sampling``)."""

from __future__ import annotations

import torch
from torch.nn.modules.loss import _Loss

__all__ = ["StructureContrastiveLoss"]


class StructureContrastiveLoss(_Loss):
    """
    Supervised voxel contrastive loss between pancreas (positive) and peripancreatic (negative) embeddings.

    For each batch item and every ordered pair of distinct valid positives ``(i, p)``, with cosine
    similarities ``s`` and temperature ``t``::

        l_ip = -log( exp(s_ip / t) / (exp(s_ip / t) + sum_n exp(s_in / t)) )
             = softplus( logsumexp_n(s_in / t) - s_ip / t )

    where ``n`` runs over the item's valid negatives. The item loss is the mean of ``l_ip`` over its pairs
    and the loss is the mean over the items with at least two valid positives and one valid negative. The
    other items are skipped; ``return_num_skipped=True`` returns their number too. When all
    items are skipped the loss is a zero that stays connected to ``embeddings``' graph. The loss is
    non-negative and approaches 0 for perfectly separated embeddings.

    Args:
        temperature: temperature ``t`` of the similarities.
    """

    def __init__(self, temperature: float = 0.07) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}.")
        self.temperature = temperature

    def forward(
        self, embeddings: torch.Tensor, is_positive: torch.Tensor, valid: torch.Tensor, return_num_skipped: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            embeddings: L2-normalised voxel embeddings, shape ``(B, N, D)``.
            is_positive: whether each slot is a positive, shape ``(B, N)``, bool.
            valid: whether each slot holds a real voxel, shape ``(B, N)``, bool.
            return_num_skipped: also return the number of skipped items.

        Returns:
            the scalar loss; with ``return_num_skipped``, ``(loss, num_skipped)`` where ``num_skipped`` is a
            0-dim long tensor on the loss' device (not read back, so the device is not waited for).

        Raises:
            ValueError: when the shapes do not match.
        """
        if embeddings.ndim != 3 or is_positive.shape != embeddings.shape[:2] or valid.shape != embeddings.shape[:2]:
            raise ValueError(
                f"expected embeddings (B, N, D) and masks (B, N), got {tuple(embeddings.shape)}, "
                f"{tuple(is_positive.shape)} and {tuple(valid.shape)}."
            )
        positive = is_positive & valid  # (B, N)
        negative = ~is_positive & valid
        logits = embeddings @ embeddings.transpose(1, 2) / self.temperature  # (B, N, N), s / t
        # masked entries are a large finite value rather than -inf so that the gradient never becomes NaN
        lowest = torch.finfo(logits.dtype).min
        negative_lse = logits.masked_fill(~negative[:, None, :], lowest).logsumexp(dim=2)  # (B, N), per anchor
        pair_losses = torch.nn.functional.softplus(negative_lse[:, :, None] - logits)  # (B, N, N), anchor x positive
        eye = torch.eye(embeddings.shape[1], dtype=torch.bool, device=embeddings.device)
        pairs = positive[:, :, None] & positive[:, None, :] & ~eye
        item_losses = torch.where(pairs, pair_losses, 0.0).sum(dim=(1, 2)) / pairs.sum(dim=(1, 2)).clamp_min(1)
        active = (positive.sum(dim=1) >= 2) & (negative.sum(dim=1) >= 1)
        loss = torch.where(active, item_losses, 0.0).sum() / active.sum().clamp_min(1)
        return (loss, (~active).sum()) if return_num_skipped else loss
