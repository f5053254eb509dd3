"""Surface-distance metrics measured in millimetres on the grid of each case."""

from __future__ import annotations

from typing import Any

import torch
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from monai.metrics import CumulativeIterationMetric

__all__ = ["PhysicalSpacingMetric"]


class PhysicalSpacingMetric(CumulativeIterationMetric):
    """
    Run a distance-based MONAI metric with the voxel spacing of each case, so distances are in mm.

    MONAI's metric handlers call a metric as ``metric(y_pred, y)`` without the ``spacing`` argument that
    ``HausdorffDistanceMetric``, ``SurfaceDistanceMetric`` and ``SurfaceDiceMetric`` need for physical
    units. This wrapper reads the spacing from the affine of ``y`` (a ``MetaTensor``, as produced by
    MONAI transforms, also after ``Invertd``) and falls back to ``default_spacing`` for plain tensors.

    Args:
        metric: the wrapped metric, e.g. ``HausdorffDistanceMetric(percentile=95)`` or
            ``SurfaceDiceMetric(class_thresholds=[1.0])`` (thresholds then are in mm).
        default_spacing: spacing used when ``y`` carries no affine; ``None`` means 1 (voxel units).

    Shapes:
        ``y_pred`` and ``y``: one-hot (B, C, *S); the result has the wrapped metric's shape, (B, C') per batch.
    """

    def __init__(self, metric: CumulativeIterationMetric, default_spacing: Any = None) -> None:
        self.metric = metric
        self.default_spacing = default_spacing
        super().__init__()

    def __call__(self, y_pred: Any, y: Any = None, **kwargs: Any) -> Any:  # type: ignore[override]
        """Compute the wrapped metric case by case, each with the spacing of its own affine."""
        if isinstance(y_pred, torch.Tensor):  # a batch (B, C, *S): split it into channel-first cases
            spacings = [self._spacing_of(y, y_pred, index) for index in range(y_pred.shape[0])]
            y_pred, y = [p for p in y_pred.as_tensor()] if isinstance(y_pred, MetaTensor) else list(y_pred), list(y)
        else:
            spacings = [self._spacing_of(t, p) for p, t in zip(y_pred, y)]
        results = [self.metric([p], [t], spacing=s, **kwargs) for p, t, s in zip(y_pred, y, spacings)]
        return torch.cat(results)

    def _spacing_of(self, y: Any, y_pred: Any, index: int | None = None) -> Any:
        """Voxel spacing of a channel-first case, or of case ``index`` of a batch, from its affine."""
        for reference in (y, y_pred):
            if isinstance(reference, MetaTensor):
                affine = reference.affine if index is None or reference.affine.ndim == 2 else reference.affine[index]
                spatial_dims = reference.ndim - (1 if index is None else 2)
                return affine_to_spacing(affine, r=spatial_dims).tolist()
        return self.default_spacing

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, **kwargs: Any) -> Any:
        raise NotImplementedError("PhysicalSpacingMetric delegates computation to the wrapped metric.")

    def aggregate(self, *args: Any, **kwargs: Any) -> Any:
        return self.metric.aggregate(*args, **kwargs)

    def reset(self) -> None:
        self.metric.reset()

    def get_buffer(self) -> Any:
        return self.metric.get_buffer()
