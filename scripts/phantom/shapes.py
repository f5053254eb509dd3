"""Implicit shapes of the phantom: approximate signed distance fields in world millimetres.

World coordinates are patient RAS+ millimetres: +x points to the patient's Right, +y Anterior,
+z Superior. A shape's ``sdf`` is negative inside, positive outside and roughly equal to the
Euclidean distance to the surface near it, which is all that partial-volume occupancy needs.

Shapes are evaluated on a sub-box (``Region``) of an axis-aligned ``Grid`` through broadcastable
coordinate vectors ``x`` of shape (n0, 1, 1), ``y`` (1, n1, 1) and ``z`` (1, 1, n2); a shape that
does not depend on z (an extrusion) returns an array of shape (n0, n1, 1), one that depends on z
only returns (1, 1, n2). Everything is float32 and deterministic.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import CubicSpline

Region = tuple[slice, slice, slice]
"""Index box of a grid, one slice per array axis."""

Coords = tuple[np.ndarray, np.ndarray, np.ndarray]
"""World mm coordinates, float32: broadcastable x (n0,1,1), y (1,n1,1), z (1,1,n2) of a region, or three
equally long 1-D arrays of scattered points (accepted by the point-wise shapes and by ``SmoothNoise``)."""

Bounds = tuple[np.ndarray, np.ndarray]
"""Axis-aligned world box (lo, hi), each a float64 array of shape (3,) in mm; may hold +-inf."""

_INF_BOUNDS: Bounds = (np.full(3, -np.inf), np.full(3, np.inf))


@dataclass(frozen=True)
class Grid:
    """Axis-aligned voxel grid in world mm; voxel (i, j, k) has its centre at origin + (i, j, k) * spacing."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]

    @property
    def voxel_size(self) -> float:
        """Geometric mean of the spacing (mm): the width of the partial-volume transition."""
        return float(np.prod(self.spacing) ** (1.0 / 3.0))

    def axis(self, dim: int) -> np.ndarray:
        """World coordinates (mm, float32) of the voxel centres along array axis ``dim``."""
        return (self.origin[dim] + self.spacing[dim] * np.arange(self.shape[dim])).astype(np.float32)

    def region(self, bounds: Bounds, pad: float) -> Region | None:
        """Smallest index box covering ``bounds`` grown by ``pad`` mm, clipped to the grid; None if empty."""
        slices = []
        for dim in range(3):
            lo = (bounds[0][dim] - pad - self.origin[dim]) / self.spacing[dim]
            hi = (bounds[1][dim] + pad - self.origin[dim]) / self.spacing[dim]
            start = 0 if lo == -np.inf else max(0, math.floor(lo))
            stop = self.shape[dim] if hi == np.inf else min(self.shape[dim], math.ceil(hi) + 1)
            if stop <= start:
                return None
            slices.append(slice(start, stop))
        return slices[0], slices[1], slices[2]

    def coords(self, region: Region) -> Coords:
        """Broadcastable world coordinates (mm) of the voxel centres of ``region``."""
        x = self.axis(0)[region[0]][:, None, None]
        y = self.axis(1)[region[1]][None, :, None]
        z = self.axis(2)[region[2]][None, None, :]
        return x, y, z


def occupancy(sdf: np.ndarray, width: float) -> np.ndarray:
    """Soft partial-volume occupancy in [0, 1] (float32) of a signed distance field (mm) for voxel size ``width``."""
    occ = np.subtract(np.float32(0.5), sdf / np.float32(width), dtype=np.float32)
    return np.clip(occ, 0.0, 1.0, out=occ)


