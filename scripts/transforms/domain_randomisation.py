"""
SynthSeg-style domain randomisation of CT (Billot et al., Medical Image Analysis 2023): random intensities per
anatomical structure and random CT artefacts, so that a network trained on them must rely on shape and context.

Noise, reconstruction kernels, resolution and bias fields are MONAI's own transforms (``RandGaussianNoised``,
``RandGaussianSmoothd``, ``RandGaussianSharpend``, ``RandSimulateLowResolutiond``, ``RandBiasFieldd``); see
``configs/domain_randomisation.yaml`` for the whole pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import convert_to_dst_type, convert_to_tensor
from scipy import ndimage

__all__ = ["RandCTArtefactsd", "RandStructureIntensityd"]


def _interval(name: str, value: Sequence[float], low: float = -math.inf) -> tuple[float, float]:
    """``value`` as a ``(min, max)`` pair with ``low <= min <= max``; ValueError naming ``name`` otherwise."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (min, max) pair of numbers, got {value!r}.") from None
    if not (low <= lo <= hi < math.inf):
        bound = "" if low == -math.inf else f"{low} <= "
        raise ValueError(f"{name} must be a finite range with {bound}min <= max, got {value!r}.")
    return lo, hi


def _count_interval(name: str, value: Sequence[int]) -> tuple[int, int]:
    """``value`` as an integer ``(min, max)`` pair with ``1 <= min <= max``; ValueError naming ``name`` otherwise."""
    lo, hi = _interval(name, value, low=1)
    if lo != int(lo) or hi != int(hi):
        raise ValueError(f"{name} must hold integers, got {value!r}.")
    return int(lo), int(hi)


def _probability(name: str, value: float) -> float:
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}.")
    return float(value)


def _blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """
    Gaussian blur (``sigma`` voxels along every spatial axis, edges replicated) of each map of ``maps`` (K, *S);
    ``sigma`` 0: as is. SciPy's separable filter: on CPU about ten times faster than a grouped torch convolution.
    """
    if sigma <= 0:
        return maps
    blurred = [ndimage.gaussian_filter(m, sigma, mode="nearest", truncate=3.0) for m in maps.cpu().numpy()]
    return torch.from_numpy(np.stack(blurred)).to(maps.device)


