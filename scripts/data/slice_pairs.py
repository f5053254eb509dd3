"""
Axial slices of CT volumes and the (anchor, positive, negative) slice triplets of PolyCL's contrastive pretraining
(Ward, Moseley, Imran, arXiv 2505.19208).

A ``SliceBank`` holds the kept axial slices (the last spatial axis, after ``Orientationd(axcodes="RAS")``) of a set
of scans, each with the index of its scan and its organ presence (the slice holds any label voxel). A
``SlicePairDataset`` draws, for every anchor slice, one positive and one negative by one of three strategies:

- ``"S"`` (scan): positive = another slice of the same scan; negative = a slice of another scan (no labels needed);
- ``"O"`` (organ): positive = another slice (any scan) with the anchor's organ presence; negative = a slice with the
  opposite presence;
- ``"M"`` (mixed): positive = another slice of the same scan with the same presence; negative = a slice of another
  scan with the opposite presence.

Anchors without a valid positive or negative are left out. O and M read only the per-slice presence, never the
masks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import Randomizable
from torch.utils.data import Dataset

__all__ = ["STRATEGIES", "SliceBank", "SlicePairDataset", "pair_candidates"]

STRATEGIES = ("S", "O", "M")


def pair_candidates(
    scan_ids: np.ndarray, presence: np.ndarray, anchor: int, strategy: str
) -> tuple[np.ndarray, np.ndarray]:
    """
    The indices of the slices allowed as positive and as negative of slice ``anchor`` under ``strategy``.

    Args:
        scan_ids: (N,) integer scan index of every slice.
        presence: (N,) bool organ presence of every slice (not read by strategy ``"S"``).
        anchor: index of the anchor slice.
        strategy: ``"S"``, ``"O"`` or ``"M"`` (see the module docs).

    Returns:
        (positives, negatives): sorted index arrays, possibly empty; the anchor is never among them.

    Raises:
        ValueError: an unknown strategy, or arrays of different lengths.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}.")
    if len(scan_ids) != len(presence):
        raise ValueError(f"scan_ids ({len(scan_ids)}) and presence ({len(presence)}) differ in length.")
    same_scan = scan_ids == scan_ids[anchor]
    same_presence = presence == presence[anchor]
    others = np.arange(len(scan_ids)) != anchor
    if strategy == "S":
        positive, negative = same_scan & others, ~same_scan
    elif strategy == "O":
        positive, negative = same_presence & others, ~same_presence
    else:
        positive, negative = same_scan & same_presence & others, ~same_scan & ~same_presence
    return np.flatnonzero(positive), np.flatnonzero(negative)