def rotation(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """Rotation matrix (3, 3) from angles in degrees about z (yaw), y (pitch) and x (roll), applied in that order."""
    cz, sz = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
    cy, sy = math.cos(math.radians(pitch)), math.sin(math.radians(pitch))
    cx, sx = math.cos(math.radians(roll)), math.sin(math.radians(roll))
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    return rz @ ry @ rx


class Shape(ABC):
    """An implicit solid with a conservative world bounding box."""

    @property
    @abstractmethod
    def bounds(self) -> Bounds:
        """World box (mm) outside which the shape is empty."""

    @abstractmethod
    def sdf(self, c: Coords) -> np.ndarray:
        """Approximate signed distance (mm, float32, negative inside) at the broadcastable coordinates ``c``."""


@dataclass(frozen=True, eq=False)
class SmoothNoise:
    """Stationary smooth random field (approximately zero mean, unit variance) as a sum of random plane waves.

    The wave vectors follow a Gaussian spectrum, so the field approximates a Gaussian process with a
    squared-exponential correlation of length ``length_mm``; it is defined in world mm and therefore
    independent of the grid it is sampled on.
    """

    frequencies: np.ndarray  # (K, 3) rad/mm
    phases: np.ndarray  # (K,) rad

    @classmethod
    def sample(cls, rng: np.random.Generator, length_mm: float, waves: int = 8) -> SmoothNoise:
        """Draw a field with correlation length ``length_mm`` made of ``waves`` plane waves."""
        freqs = rng.normal(0.0, 1.0 / length_mm, size=(waves, 3))
        return cls(freqs.astype(np.float32), rng.uniform(0, 2 * np.pi, size=waves).astype(np.float32))

    def __call__(self, c: Coords) -> np.ndarray:
        """Field values (float32) at the broadcastable coordinates ``c``."""
        x, y, z = c
        total = None
        for (fx, fy, fz), phase in zip(self.frequencies, self.phases):
            wave = np.cos((fx * x + fy * y) + (fz * z + phase))
            total = wave if total is None else np.add(total, wave, out=total)
        return total * np.float32(math.sqrt(2.0 / len(self.phases)))


@dataclass(frozen=True, eq=False)
class Ellipsoid(Shape):
    """Ellipsoid with world ``centre`` (mm), ``semi_axes`` (mm) and ``orientation`` (columns = local axes)."""

    centre: np.ndarray
    semi_axes: np.ndarray
    orientation: np.ndarray = field(default_factory=lambda: np.eye(3))

    @property
    def bounds(self) -> Bounds:
        half = np.sqrt(((self.orientation * np.asarray(self.semi_axes)[None, :]) ** 2).sum(axis=1))
        return np.asarray(self.centre) - half, np.asarray(self.centre) + half

    def sdf(self, c: Coords) -> np.ndarray:
        rel = [ci - np.float32(self.centre[i]) for i, ci in enumerate(c)]
        rho2, grad2 = None, None
        for axis in range(3):
            r = self.orientation[:, axis]
            u = (np.float32(r[0]) * rel[0] + np.float32(r[1]) * rel[1]) + np.float32(r[2]) * rel[2]
            u = u / np.float32(self.semi_axes[axis])
            term, gterm = u * u, (u / np.float32(self.semi_axes[axis])) ** 2
            rho2 = term if rho2 is None else rho2 + term
            grad2 = gterm if grad2 is None else grad2 + gterm
        rho = np.sqrt(rho2)
        # first-order distance (rho - 1) / |grad rho|, with |grad rho| = sqrt(grad2) / rho
        return (rho2 - rho) / np.sqrt(np.maximum(grad2, np.float32(1e-12)))


@dataclass(frozen=True, eq=False)
class SuperEllipse(Shape):
    """Infinite z-extrusion of the 2-D super-ellipse |dx/a|^p + |dy/b|^p <= 1 centred at ``centre_xy``.

    ``b_anterior`` applies where dy > 0 and ``b_posterior`` where dy < 0 (an egg-shaped body section).
    The distance is the algebraic level set divided by its gradient norm, computed in 2-D.
    """

    centre_xy: tuple[float, float]
    a: float
    b_anterior: float
    b_posterior: float
    exponent: float

    @property
    def bounds(self) -> Bounds:
        cx, cy = self.centre_xy
        lo = np.array([cx - self.a, cy - self.b_posterior, -np.inf])
        hi = np.array([cx + self.a, cy + self.b_anterior, np.inf])
        return lo, hi

    def sdf(self, c: Coords) -> np.ndarray:
        f32 = np.float32
        return _superellipse_sdf(
            c, self.centre_xy, f32(self.a), f32(self.b_anterior), f32(self.b_posterior), f32(self.exponent)
        )


def _superellipse_sdf(
    c: Coords,
    centre_xy: tuple[float, float],
    a: np.ndarray | np.float32,
    b_anterior: np.ndarray | np.float32,
    b_posterior: np.ndarray | np.float32,
    p: np.float32,
) -> np.ndarray:
    """Distance to the super-ellipse section at ``c``; the semi-axes are float32 scalars or arrays broadcastable
    to z (shape (1, 1, n2), or (N,) for scattered points) for a section varying along z."""
    ux = np.maximum(np.abs(c[0] - np.float32(centre_xy[0])) / a, np.float32(1e-6))
    dy = c[1] - np.float32(centre_xy[1])
    b = np.where(dy > 0, b_anterior, b_posterior)
    uy = np.maximum(np.abs(dy) / b, np.float32(1e-6))
    px, py = ux**p, uy**p  # (n0,1,1), (1,n1,1) for a z-invariant section
    s = px + py
    f = s ** (1 / p)
    # d f / d x = f^(1-p) * ux^(p-1) / a  (same for y)
    gx = (px / ux) / a
    gy = (py / uy) / b
    grad = f / s * np.sqrt(gx * gx + gy * gy)
    return (f - 1) / np.maximum(grad, np.float32(1e-9))


@dataclass(frozen=True, eq=False)
class LoftedSuperEllipse(Shape):
    """Super-ellipse section (as ``SuperEllipse``) whose semi-axes vary piecewise linearly along z.

    ``z_knots`` (K,) mm, strictly increasing; ``a``, ``b_anterior``, ``b_posterior`` (K,) mm, positive: the
    semi-axes at the knots, held constant beyond the first and last knot. The distance is the in-plane distance
    to the section at each z (the surface slope along z is neglected, which suits a body outline).

    Raises:
        ValueError: if the knot arrays differ in length, the knots do not increase or a semi-axis is not positive.
    """

    centre_xy: tuple[float, float]
    z_knots: np.ndarray
    a: np.ndarray
    b_anterior: np.ndarray
    b_posterior: np.ndarray
    exponent: float

    def __post_init__(self) -> None:
        arrays = [np.asarray(v, float) for v in (self.z_knots, self.a, self.b_anterior, self.b_posterior)]
        if len({len(v) for v in arrays}) != 1 or arrays[0].ndim != 1 or len(arrays[0]) < 1:
            raise ValueError("LoftedSuperEllipse: z_knots, a, b_anterior and b_posterior must be 1-D of one length")
        if np.any(np.diff(arrays[0]) <= 0):
            raise ValueError(f"LoftedSuperEllipse: z_knots must increase strictly, got {arrays[0].tolist()}")
        if min(float(v.min()) for v in arrays[1:]) <= 0 or self.exponent <= 0:
            raise ValueError("LoftedSuperEllipse: semi-axes and exponent must be positive")
        for name, value in zip(("z_knots", "a", "b_anterior", "b_posterior"), arrays):
            object.__setattr__(self, name, value)

    def section(self, z: float) -> SuperEllipse:
        """The z-invariant super-ellipse of the section at height ``z`` (mm)."""
        a, b_ant, b_post = (float(np.interp(z, self.z_knots, v)) for v in (self.a, self.b_anterior, self.b_posterior))
        return SuperEllipse(self.centre_xy, a, b_ant, b_post, self.exponent)

    @property
    def bounds(self) -> Bounds:
        cx, cy = self.centre_xy
        lo = np.array([cx - self.a.max(), cy - self.b_posterior.max(), -np.inf])
        hi = np.array([cx + self.a.max(), cy + self.b_anterior.max(), np.inf])
        return lo, hi

    def sdf(self, c: Coords) -> np.ndarray:
        z = np.asarray(c[2])
        knots = (self.a, self.b_anterior, self.b_posterior)
        a, b_ant, b_post = (np.interp(z, self.z_knots, v).astype(np.float32) for v in knots)
        return _superellipse_sdf(c, self.centre_xy, a, b_ant, b_post, np.float32(self.exponent))


@dataclass(frozen=True, eq=False)
class EllipticCylinder(Shape):
    """Infinite z-extrusion of an ellipse with ``centre_xy``, ``semi_axes`` (mm) and in-plane ``angle_deg``."""

    centre_xy: tuple[float, float]
    semi_axes: tuple[float, float]
    angle_deg: float = 0.0

    @property
    def bounds(self) -> Bounds:
        r = max(self.semi_axes)
        lo = np.array([self.centre_xy[0] - r, self.centre_xy[1] - r, -np.inf])
        hi = np.array([self.centre_xy[0] + r, self.centre_xy[1] + r, np.inf])
        return lo, hi

    def sdf(self, c: Coords) -> np.ndarray:
        ca, sa = np.float32(math.cos(math.radians(self.angle_deg))), np.float32(math.sin(math.radians(self.angle_deg)))
        dx, dy = c[0] - np.float32(self.centre_xy[0]), c[1] - np.float32(self.centre_xy[1])
        a, b = np.float32(self.semi_axes[0]), np.float32(self.semi_axes[1])
        u, v = (ca * dx + sa * dy) / a, (ca * dy - sa * dx) / b
        rho2 = u * u + v * v
        grad = np.sqrt((u / a) ** 2 + (v / b) ** 2)
        return (rho2 - np.sqrt(rho2)) / np.maximum(grad, np.float32(1e-9))


@dataclass(frozen=True, eq=False)
class ZPeriodic(Shape):
    """Union of the z-intervals [phase + k * period, phase + k * period + length] over all integers k."""

    period: float
    length: float
    phase: float

    @property
    def bounds(self) -> Bounds:
        return _INF_BOUNDS

    def sdf(self, c: Coords) -> np.ndarray:
        half = np.float32(self.length / 2)
        rel = np.mod(c[2] - np.float32(self.phase + self.length / 2), np.float32(self.period))
        dist = np.minimum(rel, np.float32(self.period) - rel)  # distance to the nearest interval centre
        return dist - half


@dataclass(frozen=True, eq=False)
class ZSlab(Shape):
    """The slab ``lo <= z <= hi`` (mm); either end may be infinite.

    Raises:
        ValueError: if ``lo > hi``.
    """

    lo: float
    hi: float

    def __post_init__(self) -> None:
        if not self.lo <= self.hi:
            raise ValueError(f"ZSlab: lo must be <= hi, got {self.lo}, {self.hi}")

    @property
    def bounds(self) -> Bounds:
        return np.array([-np.inf, -np.inf, self.lo]), np.array([np.inf, np.inf, self.hi])

    def sdf(self, c: Coords) -> np.ndarray:
        z = c[2]
        return np.maximum(np.float32(self.lo) - z, z - np.float32(self.hi))


@dataclass(frozen=True, eq=False)
class HalfSpace(Shape):
    """Points p with (p - point) . normal < 0; ``normal`` is normalised on construction."""

    point: np.ndarray
    normal: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "normal", np.asarray(self.normal, float) / np.linalg.norm(self.normal))

    @property
    def bounds(self) -> Bounds:
        return _INF_BOUNDS

    def sdf(self, c: Coords) -> np.ndarray:
        n, p = self.normal.astype(np.float32), self.point
        return (n[0] * (c[0] - np.float32(p[0])) + n[1] * (c[1] - np.float32(p[1]))) + n[2] * (c[2] - np.float32(p[2]))


