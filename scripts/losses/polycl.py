"""PolyCL's contrastive loss: InfoNCE with cosine similarity over one positive and one negative per anchor."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PolyCLLoss"]


class PolyCLLoss(nn.Module):
    """
    ``cross_entropy([cos(a, p), cos(a, n)] / temperature, 0)``, averaged over the batch (arXiv 2505.19208): the
    anchor's embedding must be nearer (in cosine similarity) its positive than its negative.

    Args:
        temperature: the softmax temperature, > 0.

    Shapes:
        anchor, positive, negative: (B, D) embeddings. Output: a scalar.

    Raises:
        ValueError: a temperature <= 0; in ``forward``, embeddings that are not (B, D) of one shape.
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        self.temperature = float(temperature)

    def similarities(
        self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,) cosine similarities anchor-positive and anchor-negative."""
        if anchor.ndim != 2 or anchor.shape != positive.shape or anchor.shape != negative.shape:
            raise ValueError(
                f"embeddings must be (B, D) of one shape, got {tuple(anchor.shape)}, {tuple(positive.shape)}, "
                f"{tuple(negative.shape)}."
            )
        return F.cosine_similarity(anchor, positive, dim=1), F.cosine_similarity(anchor, negative, dim=1)

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
        cos_ap, cos_an = self.similarities(anchor.float(), positive.float(), negative.float())
        logits = torch.stack([cos_ap, cos_an], dim=1) / self.temperature
        return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))
