"""Signed relative volume error of a segmentation, as a MONAI cumulative metric."""

from __future__ import annotations

import torch
from monai.metrics import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction, ignore_background, is_binary_tensor
from monai.utils import MetricReduction

__all__ = ["RelativeVolumeErrorMetric"]


class RelativeVolumeErrorMetric(CumulativeIterationMetric):
    """
    Signed relative volume error ``(V_pred - V_ref) / V_ref`` per case and class.

    Positive values mean over-segmentation, negative under-segmentation; an empty prediction gives -1.
    The error is undefined when the reference is empty and is then NaN (as ``DiceMetric(ignore_empty=True)``
    does), which ``aggregate`` skips like MONAI's other metrics. Volumes are voxel counts: prediction and
    reference share one grid, so the voxel volume cancels and the ratio is the same in mm^3.

    Args:
        include_background: whether to include the first channel (the background of a one-hot input).
        reduction: reduction of ``aggregate`` over the not-NaN values, see ``monai.utils.MetricReduction``.
        get_not_nans: whether ``aggregate`` also returns the count of not-NaN values.

    Shapes:
        ``y_pred`` and ``y``: binarised one-hot (B, C, *spatial); each call returns (B, C) (C - 1 without background).
    """

    def __init__(
        self,
        include_background: bool = True,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__()
        self.include_background = include_background
        self.reduction = reduction
        self.get_not_nans = get_not_nans

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor, **kwargs) -> torch.Tensor:  # type: ignore[override]
        if y_pred.shape != y.shape:
            raise ValueError(f"y_pred and y must have the same shape, got {tuple(y_pred.shape)} and {tuple(y.shape)}.")
        if y_pred.ndim < 3:
            raise ValueError(f"y_pred and y must be (B, C, *spatial), got {y_pred.ndim} dimensions.")
        is_binary_tensor(y_pred, "y_pred")
        is_binary_tensor(y, "y")
        if not self.include_background:
            y_pred, y = ignore_background(y_pred=y_pred, y=y)
        spatial = tuple(range(2, y.ndim))
        volume_pred = y_pred.float().sum(dim=spatial)
        volume_ref = y.float().sum(dim=spatial)
        error = (volume_pred - volume_ref) / volume_ref
        return torch.where(volume_ref > 0, error, torch.full_like(error, float("nan")))

    def aggregate(
        self, reduction: MetricReduction | str | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Reduce the buffered (N, C) errors; ``reduction`` overrides the one given at construction."""
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError("the data to aggregate must be a PyTorch Tensor.")
        f, not_nans = do_metric_reduction(data, reduction or self.reduction)
        return (f, not_nans) if self.get_not_nans else f