@dataclass(frozen=True, eq=False)
class NoiseLevel(Shape):
    """Excursion set {noise > level} of a smooth field, with distance approximated as (level - noise) * scale_mm."""

    noise: SmoothNoise
    level: float
    scale_mm: float

    @property
    def bounds(self) -> Bounds:
        return _INF_BOUNDS

    def sdf(self, c: Coords) -> np.ndarray:
        return (np.float32(self.level) - self.noise(c)) * np.float32(self.scale_mm)


@dataclass(frozen=True, eq=False)
class Tube(Shape):
    """Swept sphere of varying radius along a polyline ``points`` (N, 3) mm with ``radii`` (N,) mm.

    The distance is the minimum over segments of (distance to the segment - interpolated radius),
    evaluated segment by segment inside each segment's own padded box.
    """

    points: np.ndarray
    radii: np.ndarray
    pad: float = 8.0  # mm beyond the radius where the distance must be exact (perturbations, partial volume)

    @classmethod
    def through(
        cls, control_points: np.ndarray, control_radii: np.ndarray, step: float = 5.0, pad: float = 8.0
    ) -> Tube:
        """Tube along a natural cubic spline through ``control_points`` (M, 3), resampled every ~``step`` mm."""
        ctrl = np.asarray(control_points, float)
        chord = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(ctrl, axis=0), axis=1))]
        n = max(2, int(math.ceil(chord[-1] / step)) + 1)
        t = np.linspace(0.0, chord[-1], n)
        points = CubicSpline(chord, ctrl, bc_type="natural")(t)
        radii = np.interp(t, chord, np.asarray(control_radii, float))
        return cls(points, radii, pad)

    @property
    def bounds(self) -> Bounds:
        r = self.radii[:, None]
        return (self.points - r).min(axis=0), (self.points + r).max(axis=0)

    def sdf(self, c: Coords) -> np.ndarray:
        x, y, z = c
        out = np.full(np.broadcast_shapes(x.shape, y.shape, z.shape), np.inf, dtype=np.float32)
        axes = (x.ravel(), y.ravel(), z.ravel())
        for a, b, ra, rb in zip(self.points[:-1], self.points[1:], self.radii[:-1], self.radii[1:]):
            reach = max(ra, rb) + self.pad
            sl = []
            for dim in range(3):
                lo, hi = min(a[dim], b[dim]) - reach, max(a[dim], b[dim]) + reach
                ax = axes[dim]
                sl.append(slice(int(np.searchsorted(ax, lo)), int(np.searchsorted(ax, hi, side="right"))))
            if any(s.stop <= s.start for s in sl):
                continue
            px = x[sl[0]] - np.float32(a[0])
            py = y[:, sl[1]] - np.float32(a[1])
            pz = z[:, :, sl[2]] - np.float32(a[2])
            ab = (b - a).astype(np.float32)
            inv = np.float32(1.0 / max(float(ab @ ab), 1e-9))
            t = np.clip(((px * (ab[0] * inv) + py * (ab[1] * inv)) + pz * (ab[2] * inv)), 0.0, 1.0)
            dx, dy, dz = px - t * ab[0], py - t * ab[1], pz - t * ab[2]
            d = np.sqrt(dx * dx + dy * dy + dz * dz) - (np.float32(ra) + t * np.float32(rb - ra))
            view = out[sl[0], sl[1], sl[2]]
            np.minimum(view, d, out=view)
        return out