class RandStructureIntensityd(RandomizableTransform, MapTransform):
    """
    Give every anatomical structure of ``organ_key`` a random intensity, contrast and texture (per call, one draw
    shared by all ``keys``).

    Each distinct value ``s`` of the organ map is one structure (labels are not interpreted, so any label table
    works, with any number of labels). With ``mu_s`` the structure's mean intensity in the image (per channel),
    its voxels become::

        image' = m_s + f_s * (image - mu_s) + t_s * noise

    ``m_s``: a new mean drawn uniformly from ``mean_range``; ``f_s``: a contrast factor drawn uniformly from
    ``contrast_range``, which scales the structure's own texture, noise and internal contrast (e.g. the air in a
    bowel loop); ``t_s``: the amplitude (drawn from ``texture_std_range``, when a texture is drawn with probability
    ``texture_prob``) of one unit-variance Gaussian noise field smoothed with a random ``texture_sigma_range``
    (correlated noise of random grain, with a different amplitude in every structure).

    - "random" mode: the new means are independent, so any structure may become brighter or darker than any other.
    - "plausible" mode (probability ``plausible_prob`` per call): the same draws, sorted and assigned in the order
      of the structures' current means (channel 0), so the intensity order of the structures is kept (fat below
      soft tissue below contrast-enhanced vessels below bone): new contrast phases, scanners or tube voltages.

    Borders: the per-structure maps ``m_s - f_s * mu_s``, ``f_s`` and ``t_s`` are painted on the organ map and
    blurred with a Gaussian of ``blend_sigma`` voxels before they are applied. As the blur is linear this is the
    same as blending the structures' mappings with Gaussian-blurred one-hot weights
    (``sum_s blur(onehot_s) * mapping_s(image)``): a voxel on a border, whose intensity is already a partial-volume
    mix of both tissues, is mapped by the matching mix of both mappings, so borders keep a smooth transition
    instead of a one-voxel seam of the hard label; voxels farther than about ``3 * blend_sigma`` from a border get
    exactly their structure's mapping.

    Args:
        keys: image keys, channel-first ``(C, *S)`` arrays (numpy or torch, ``MetaTensor`` meta kept), any units
            (the ranges are in the same units: HU in ``configs/domain_randomisation.yaml``).
        organ_key: the organ map, ``(1, *S)``, one integer value per structure; it is left unchanged.
        mean_range: (min, max) of the new structure means (the default: the HU window [-160, 240] +- 40).
        contrast_range: (min, max) of the contrast factors, >= 0 (0 flattens a structure to its mean, 1 keeps its
            texture).
        plausible_prob: probability of the order-keeping "plausible" mode.
        blend_sigma: Gaussian sigma in voxels of the blend at structure borders, >= 0 (0: hard borders).
        texture_prob: probability of adding the correlated texture.
        texture_std_range: (min, max) of the texture amplitude per structure, >= 0.
        texture_sigma_range: (min, max) of the texture grain (Gaussian sigma of the smoothing, voxels), >= 0.
        prob: probability of changing anything at all; otherwise the data is returned unchanged.
        allow_missing_keys: as ``MapTransform`` (the organ map must be present whenever an image key is).

    Raises:
        ValueError: at construction, for a range that is not a finite (min, max) pair with min <= max, a negative
            ``contrast_range``, ``texture_std_range``, ``texture_sigma_range`` or ``blend_sigma``, a probability
            outside [0, 1] or ``organ_key`` among ``keys``; the message names the argument.
    """

    def __init__(
        self,
        keys: KeysCollection,
        organ_key: str,
        mean_range: Sequence[float] = (-200.0, 280.0),
        contrast_range: Sequence[float] = (0.5, 1.5),
        plausible_prob: float = 0.5,
        blend_sigma: float = 1.0,
        texture_prob: float = 0.0,
        texture_std_range: Sequence[float] = (0.0, 20.0),
        texture_sigma_range: Sequence[float] = (0.5, 2.0),
        prob: float = 1.0,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, _probability("prob", prob))
        if organ_key in self.keys:
            raise ValueError(f"organ_key {organ_key!r} must not be one of keys {self.keys}: the map stays unchanged.")
        self.organ_key = organ_key
        self.mean_range = _interval("mean_range", mean_range)
        self.contrast_range = _interval("contrast_range", contrast_range, low=0.0)
        self.plausible_prob = _probability("plausible_prob", plausible_prob)
        if not 0.0 <= float(blend_sigma) < math.inf:
            raise ValueError(f"blend_sigma must be a finite number >= 0, got {blend_sigma!r}.")
        self.blend_sigma = float(blend_sigma)
        self.texture_prob = _probability("texture_prob", texture_prob)
        self.texture_std_range = _interval("texture_std_range", texture_std_range, low=0.0)
        self.texture_sigma_range = _interval("texture_sigma_range", texture_sigma_range, low=0.0)
        self.parameters: dict[str, Any] = {}

    def randomize(self, num_structures: int) -> None:
        """
        Draw, for ``num_structures`` structures, ``parameters``: ``means`` and ``factors`` (each (N,) float64),
        ``plausible`` (bool; the means are then sorted), ``texture_stds`` ((N,) float64; None without texture),
        ``texture_sigma`` and ``texture_seed`` (an int seeding the texture's noise field; None without texture).
        Call ``RandomizableTransform.randomize`` first for ``_do_transform``.
        """
        means = self.R.uniform(*self.mean_range, size=num_structures)
        factors = self.R.uniform(*self.contrast_range, size=num_structures)
        plausible = bool(self.R.rand() < self.plausible_prob)
        texture = bool(self.R.rand() < self.texture_prob)
        self.parameters = dict(
            means=np.sort(means) if plausible else means,
            factors=factors,
            plausible=plausible,
            texture_stds=self.R.uniform(*self.texture_std_range, size=num_structures) if texture else None,
            texture_sigma=float(self.R.uniform(*self.texture_sigma_range)) if texture else 0.0,
            texture_seed=int(self.R.randint(2**31)) if texture else None,
        )

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        """
        Raises:
            KeyError: when an image key is present and the organ map is not.
            ValueError: when the organ map is not ``(1, *S)`` with the image's spatial shape ``S``.
        """
        d = dict(data)
        RandomizableTransform.randomize(self, None)
        keys = list(self.key_iterator(d))
        if not self._do_transform or not keys:
            return d
        if self.organ_key not in d:
            raise KeyError(f"RandStructureIntensityd needs the organ map {self.organ_key!r} beside {keys}.")
        organs = convert_to_tensor(d[self.organ_key], track_meta=False)
        structures = inverse = None
        for key in keys:
            image = d[key]
            if organs.ndim != image.ndim or organs.shape[0] != 1 or tuple(organs.shape[1:]) != tuple(image.shape[1:]):
                raise ValueError(
                    f"the organ map {self.organ_key!r} must be (1, *S) with the spatial shape of {key!r} "
                    f"{tuple(image.shape[1:])}, got {tuple(organs.shape)}."
                )
            if inverse is None:
                structures, inverse = torch.unique(organs[0], sorted=True, return_inverse=True)
                self.randomize(len(structures))
            device = image.device if isinstance(image, torch.Tensor) else torch.device("cpu")
            d[key] = self.randomise_image(image, inverse.to(device), len(structures))
        return d

    def randomise_image(self, image: NdarrayOrTensor, inverse: torch.Tensor, num_structures: int) -> NdarrayOrTensor:
        """
        Apply the drawn ``parameters`` to ``image`` (C, *S).

        Args:
            image: the image, any type; the output has its type, dtype, device and meta.
            inverse: (*S) int64, the index in ``0..num_structures-1`` of every voxel's structure.
            num_structures: the number of structures.
        """
        img = convert_to_tensor(image, track_meta=False).to(torch.float32)
        p = self.parameters
        flat = inverse.reshape(-1)
        counts = torch.bincount(flat, minlength=num_structures).clamp_min(1).to(torch.float64)
        mu = torch.stack([torch.bincount(flat, weights=c.reshape(-1).double(), minlength=num_structures) for c in img])
        mu = mu / counts  # (C, N) structure means
        new_means = torch.as_tensor(p["means"], dtype=torch.float64, device=img.device)
        if p["plausible"]:  # the sorted draws go to the structures in the order of their current means
            ordered = torch.empty_like(new_means)
            ordered[torch.argsort(mu[0], stable=True)] = new_means
            new_means = ordered
        factors = torch.as_tensor(p["factors"], dtype=torch.float64, device=img.device)
        offsets = (new_means[None] - factors[None] * mu).to(torch.float32)  # (C, N)
        maps = [offsets[c][inverse] for c in range(img.shape[0])] + [factors.to(torch.float32)[inverse]]
        if p["texture_stds"] is not None:
            maps.append(torch.as_tensor(p["texture_stds"], dtype=torch.float32, device=img.device)[inverse])
        maps = _blur(torch.stack(maps), self.blend_sigma)
        out = maps[: img.shape[0]] + maps[img.shape[0]] * img
        if p["texture_stds"] is not None:
            generator = torch.Generator().manual_seed(p["texture_seed"])
            noise = torch.randn(inverse.shape, generator=generator, dtype=torch.float32).to(img.device)
            noise = _blur(noise[None], p["texture_sigma"])[0]
            noise = noise / noise.std().clamp_min(1e-6)
            out = out + maps[-1] * noise
        return convert_to_dst_type(out, dst=image, dtype=image.dtype)[0]


