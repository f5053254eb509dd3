"""Resample the feature maps of two views onto one grid over the region both views show (PGL's prior)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

__all__ = ["align_views", "feature_map_affine"]


def feature_map_affine(view_affine: torch.Tensor, stride: int | Sequence[int]) -> torch.Tensor:
    """
    The affine of a feature map computed from a view with stride ``stride``: feature voxel ``j`` is centred on view
    voxel ``stride * j`` (stride-2 convolutions with kernel 3 and padding 1, and the decoder blocks at their
    resolutions, keep index 0 on index 0). ``view_affine``: (..., 4, 4) -> (..., 4, 4), float64.
    """
    affine = torch.as_tensor(view_affine, dtype=torch.float64)
    dims = affine.shape[-1] - 1
    strides = [float(stride)] * dims if isinstance(stride, (int, float)) else [float(s) for s in stride]
    if len(strides) != dims or min(strides) <= 0:
        raise ValueError(f"stride must be positive, one per spatial dimension ({dims}), got {stride}.")
    scale = torch.diag(torch.tensor(strides + [1.0], dtype=torch.float64, device=affine.device))
    return affine @ scale


def _normalise(points: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Voxel indices (..., D) -> ``grid_sample`` coordinates (..., D), last spatial axis first, align_corners."""
    size = torch.tensor([max(int(n) - 1, 1) for n in shape], dtype=points.dtype, device=points.device)
    normalised = 2 * points / size - 1
    normalised = torch.where(torch.tensor([int(n) == 1 for n in shape], device=points.device), 0.0, normalised)
    return normalised.flip(-1)


def align_views(
    features_a: torch.Tensor,
    features_b: torch.Tensor,
    affine_a: torch.Tensor,
    affine_b: torch.Tensor,
    min_points: int = 1,
    mode: str = "bilinear",
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """
    The two feature maps sampled at the same places: a regular grid over the region that both maps cover.

    The grid is laid in ``a``'s voxel frame, over the intersection of the boxes spanned by the voxel centres of
    the two maps (``b``'s box mapped through ``inv(affine_a) @ affine_b``, which flips, rotations by 90 degrees,
    crops and scalings keep axis-aligned), with a step of one voxel of the finer of the two maps along each axis;
    both maps are sampled there with ``grid_sample``. A grid point that is a voxel centre of both maps (any
    integer shift at equal scale) reads both maps exactly.

    Args:
        features_a: (C, *S_a) features of view a.
        features_b: (C, *S_b) features of view b.
        affine_a: (D + 1, D + 1) voxel-to-world affine of ``features_a`` (``feature_map_affine``).
        affine_b: the same for ``features_b``.
        min_points: fewer grid points than this: ``None`` (the views hardly overlap).
        mode: ``grid_sample`` interpolation.

    Returns:
        ``(aligned_a, aligned_b)``, each (C, *G), or ``None`` when the overlap has fewer than ``min_points``
        points (or is empty).

    Raises:
        ValueError: when the maps' dimensions or channels differ from each other or from the affines, or when
            ``b``'s axes are not aligned with ``a``'s (an oblique relation has no box-shaped overlap).
    """
    dims = features_a.ndim - 1
    if features_b.ndim != features_a.ndim or features_a.shape[0] != features_b.shape[0]:
        raise ValueError(f"feature maps must have the same channels and dimensions: {features_a.shape}, {features_b.shape}")
    affine_a = torch.as_tensor(affine_a, dtype=torch.float64).cpu()
    affine_b = torch.as_tensor(affine_b, dtype=torch.float64).cpu()
    if affine_a.shape != (dims + 1, dims + 1) or affine_b.shape != (dims + 1, dims + 1):
        raise ValueError(f"affines must be {dims + 1} x {dims + 1}, got {tuple(affine_a.shape)}, {tuple(affine_b.shape)}")
    b_to_a = torch.linalg.solve(affine_a, affine_b)
    linear = b_to_a[:dims, :dims]
    tolerance = 1e-6 * linear.abs().max()
    if ((linear.abs() > tolerance).sum(dim=0) != 1).any():
        raise ValueError(f"view b is not axis-aligned with view a (b to a: {linear.tolist()})")
    shape_a, shape_b = features_a.shape[1:], features_b.shape[1:]
    # b's voxel-centre box in a's frame
    corners = torch.cartesian_prod(*[torch.tensor([0.0, n - 1.0], dtype=torch.float64) for n in shape_b])
    corners = corners.reshape(-1, dims) @ linear.T + b_to_a[:dims, dims]
    low = torch.maximum(corners.min(dim=0).values, torch.zeros(dims, dtype=torch.float64))
    high = torch.minimum(corners.max(dim=0).values, torch.tensor([n - 1.0 for n in shape_a], dtype=torch.float64))
    if (high < low).any():
        return None
    # one voxel of the finer map along each of a's axes: b's voxel spans |linear| (in a's voxels) along its axis
    step = torch.clamp(linear.abs().max(dim=1).values, max=1.0)
    counts = [int(torch.floor((h - lo) / s + 1e-6)) + 1 for lo, h, s in zip(low, high, step)]
    if torch.prod(torch.tensor(counts)) < min_points:
        return None
    axes = [lo + s * torch.arange(n, dtype=torch.float64) for lo, s, n in zip(low, step, counts)]
    points_a = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)  # (*G, D) in a's voxels
    points_b = (points_a - b_to_a[:dims, dims]) @ torch.linalg.inv(linear).T
    aligned = []
    for features, points, shape in ((features_a, points_a, shape_a), (features_b, points_b, shape_b)):
        grid = _normalise(points, shape).to(device=features.device, dtype=features.dtype)
        sampled = F.grid_sample(
            features[None], grid[None], mode=mode, padding_mode="border", align_corners=True
        )
        aligned.append(sampled[0])
    return aligned[0], aligned[1]