def _reduce_sdf(parts: Sequence[Shape], c: Coords, combine: Callable[..., np.ndarray]) -> np.ndarray:
    """Signed distances of ``parts`` combined by ``combine`` (``np.minimum``: union, ``np.maximum``: intersection)."""
    out = parts[0].sdf(c)
    for part in parts[1:]:
        out = combine(out, part.sdf(c))
    return out


@dataclass(frozen=True, eq=False)
class Union(Shape):
    """Union (minimum of distances) of shapes."""

    parts: tuple[Shape, ...]

    @property
    def bounds(self) -> Bounds:
        return np.min([p.bounds[0] for p in self.parts], axis=0), np.max([p.bounds[1] for p in self.parts], axis=0)

    def sdf(self, c: Coords) -> np.ndarray:
        return _reduce_sdf(self.parts, c, np.minimum)


@dataclass(frozen=True, eq=False)
class Intersection(Shape):
    """Intersection (maximum of distances) of shapes."""

    parts: tuple[Shape, ...]

    @property
    def bounds(self) -> Bounds:
        return np.max([p.bounds[0] for p in self.parts], axis=0), np.min([p.bounds[1] for p in self.parts], axis=0)

    def sdf(self, c: Coords) -> np.ndarray:
        return _reduce_sdf(self.parts, c, np.maximum)