class SliceBank:
    """
    The kept axial slices of a set of scans, with their scan index and organ presence.

    Of every scan, the ``keep_fraction`` of its axial slices nearest its centre slice are kept: the middle slice of
    the organ's axial extent (``centre="organ"``, read from the label; a scan without label voxels falls back to
    its middle) or of the scan (``centre="middle"``, labels not read for the selection).

    Args:
        items: dicts with ``image_key``, a (1, X, Y, Z) array, and for presence a ``label_key`` of the same shape
            (> 0: organ). Every image must have the same (X, Y) (e.g. after ``ResizeWithPadOrCropd``).
        keep_fraction: fraction of each scan's slices kept, in (0, 1] (at least one slice per scan).
        centre: ``"organ"`` or ``"middle"``.
        min_organ_voxels: a slice with at least this many label voxels has the organ.
        image_key, label_key: the keys of the items.

    Attributes:
        images: (N, 1, X, Y) float32 tensor of the kept slices.
        scan_ids: (N,) int64 array. presence: (N,) bool array (all False without labels).
        slice_indices: (N,) int64 array, the slice index within its scan.

    Raises:
        ValueError: a keep_fraction outside (0, 1], an unknown centre, min_organ_voxels < 1, no item, an image that
            is not (1, X, Y, Z), slices of different in-plane sizes, or a label of another shape than its image.
    """

    def __init__(
        self,
        items: Iterable[Mapping[str, Any]],
        keep_fraction: float = 1.0,
        centre: str = "organ",
        min_organ_voxels: int = 1,
        image_key: str = "image",
        label_key: str = "label",
    ) -> None:
        if not 0 < keep_fraction <= 1:
            raise ValueError(f"keep_fraction must be in (0, 1], got {keep_fraction}.")
        if centre not in ("organ", "middle"):
            raise ValueError(f"centre must be 'organ' or 'middle', got {centre!r}.")
        if min_organ_voxels < 1:
            raise ValueError(f"min_organ_voxels must be >= 1, got {min_organ_voxels}.")
        images, scan_ids, presence, slice_indices = [], [], [], []
        for scan, item in enumerate(items):
            image = torch.as_tensor(np.asarray(item[image_key]), dtype=torch.float32)
            if image.ndim != 4 or image.shape[0] != 1:
                raise ValueError(f"scan {scan}: the image must be (1, X, Y, Z), got {tuple(image.shape)}.")
            if images and image.shape[1:3] != images[0].shape[2:]:
                raise ValueError(
                    f"scan {scan}: slices of {tuple(image.shape[1:3])}, the first scan's are {tuple(images[0].shape[2:])}."
                )
            label = item.get(label_key)
            counts = np.zeros(image.shape[-1], dtype=np.int64)
            if label is not None:
                label = np.asarray(label)
                if label.shape != tuple(image.shape):
                    raise ValueError(f"scan {scan}: label {label.shape} and image {tuple(image.shape)} differ.")
                counts = (label[0] > 0).reshape(-1, label.shape[-1]).sum(axis=0)
            kept = self._kept_slices(counts, keep_fraction, centre, min_organ_voxels)
            images.append(image[0].permute(2, 0, 1)[kept].unsqueeze(1))
            scan_ids.append(np.full(len(kept), scan, dtype=np.int64))
            presence.append(counts[kept] >= min_organ_voxels)
            slice_indices.append(kept)
        if not images:
            raise ValueError("a slice bank needs at least one scan.")
        self.images = torch.cat(images)
        self.scan_ids = np.concatenate(scan_ids)
        self.presence = np.concatenate(presence)
        self.slice_indices = np.concatenate(slice_indices)

    @staticmethod
    def _kept_slices(counts: np.ndarray, keep_fraction: float, centre: str, min_organ_voxels: int) -> np.ndarray:
        """The indices of the ``keep_fraction`` of slices nearest the centre slice, ascending."""
        num_slices = len(counts)
        organ = np.flatnonzero(counts >= min_organ_voxels)
        middle = (organ[0] + organ[-1]) / 2 if centre == "organ" and len(organ) else (num_slices - 1) / 2
        keep = max(1, round(keep_fraction * num_slices))
        nearest = np.argsort(np.abs(np.arange(num_slices) - middle), kind="stable")[:keep]
        return np.sort(nearest)

    def __len__(self) -> int:
        return len(self.images)


class SlicePairDataset(Dataset, Randomizable):
    """
    One (anchor, positive, negative) slice triplet per valid anchor of a ``SliceBank``; the positive and negative
    are drawn at random (uniformly among the allowed slices of ``pair_candidates``) at every access, from the
    dataset's own generator (``Randomizable``: MONAI's ``DataLoader`` gives each worker its own seed).

    Args:
        bank: the slices.
        strategy: ``"S"``, ``"O"`` or ``"M"``.
        seed: seed of the draws.

    Shapes:
        item: ``{"anchor", "positive", "negative"}``: (1, X, Y) each; ``"indices"``: (3,) int64 bank indices.

    Raises:
        ValueError: an unknown strategy, or no anchor with both a valid positive and a valid negative.
    """

    def __init__(self, bank: SliceBank, strategy: str = "S", seed: int = 0) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}.")
        self.bank = bank
        self.strategy = strategy
        self.set_random_state(seed)
        self.candidates: list[tuple[int, np.ndarray, np.ndarray]] = []
        for anchor in range(len(bank)):
            positives, negatives = pair_candidates(bank.scan_ids, bank.presence, anchor, strategy)
            if len(positives) and len(negatives):
                self.candidates.append((anchor, positives, negatives))
        if not self.candidates:
            raise ValueError(
                f"strategy {strategy!r}: no anchor has both a positive and a negative among {len(bank)} slices of "
                f"{len(set(bank.scan_ids.tolist()))} scan(s), {int(bank.presence.sum())} with the organ."
            )

    @property
    def anchors(self) -> list[int]:
        """The bank indices of the valid anchors, in order."""
        return [anchor for anchor, _, _ in self.candidates]

    def draw(self, index: int) -> tuple[int, int, int]:
        """The bank indices (anchor, positive, negative) of a fresh draw for the ``index``-th valid anchor."""
        anchor, positives, negatives = self.candidates[index]
        return anchor, int(self.R.choice(positives)), int(self.R.choice(negatives))

    def randomize(self, data: Any = None) -> None:
        """Nothing to draw ahead: ``draw`` draws at every access."""

    def __len__(self) -> int:
        return len(self.candidates)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        indices: Sequence[int] = self.draw(index)
        images = self.bank.images
        return {
            "anchor": images[indices[0]],
            "positive": images[indices[1]],
            "negative": images[indices[2]],
            "indices": torch.as_tensor(indices, dtype=torch.int64),
        }
