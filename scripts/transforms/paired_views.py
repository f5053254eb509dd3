"""Two spatially transformed views of one CT, each carrying the affine that places its voxels in the scan."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import Flip, MapTransform, Randomizable, Resize, Rotate90, SpatialCrop, SpatialPad

__all__ = ["RandPairedViewsd"]


class RandPairedViewsd(Randomizable, MapTransform):
    """
    Make two views of ``keys`` (one image, (C, *S) MetaTensor) for prior-guided local consistency learning
    (PGL, arXiv 2011.12640): each view is a random crop near a shared random anchor, resampled to ``view_size``
    with a random isotropic scale, then randomly flipped and rotated by multiples of 90 degrees in the plane
    of ``rotate_axes``. Every step is a MONAI transform on a MetaTensor, so each view's ``affine`` maps its
    voxel indices to the scan's world coordinates: the prior from which ``scripts.engines.align_views`` finds the
    voxels that show the same place in both views. The views are written to ``view_keys`` (each
    (C, *view_size)) in place of the image; the parameters of each view are kept under ``<view_key>_parameters`` for inspection.

    Args:
        keys: the image key (one key).
        view_size: spatial size of every view, in voxels.
        view_keys: output keys of the two views.
        scale_range: a view covers ``view_size * scale`` input voxels, ``scale`` drawn uniformly from this range
            (>1 zooms out).
        max_shift: each view's centre is the anchor plus a shift drawn uniformly within
            ``+- max_shift * view_size`` voxels per axis, so the two views overlap partly.
        flip_prob: probability of flipping each spatial axis, per view.
        rotate90_prob: probability of a rotation by k * 90 degrees (k in 1..3) per view; ``view_size`` must then be
            equal along ``rotate_axes`` unless only k = 2 is wanted.
        rotate_axes: the two spatial axes of the rotation plane (RAS: (0, 1) is the axial plane).
        mode: interpolation of the rescaling (``Resize``).
        allow_missing_keys: as ``MapTransform``.

    Raises:
        ValueError: for more than one key, a non-positive ``view_size``, a scale range outside (0, inf) or
            reversed, probabilities outside [0, 1], ``max_shift`` < 0, a rotation plane that is not two distinct
            axes or a rotation with ``view_size`` unequal along its axes.
    """

    def __init__(
        self,
        keys: KeysCollection,
        view_size: Sequence[int],
        view_keys: Sequence[str] = ("view_1", "view_2"),
        scale_range: Sequence[float] = (0.8, 1.25),
        max_shift: float = 0.25,
        flip_prob: float = 0.5,
        rotate90_prob: float = 0.5,
        rotate_axes: Sequence[int] = (0, 1),
        mode: str = "trilinear",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"RandPairedViewsd makes views of one image key, got {self.keys}.")
        self.view_size = tuple(int(s) for s in view_size)
        if not self.view_size or min(self.view_size) < 1:
            raise ValueError(f"view_size must be positive, got {view_size}.")
        if len(view_keys) != 2:
            raise ValueError(f"view_keys must name two views, got {view_keys}.")
        low, high = (float(s) for s in scale_range)
        if not 0 < low <= high:
            raise ValueError(f"scale_range must be 0 < low <= high, got {scale_range}.")
        for name, p in (("flip_prob", flip_prob), ("rotate90_prob", rotate90_prob)):
            if not 0 <= p <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {p}.")
        if max_shift < 0:
            raise ValueError(f"max_shift must be >= 0, got {max_shift}.")
        axes = tuple(int(a) for a in rotate_axes)
        if len(axes) != 2 or axes[0] == axes[1] or not all(0 <= a < len(self.view_size) for a in axes):
            raise ValueError(f"rotate_axes must be two distinct spatial axes, got {rotate_axes}.")
        if rotate90_prob > 0 and self.view_size[axes[0]] != self.view_size[axes[1]]:
            raise ValueError(
                f"a 90-degree rotation in the plane {axes} needs view_size equal along it, got {self.view_size}."
            )
        self.view_keys = tuple(view_keys)
        self.scale_range = (low, high)
        self.max_shift = float(max_shift)
        self.flip_prob = float(flip_prob)
        self.rotate90_prob = float(rotate90_prob)
        self.rotate_axes = axes
        self.mode = mode

    def _draw_view(self, anchor: np.ndarray) -> dict[str, Any]:
        """A view's parameters: ``centre`` (voxel, in the input), ``scale``, ``flip_axes``, ``rotate90_k``."""
        size = np.asarray(self.view_size, dtype=float)
        shift = self.R.uniform(-self.max_shift, self.max_shift, size=len(size)) * size
        rotate = self.R.rand() < self.rotate90_prob
        return dict(
            centre=anchor + shift,
            scale=float(self.R.uniform(*self.scale_range)),
            flip_axes=tuple(int(a) for a in np.flatnonzero(self.R.rand(len(size)) < self.flip_prob)),
            rotate90_k=int(self.R.randint(1, 4)) if rotate else 0,
        )

    def randomize(self, spatial_shape: Sequence[int]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Draw the anchor (uniformly in the image) and the parameters of both views."""
        anchor = np.array([self.R.uniform(0, s - 1) for s in spatial_shape])
        return self._draw_view(anchor), self._draw_view(anchor)

    def make_view(self, image: MetaTensor, parameters: Mapping[str, Any]) -> MetaTensor:
        """
        One view of ``image`` (C, *S) with ``parameters`` (see ``_draw_view``): (C, *view_size), its affine
        updated by every step (pad, crop, resize, flip, rotate).
        """
        k = int(parameters["rotate90_k"])
        # the view before the rotation: its axes in the rotation plane are swapped back for odd k
        before = list(self.view_size)
        if k % 2:
            a, b = self.rotate_axes
            before[a], before[b] = before[b], before[a]
        crop = [max(1, int(round(s * float(parameters["scale"])))) for s in before]
        # pad so that the crop fits, then keep its centre inside the (padded) image
        padded = SpatialPad(spatial_size=[max(c, s) for c, s in zip(crop, image.shape[1:])], mode="constant")(image)
        offset = [(p - s) // 2 for p, s in zip(padded.shape[1:], image.shape[1:])]
        start = [
            int(np.clip(round(c + o - s / 2), 0, p - s))
            for c, o, s, p in zip(parameters["centre"], offset, crop, padded.shape[1:])
        ]
        view = SpatialCrop(roi_start=start, roi_end=[s + c for s, c in zip(start, crop)])(padded)
        if tuple(view.shape[1:]) != tuple(before):
            view = Resize(spatial_size=before, mode=self.mode)(view)
        if parameters["flip_axes"]:
            view = Flip(spatial_axis=list(parameters["flip_axes"]))(view)
        if k:
            view = Rotate90(k=k, spatial_axes=self.rotate_axes)(view)
        return view

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """
        Raises:
            TypeError: when the image is not a MetaTensor (its affine is the prior the views are aligned by).
            ValueError: when its spatial dimensions differ from ``view_size``'s.
        """
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            if not isinstance(image, MetaTensor):
                raise TypeError(f"{key} must be a MetaTensor with an affine, got {type(image).__name__}.")
            if image.ndim - 1 != len(self.view_size):
                raise ValueError(f"{key} has {image.ndim - 1} spatial dimensions, view_size {len(self.view_size)}.")
            for view_key, parameters in zip(self.view_keys, self.randomize(image.shape[1:])):
                view = self.make_view(image, parameters)
                # the affine is all a view needs to carry: the transform history is dropped (nothing inverts a view)
                d[view_key] = MetaTensor(view.as_tensor().contiguous(), affine=view.affine.to(torch.float64))
                d[f"{view_key}_parameters"] = {
                    k: torch.as_tensor(v if not isinstance(v, tuple) else [a in v for a in range(image.ndim - 1)])
                    for k, v in parameters.items()
                }
            del d[key]  # the case image has the case's size, so it could not be batched: the views replace it
        return d