@dataclass(frozen=True, eq=False)
class Difference(Shape):
    """``base`` minus ``cut``."""

    base: Shape
    cut: Shape

    @property
    def bounds(self) -> Bounds:
        return self.base.bounds

    def sdf(self, c: Coords) -> np.ndarray:
        return np.maximum(self.base.sdf(c), -self.cut.sdf(c))


@dataclass(frozen=True, eq=False)
class Perturbed(Shape):
    """``base`` with its surface displaced by ``amplitude_mm`` times a smooth noise field (lobulated outline)."""

    base: Shape
    noise: SmoothNoise
    amplitude_mm: float

    @property
    def bounds(self) -> Bounds:
        lo, hi = self.base.bounds
        grow = 2.5 * self.amplitude_mm
        return lo - grow, hi + grow

    def sdf(self, c: Coords) -> np.ndarray:
        return self.base.sdf(c) + np.float32(self.amplitude_mm) * self.noise(c)


@dataclass(frozen=True, eq=False)
class Shell(Shape):
    """The layer of ``base`` within ``thickness_mm`` inside its surface (a hollowed solid: bowl, cup, plate).

    Raises:
        ValueError: if ``thickness_mm`` is not positive.
    """

    base: Shape
    thickness_mm: float

    def __post_init__(self) -> None:
        if not self.thickness_mm > 0:
            raise ValueError(f"Shell: thickness_mm must be positive, got {self.thickness_mm}")

    @property
    def bounds(self) -> Bounds:
        return self.base.bounds

    def sdf(self, c: Coords) -> np.ndarray:
        half = np.float32(0.5 * self.thickness_mm)
        return np.abs(self.base.sdf(c) + half) - half