class RandCTArtefactsd(RandomizableTransform, MapTransform):
    """
    Add random CT artefacts inside the body: photon-starvation streaks, beam-hardening cupping and metal.

    The image is a channel-first 3D CT ``(C, X, Y, Z)`` whose axial plane is spatial axes 0 and 1 (slices along
    axis 2, as after ``Orientationd`` to RAS or LPS); sizes are in voxels and amplitudes in the image's units
    (HU in ``configs/domain_randomisation.yaml``: apply it before windowing). The body is ``body_key > 0`` when
    ``body_key`` is given, else ``image > body_threshold`` (channel 0 of the first key, before any artefact);
    voxels outside it are never changed. Each artefact is drawn with its own probability per call:

    - streaks (``streak_prob``): ``streak_count`` straight dark (2/3) or bright lines through one random body voxel
      (each line with a random angle, an offset of a few voxels, a width from ``streak_width`` and a Gaussian
      extent of 3 to 15 slices), with dark-rimmed profiles; the summed field is clipped to [-1, 1] and scaled by
      an amplitude from ``streak_amplitude``: ``|change| <= streak_amplitude[1]``.
    - cupping (``cupping_prob``): the body centre darker than its periphery, ``-a * max(0, 1 - r**2)`` with ``r``
      the elliptic radius normalised by the body's in-plane extent in each slice and ``a`` from
      ``cupping_amplitude``: ``0 <= darkening <= cupping_amplitude[1]``.
    - metal (``metal_prob``): a ball of radius ``metal_radius`` around a random body voxel set to an intensity from
      ``metal_intensity`` (one-voxel partial-volume rim), and ``metal_streak_count`` rays from its centre in the
      axial plane, dark (3/5) or bright, decaying with the distance, over the slices near the ball, clipped to
      [-1, 1] and scaled by ``metal_streak_amplitude``: ``|change| <= metal_streak_amplitude[1]`` outside the ball.

    Outside the metal ball the total change is therefore at most
    ``streak_amplitude[1] + cupping_amplitude[1] + metal_streak_amplitude[1]``.

    Args:
        keys: image keys, ``(C, X, Y, Z)`` arrays (numpy or torch, ``MetaTensor`` meta kept); every channel gets
            the same artefacts.
        body_key: a body mask or organ map ``(1, X, Y, Z)`` (> 0 is the body); None: threshold the image.
        body_threshold: the body threshold on the image when ``body_key`` is None (HU: -500 separates air).
        streak_prob, cupping_prob, metal_prob: probability of each artefact per call.
        streak_amplitude, cupping_amplitude, metal_streak_amplitude: (min, max) amplitudes, >= 0.
        streak_count, metal_streak_count: (min, max) numbers of lines and rays, integers >= 1.
        streak_width: (min, max) line widths (Gaussian sigma, voxels), > 0.
        metal_intensity: (min, max) intensity of the metal ball.
        metal_radius: (min, max) radius of the metal ball, voxels, > 0.
        prob: probability of drawing any artefact at all; otherwise the data is returned unchanged.
        allow_missing_keys: as ``MapTransform``.

    Raises:
        ValueError: at construction, for a probability outside [0, 1], a range that is not a finite (min, max)
            pair with min <= max, a negative amplitude, a non-positive width or radius or a count that is not an
            integer >= 1; the message names the argument.
    """

    def __init__(
        self,
        keys: KeysCollection,
        body_key: str | None = None,
        body_threshold: float = -500.0,
        streak_prob: float = 0.25,
        streak_amplitude: Sequence[float] = (20.0, 80.0),
        streak_count: Sequence[int] = (4, 12),
        streak_width: Sequence[float] = (0.5, 2.0),
        cupping_prob: float = 0.25,
        cupping_amplitude: Sequence[float] = (10.0, 50.0),
        metal_prob: float = 0.1,
        metal_intensity: Sequence[float] = (2000.0, 3000.0),
        metal_radius: Sequence[float] = (1.0, 3.0),
        metal_streak_amplitude: Sequence[float] = (100.0, 400.0),
        metal_streak_count: Sequence[int] = (8, 24),
        prob: float = 1.0,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, _probability("prob", prob))
        if body_key is not None and body_key in self.keys:
            raise ValueError(f"body_key {body_key!r} must not be one of keys {self.keys}.")
        self.body_key = body_key
        if not math.isfinite(float(body_threshold)):
            raise ValueError(f"body_threshold must be a finite number, got {body_threshold!r}.")
        self.body_threshold = float(body_threshold)
        self.streak_prob = _probability("streak_prob", streak_prob)
        self.streak_amplitude = _interval("streak_amplitude", streak_amplitude, low=0.0)
        self.streak_count = _count_interval("streak_count", streak_count)
        self.streak_width = _interval("streak_width", streak_width, low=1e-3)
        self.cupping_prob = _probability("cupping_prob", cupping_prob)
        self.cupping_amplitude = _interval("cupping_amplitude", cupping_amplitude, low=0.0)
        self.metal_prob = _probability("metal_prob", metal_prob)
        self.metal_intensity = _interval("metal_intensity", metal_intensity)
        self.metal_radius = _interval("metal_radius", metal_radius, low=1e-3)
        self.metal_streak_amplitude = _interval("metal_streak_amplitude", metal_streak_amplitude, low=0.0)
        self.metal_streak_count = _count_interval("metal_streak_count", metal_streak_count)
        self.parameters: dict[str, Any] = {}

    def _body_voxel(self, body: np.ndarray) -> np.ndarray:
        """A random voxel of ``body`` (X, Y, Z) as a float64 (3,) index."""
        index = np.flatnonzero(body)[self.R.randint(int(body.sum()))]
        return np.asarray(np.unravel_index(index, body.shape), dtype=np.float64)

    def randomize(self, body: np.ndarray) -> None:
        """
        Draw ``parameters``: ``streaks``, ``cupping`` and ``metal``, each None when not drawn, else a dict of its
        parameters (centres from voxels of ``body``, (X, Y, Z) bool). Call ``RandomizableTransform.randomize`` first.
        """
        self.parameters = dict(streaks=None, cupping=None, metal=None)
        if self.R.rand() < self.streak_prob:
            n = self.R.randint(self.streak_count[0], self.streak_count[1] + 1)
            self.parameters["streaks"] = dict(
                centre=self._body_voxel(body),
                amplitude=float(self.R.uniform(*self.streak_amplitude)),
                angles=self.R.uniform(0.0, np.pi, n),
                offsets=self.R.normal(0.0, 3.0, n),
                widths=self.R.uniform(*self.streak_width, n),
                signs=np.where(self.R.rand(n) < 2 / 3, -1.0, 1.0),
                slice_centres=self.R.uniform(0, body.shape[2] - 1, n),
                slice_sigmas=self.R.uniform(3.0, 15.0, n),
            )
        if self.R.rand() < self.cupping_prob:
            self.parameters["cupping"] = dict(amplitude=float(self.R.uniform(*self.cupping_amplitude)))
        if self.R.rand() < self.metal_prob:
            n = self.R.randint(self.metal_streak_count[0], self.metal_streak_count[1] + 1)
            self.parameters["metal"] = dict(
                centre=self._body_voxel(body),
                intensity=float(self.R.uniform(*self.metal_intensity)),
                radius=float(self.R.uniform(*self.metal_radius)),
                amplitude=float(self.R.uniform(*self.metal_streak_amplitude)),
                angles=self.R.uniform(0.0, 2 * np.pi, n),
                widths=self.R.uniform(0.5, 1.5, n),
                signs=np.where(self.R.rand(n) < 3 / 5, -1.0, 1.0),
            )

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        """
        Raises:
            KeyError: when ``body_key`` is given and missing.
            ValueError: when an image is not ``(C, X, Y, Z)`` or the body mask is not ``(1, X, Y, Z)`` with its shape.
        """
        d = dict(data)
        RandomizableTransform.randomize(self, None)
        keys = list(self.key_iterator(d))
        if not self._do_transform or not keys:
            return d
        first = d[keys[0]]
        if first.ndim != 4:
            raise ValueError(f"{keys[0]!r} must be a (C, X, Y, Z) array, got shape {tuple(first.shape)}.")
        if self.body_key is not None:
            if self.body_key not in d:
                raise KeyError(f"RandCTArtefactsd needs the body mask {self.body_key!r} beside {keys}.")
            body_source = convert_to_tensor(d[self.body_key], track_meta=False)
            if body_source.ndim != 4 or body_source.shape[0] != 1 or body_source.shape[1:] != first.shape[1:]:
                raise ValueError(
                    f"the body mask {self.body_key!r} must be (1, *S) with S = {tuple(first.shape[1:])}, "
                    f"got {tuple(body_source.shape)}."
                )
            body = body_source[0].cpu().numpy() > 0
        else:
            body = convert_to_tensor(first, track_meta=False)[0].cpu().numpy() > self.body_threshold
        if not body.any():
            return d
        self.randomize(body)
        change, metal = self.artefact_fields(body)
        if change is None and metal is None:
            return d
        for key in keys:
            image = d[key]
            if tuple(image.shape[1:]) != body.shape:
                raise ValueError(f"{key!r} has spatial shape {tuple(image.shape[1:])}, {keys[0]!r} {body.shape}.")
            img = convert_to_tensor(image, track_meta=False).to(torch.float32)
            if change is not None:
                img = img + torch.from_numpy(change).to(img.device)
            if metal is not None:
                blob = torch.from_numpy(metal).to(img.device)
                img = img + blob * (self.parameters["metal"]["intensity"] - img)
            d[key] = convert_to_dst_type(img, dst=image, dtype=image.dtype)[0]
        return d

    def artefact_fields(self, body: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """
        The drawn artefacts on ``body`` (X, Y, Z) bool: the additive change (X, Y, Z) float32 (streaks, cupping and
        metal streaks, zero outside the body and inside the metal ball) and the metal ball's occupancy (X, Y, Z)
        float32 in [0, 1] (zero outside the body); each None when not drawn.
        """
        p = self.parameters
        shape = body.shape
        x = np.arange(shape[0], dtype=np.float64)[:, None]
        y = np.arange(shape[1], dtype=np.float64)[None, :]
        z = np.arange(shape[2], dtype=np.float64)
        change = np.zeros(shape, dtype=np.float64) if any(v is not None for v in p.values()) else None
        if p["streaks"] is not None:
            s = p["streaks"]
            planes, extents = [], []
            for angle, offset, width, sign, zc, zs in zip(
                s["angles"], s["offsets"], s["widths"], s["signs"], s["slice_centres"], s["slice_sigmas"]
            ):
                dist = (x - s["centre"][0]) * math.sin(angle) - (y - s["centre"][1]) * math.cos(angle) - offset
                # a line with dark (or bright) core and opposite rims; peak |value| 1
                core = np.exp(-0.5 * (dist / width) ** 2) - 0.5 * np.exp(-0.5 * (dist / (2.5 * width)) ** 2)
                planes.append(sign * 2.0 * core)
                extents.append(np.exp(-0.5 * ((z - zc) / zs) ** 2))
            field = np.clip(np.einsum("nxy,nz->xyz", np.stack(planes), np.stack(extents)), -1.0, 1.0)
            change += s["amplitude"] * field
        if p["cupping"] is not None:
            change -= p["cupping"]["amplitude"] * _cupping(body)
        metal = None
        if p["metal"] is not None:
            m = p["metal"]
            cx, cy, cz = m["centre"]
            radius = m["radius"]
            distance = np.sqrt(((x - cx) ** 2 + (y - cy) ** 2)[:, :, None] + (z - cz) ** 2)
            metal = np.clip(radius + 0.5 - distance, 0.0, 1.0) * body
            rays = np.zeros(shape[:2], dtype=np.float64)
            for angle, width, sign in zip(m["angles"], m["widths"], m["signs"]):
                along = (x - cx) * math.cos(angle) + (y - cy) * math.sin(angle)
                across = -(x - cx) * math.sin(angle) + (y - cy) * math.cos(angle)
                decay = 1.0 / (1.0 + np.maximum(along, 0.0) / (8.0 * radius))
                rays += sign * (along > 0) * np.exp(-0.5 * (across / width) ** 2) * decay
            extent = np.exp(-0.5 * ((z - cz) / (radius + 2.0)) ** 2)
            change += m["amplitude"] * np.clip(rays, -1.0, 1.0)[:, :, None] * extent * (1.0 - metal)
            metal = metal.astype(np.float32)
        if change is not None:
            change = (change * body).astype(np.float32)
        return change, metal


def _cupping(body: np.ndarray) -> np.ndarray:
    """``max(0, 1 - r**2)`` per axial slice of ``body`` (X, Y, Z) bool, ``r`` normalised by the slice's body extent."""
    out = np.zeros(body.shape, dtype=np.float64)
    coords = [np.arange(n, dtype=np.float64) for n in body.shape[:2]]
    radius2 = np.zeros(body.shape, dtype=np.float64)
    present = body.any(axis=(0, 1))
    for axis, other in ((0, 1), (1, 0)):
        occupied = body.any(axis=other)  # (X or Y, Z): the body's extent along ``axis`` in each slice
        first = np.argmax(occupied, axis=0).astype(np.float64)
        last = occupied.shape[0] - 1 - np.argmax(occupied[::-1], axis=0).astype(np.float64)
        centre, half = 0.5 * (first + last), 0.5 * (last - first) + 0.5
        normalised = (coords[axis][:, None] - centre[None]) / half[None]  # (X or Y, Z)
        radius2 += np.expand_dims(normalised**2, other)
    out[:, :, present] = np.clip(1.0 - radius2[:, :, present], 0.0, 1.0)
    return out * body
