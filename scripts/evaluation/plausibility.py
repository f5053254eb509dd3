"""
Plausibility of a pancreas mask on CT that has no pancreas label: where the mask lies relative to what is known.

These numbers say whether a prediction can be a pancreas (its volume, how much of it lies inside other organs,
in air or outside the body, how far it is from the portal-splenic confluence the pancreatic neck lies in front
of), not how accurate it is: a mask of the right size in fat next to the pancreas passes them all.

Every array is ``(X, Y, Z)`` in one voxel grid with the third axis cranio-caudal (e.g. ``nib.as_closest_canonical``
order); masks are boolean or {0, 1}.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from monai.metrics import compute_dice
from scipy import ndimage
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

__all__ = ["body_mask", "dice_on_labelled_slices", "mask_plausibility", "portal_confluence"]

AIR_HU = -500.0
"""Voxels below this are air (outside the body, lung, bowel gas) for ``body_mask`` and ``mask_plausibility``."""


def _check_same_shape(mask: np.ndarray, **arrays: np.ndarray) -> None:
    for name, array in arrays.items():
        if tuple(array.shape) != tuple(mask.shape):
            raise ValueError(f"{name} has shape {tuple(array.shape)}, the mask has {tuple(mask.shape)}")


def body_mask(hu: np.ndarray, threshold: float = AIR_HU) -> np.ndarray:
    """
    The patient's body in a CT: the largest connected region above ``threshold`` HU, its holes (lungs, bowel gas)
    filled in every axial slice.

    Args:
        hu: ``(X, Y, Z)`` CT in Hounsfield units, Z cranio-caudal.
        threshold: HU above which a voxel is tissue.

    Returns:
        ``(X, Y, Z)`` bool; the scanner table, which touches the body only through air, is not part of it.

    Raises:
        ValueError: when ``hu`` is not 3D.
    """
    if np.ndim(hu) != 3:
        raise ValueError(f"the CT must be (X, Y, Z), got shape {np.shape(hu)}")
    tissue = np.asarray(hu) > threshold
    components, count = ndimage.label(tissue)
    if count == 0:
        return tissue
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    body = components == int(np.argmax(sizes))
    for z in range(body.shape[2]):
        body[:, :, z] = ndimage.binary_fill_holes(body[:, :, z])
    return body


def _vessel_graph(vessel: np.ndarray, spacing: np.ndarray) -> tuple[np.ndarray, csr_matrix]:
    """The voxels of ``vessel`` (``(N, 3)`` indices) and their 26-neighbour graph with edges in mm."""
    points = np.argwhere(vessel)
    index = np.full(vessel.shape, -1, dtype=np.int64)
    index[tuple(points.T)] = np.arange(len(points))
    rows, cols, weights = [], [], []
    for offset in np.array([o for o in np.ndindex(3, 3, 3) if o != (1, 1, 1)]) - 1:
        target = points + offset
        valid = np.all((target >= 0) & (target < vessel.shape), axis=1)
        neighbour = np.full(len(points), -1, dtype=np.int64)
        neighbour[valid] = index[tuple(target[valid].T)]
        keep = neighbour >= 0
        rows.append(np.flatnonzero(keep))
        cols.append(neighbour[keep])
        weights.append(np.full(int(keep.sum()), float(np.linalg.norm(offset * spacing))))
    graph = csr_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))), (len(points),) * 2)
    return points, graph


def portal_confluence(
    portal_vein: np.ndarray, liver: np.ndarray, spleen: np.ndarray, spacing: tuple[float, float, float]
) -> np.ndarray | None:
    """
    Voxel coordinates of the portal-splenic confluence (behind the pancreatic neck), found on a portal venous system
    mask (portal vein with its intrahepatic branches, splenic and superior mesenteric veins) as the point of the
    vessel path from the splenic hilum down to the superior mesenteric vein's lowest point that is nearest to the
    liver along the vessels: where the portal trunk leaves that path for the liver.

    Args:
        portal_vein: ``(X, Y, Z)`` portal venous system mask.
        liver: ``(X, Y, Z)`` liver mask.
        spleen: ``(X, Y, Z)`` spleen mask.
        spacing: voxel size in mm along X, Y, Z.

    Returns:
        ``(3,)`` float voxel coordinates, or None when the masks do not show a connected path (a vessel mask that
        reaches neither the liver nor near the spleen, or breaks between them).

    Raises:
        ValueError: when the masks differ in shape.
    """
    _check_same_shape(portal_vein, liver=liver, spleen=spleen)
    spacing = np.asarray(spacing, dtype=float)
    vessel, liver, spleen = (np.asarray(a) > 0 for a in (portal_vein, liver, spleen))
    if not (vessel.any() and liver.any() and spleen.any()):
        return None
    points, graph = _vessel_graph(vessel, spacing)
    in_liver = np.flatnonzero(liver[tuple(points.T)])
    outside = np.flatnonzero(~liver[tuple(points.T)])
    if not len(in_liver) or not len(outside):
        return None
    to_spleen = ndimage.distance_transform_edt(~spleen, sampling=spacing)[tuple(points.T)]
    hilum = int(outside[np.argmin(to_spleen[outside])])
    lowest = int(outside[np.argmin(points[outside, 2])])
    from_liver = dijkstra(graph, directed=False, indices=in_liver, min_only=True)
    _, predecessors = dijkstra(graph, directed=False, indices=hilum, return_predecessors=True)
    if predecessors[lowest] < 0:
        return None
    path = [lowest]
    while path[-1] != hilum:
        path.append(int(predecessors[path[-1]]))
    nearest = path[int(np.argmin(from_liver[path]))]
    return points[nearest].astype(float)


def mask_plausibility(
    mask: np.ndarray,
    hu: np.ndarray,
    spacing: tuple[float, float, float],
    organs: Mapping[str, np.ndarray],
    landmark: np.ndarray | None = None,
) -> dict:
    """
    Where a predicted pancreas mask lies: its volume and, as fractions of its voxels, how much is inside each of
    ``organs``, in air, or outside the body.

    Args:
        mask: ``(X, Y, Z)`` predicted pancreas.
        hu: ``(X, Y, Z)`` the CT in HU on the same grid.
        spacing: voxel size in mm along X, Y, Z.
        organs: ``{name: (X, Y, Z) mask}`` of structures the pancreas must not overlap (liver, spleen, kidneys).
        landmark: ``(3,)`` voxel coordinates of a point the pancreas lies near (``portal_confluence``), or None.

    Returns:
        ``volume_ml``, ``components`` (connected regions), ``inside`` (``{organ: fraction}``), ``inside_any_organ``,
        ``in_air`` (HU below ``AIR_HU``), ``outside_body``, ``plausible`` (the fraction in none of those),
        ``centroid_voxel`` and ``landmark_distance_mm`` (None without a landmark or an empty mask). Fractions of an
        empty mask are NaN.

    Raises:
        ValueError: when an array's shape differs from the mask's or ``spacing`` is not 3 positive numbers.
    """
    mask = np.asarray(mask) > 0
    _check_same_shape(mask, hu=np.asarray(hu), **{f"organ {k!r}": np.asarray(v) for k, v in organs.items()})
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing must be 3 positive voxel sizes in mm, got {spacing}")
    count = int(mask.sum())
    voxel_ml = float(np.prod(spacing)) / 1000.0

    def fraction(region: np.ndarray) -> float:
        return float((mask & region).sum() / count) if count else float("nan")

    any_organ = np.zeros_like(mask)
    inside = {}
    for name, organ in organs.items():
        organ = np.asarray(organ) > 0
        inside[name] = fraction(organ)
        any_organ |= organ
    air = np.asarray(hu) < AIR_HU
    outside = ~body_mask(hu)
    centroid = np.argwhere(mask).mean(axis=0) if count else None
    distance = None
    if centroid is not None and landmark is not None:
        distance = float(np.linalg.norm((centroid - np.asarray(landmark, dtype=float)) * np.asarray(spacing, float)))
    return {
        "volume_ml": count * voxel_ml,
        "components": int(ndimage.label(mask)[1]),
        "inside": inside,
        "inside_any_organ": fraction(any_organ),
        "in_air": fraction(air),
        "outside_body": fraction(outside),
        "plausible": fraction(~(any_organ | air | outside)),
        "centroid_voxel": None if centroid is None else [float(c) for c in centroid],
        "landmark_distance_mm": distance,
    }


def dice_on_labelled_slices(mask: np.ndarray, reference: np.ndarray) -> tuple[float, list[int]]:
    """
    Dice of ``mask`` against ``reference`` on the axial slices (third axis) where ``reference`` has foreground, for a
    reference that labels only part of the scan's slices (e.g. a crop). Returns (Dice, those slice indices); Dice is
    NaN when no slice has foreground.

    Raises:
        ValueError: when the shapes differ.
    """
    mask, reference = np.asarray(mask) > 0, np.asarray(reference) > 0
    _check_same_shape(mask, reference=reference)
    slices = [int(z) for z in np.flatnonzero(reference.any(axis=(0, 1)))]
    if not slices:
        return float("nan"), []
    m, r = (torch.from_numpy(np.ascontiguousarray(a[None, None, :, :, slices])) for a in (mask, reference))
    return float(compute_dice(m, r, include_background=True)), slices
