"""Random patient anatomy of the upper abdomen around the pancreas, in world millimetres.

``UpperAbdomenBuilder(rng).patient()`` draws one patient as an ordered list of implicit ``Structure`` s (grid
independent, world RAS+ mm: +x patient Right, +y Anterior, +z Superior; z = 0 is roughly the
level of the pancreatic neck, x = 0 the midline and y = 0 the centre of the abdominal cavity).
``render_patient(patient, grid)`` evaluates them on a voxel grid as soft partial-volume layers,
which ``TissueLayers`` composites in painter order (later layers cover earlier ones) into a
tissue-valued image, the occupancy of one organ, or a hard organ label map (``ORGAN_LABELS``).

The layout follows the real relations that make pancreas segmentation hard: the head sits in the
duodenal C-loop right of the superior mesenteric vein, the neck and body cross anterior to the
SMA and aorta with the splenic vein along their posterior border, the tail rises towards the
splenic hilum in front of the left kidney, and stomach, bowel loops and vessels abut the gland.
Soft organs (bowel) are painted first so that solid organs and vessels displace them.
``scripts.phantom.anatomies`` names this anatomy ``"upper_abdomen"``; ``scripts.phantom.whole_abdomen``
extends the builder from the lung bases to the pelvis.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

from .shapes import (
    Bounds,
    Difference,
    Ellipsoid,
    EllipticCylinder,
    Grid,
    HalfSpace,
    Intersection,
    NoiseLevel,
    Perturbed,
    Region,
    Shape,
    SmoothNoise,
    SuperEllipse,
    Tube,
    Union,
    ZPeriodic,
    occupancy,
    rotation,
)

ORGAN_LABELS: dict[str, int] = {
    "background": 0,  # air outside the body
    "pancreas": 1,  # parenchyma, intra-pancreatic fat lobules and the main pancreatic duct
    "liver": 2,
    "spleen": 3,
    "kidney_right": 4,
    "kidney_left": 5,
    "gallbladder": 6,
    "stomach": 7,  # wall and content (fluid, air)
    "duodenum": 8,  # wall and content
    "small_bowel": 9,
    "colon": 10,
    "aorta": 11,  # lumen and wall calcifications
    "inferior_vena_cava": 12,
    "portal_splenic_vein": 13,  # portal vein, superior mesenteric vein, splenic vein and intrahepatic portal branches
    "other_vessel": 14,  # SMA, coeliac branches, renal and hepatic veins, mesenteric branches
    "bone": 15,  # vertebrae; whole abdomen also: ribs, sternum, sacrum, iliac and pubic bones, femora, humeri
    "muscle": 16,  # body wall, paraspinal, psoas, crura; whole abdomen also: diaphragm, iliacus, gluteal, arms
    "fat": 17,  # subcutaneous, visceral and renal sinus fat; whole abdomen also: pericardial and mediastinal fat
    # other: skin, intervertebral discs, spinal canal, adrenal glands, common bile duct, renal pelvis;
    # whole abdomen also: costal cartilage, oesophagus, uterus or prostate
    "other": 18,
    # labels appended for the whole-abdomen anatomy (scripts.phantom.whole_abdomen); rectum and caecum are
    # "colon", the scanner table is "background"
    "lung": 19,  # lung bases, with their intrapulmonary vessels
    "heart": 20,  # myocardium and blood pool (the pericardial fat around it is "fat")
    "urinary_bladder": 21,  # wall and urine
    "lymph_node": 22,  # retroperitoneal, iliac and mesenteric nodes
}
"""Multi-organ label table used with ``organ_labels=True``; the pancreas is always 1."""


@dataclass(frozen=True, eq=False)
class Part:
    """One painted layer of a structure: where its signed distance is below ``-inset_mm`` (and inside ``within``)."""

    tissue: str  # key of the acquisition's tissue value tables
    organ: str  # key of ORGAN_LABELS
    inset_mm: float = 0.0
    within: Shape | None = None
    texture: SmoothNoise | None = None  # unit-variance pattern scaled by the tissue's texture amplitude


@dataclass(frozen=True, eq=False)
class Structure:
    """A shape and the layers (outer wall first, then inner parts) painted from it."""

    shape: Shape
    parts: tuple[Part, ...]


@dataclass(frozen=True, eq=False)
class Patient:
    """One random patient: structures in painter order plus the boxes the acquisition must respect (mm)."""

    structures: tuple[Structure, ...]
    body_bounds: Bounds  # in-plane extent of the skin surface (z unbounded)
    pancreas_bounds: Bounds  # conservative box around every voxel the pancreas can occupy
    diameter_mm: float  # water-equivalent-like body diameter, used for the noise level
    spine_xy: tuple[float, float]  # in-plane centre of the vertebral bodies, where streak artefacts originate
    # world z interval (lo, hi) mm the anatomy models, which every scan's coverage must stay inside (None: unbounded)
    z_limits_mm: tuple[float, float] | None = None
    # (min, max) length mm of the random cranio-caudal coverage, replacing the domain's z_extent_mm (None: the domain's)
    z_coverage_mm: tuple[float, float] | None = None
    # world z interval (lo, hi) mm every scan must contain besides the pancreas, e.g. the liver dome (None: nothing)
    z_required_mm: tuple[float, float] | None = None


@dataclass(frozen=True, eq=False)
class Layer:
    """A rendered part: occupancy in [0, 1] on ``region`` of the grid (array broadcastable to the region's shape)."""

    tissue: str
    organ: str
    region: Region
    occupancy: np.ndarray
    texture: np.ndarray | None


def _intersect(a: Region, b: Region) -> Region | None:
    out = tuple(slice(max(p.start, q.start), min(p.stop, q.stop)) for p, q in zip(a, b))
    return None if any(s.stop <= s.start for s in out) else (out[0], out[1], out[2])


def _crop(array: np.ndarray, region: Region, inner: Region) -> np.ndarray:
    """Crop a layer array (broadcastable to grid ``region``) to ``inner``, a sub-region in grid indices."""
    index = []
    for n, outer, sub in zip(array.shape, region, inner):
        index.append(slice(None) if n == 1 else slice(sub.start - outer.start, sub.stop - outer.start))
    return array[tuple(index)]


@dataclass(frozen=True, eq=False)
class TissueLayers:
    """A patient rendered on ``grid``: partial-volume layers in painter order."""

    grid: Grid
    layers: tuple[Layer, ...]

    def paint(self, values: Mapping[str, float], texture_hu: Mapping[str, float], fill: float) -> np.ndarray:
        """Composite image (float32, grid shape): each layer blends ``values[tissue]`` (+ texture) over what lies below.

        ``fill`` is the value outside every layer (air); ``texture_hu`` gives each textured tissue's amplitude.
        """
        img = np.full(self.grid.shape, fill, dtype=np.float32)
        for layer in self.layers:
            target: np.ndarray | np.float32 = np.float32(values[layer.tissue])
            if layer.texture is not None:
                target = target + np.float32(texture_hu.get(layer.tissue, 0.0)) * layer.texture
            view = img[layer.region]
            view += (target - view) * layer.occupancy
        return img

    def organ_occupancy(self, organ: str) -> np.ndarray:
        """Composite fraction (float32 in [0, 1], grid shape) of each voxel that belongs to ``organ``."""
        occ = np.zeros(self.grid.shape, dtype=np.float32)
        box: Region | None = None
        for layer in self.layers:
            if layer.organ == organ:
                view = occ[layer.region]
                view += (1 - view) * layer.occupancy
                box = layer.region if box is None else tuple(  # type: ignore[assignment]
                    slice(min(a.start, b.start), max(a.stop, b.stop)) for a, b in zip(box, layer.region)
                )
            elif box is not None:
                inner = _intersect(box, layer.region)
                if inner is not None:
                    occ[inner] *= 1 - _crop(layer.occupancy, layer.region, inner)
        return occ

    def organ_map(self) -> np.ndarray:
        """Hard label map (uint8, grid shape, values of ``ORGAN_LABELS``): the last layer with occupancy >= 0.5 wins."""
        labels = np.zeros(self.grid.shape, dtype=np.uint8)
        for layer in self.layers:
            view = labels[layer.region]
            inside = np.broadcast_to(layer.occupancy >= 0.5, view.shape)
            np.copyto(view, np.uint8(ORGAN_LABELS[layer.organ]), where=inside)
        return labels


def render_patient(patient: Patient, grid: Grid) -> TissueLayers:
    """Evaluate every structure of ``patient`` on ``grid`` (only inside its bounding box) as soft layers.

    A part's ``within`` restriction and texture are evaluated only on the voxels the part occupies.
    """
    width = grid.voxel_size
    layers: list[Layer] = []
    for structure in patient.structures:
        region = grid.region(structure.shape.bounds, pad=2 * width)
        if region is None:
            continue
        c = grid.coords(region)
        sdf = structure.shape.sdf(c)
        for part in structure.parts:
            sd = sdf + np.float32(part.inset_mm) if part.inset_mm else sdf
            occ = occupancy(sd, width)
            if not occ.any():
                continue
            texture = None
            if part.within is not None or part.texture is not None:
                shape = tuple(s.stop - s.start for s in region)
                idx = np.nonzero(np.broadcast_to(occ, shape))
                points = (c[0].ravel()[idx[0]], c[1].ravel()[idx[1]], c[2].ravel()[idx[2]])
                if part.within is not None:
                    values = occupancy(np.maximum(np.broadcast_to(sd, shape)[idx], part.within.sdf(points)), width)
                    occ = np.zeros(shape, dtype=np.float32)
                    occ[idx] = values
                    if not values.any():
                        continue
                if part.texture is not None:
                    texture = np.zeros(shape, dtype=np.float32)
                    texture[idx] = part.texture(points)
            layers.append(Layer(part.tissue, part.organ, region, occ, texture))
    return TissueLayers(grid, tuple(layers))


# ----------------------------------------------------------------------------------------------
# sampling

PAINT_ORDER = ("body", "bowel", "posterior", "solid", "upper_gi", "pancreas", "vessels")
"""Paint groups, lowest priority first: bowel loops yield to everything; stomach and duodenum indent the solid
organs but yield to the pancreas they wrap around and to the vessels."""

PANCREAS_POINTS = ("unc_tip", "unc", "head_low", "head", "head_up", "neck", "body", "body_tail", "tail", "tip")
"""Names of the pancreas centreline control points, from the uncinate process to the tail tip."""


def _anterior_of(y: float) -> HalfSpace:
    """The half-space y' > y (anterior of a coronal plane): where gas collects in a supine patient."""
    return HalfSpace(np.array([0.0, y, 0.0]), np.array([0.0, -1.0, 0.0]))


def superellipse_radius(shape: SuperEllipse, angle_deg: float) -> float:
    """Distance (mm) from the centre of ``shape`` to its boundary along the in-plane direction ``angle_deg``."""
    dx, dy = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    b = shape.b_anterior if dy > 0 else shape.b_posterior
    p = shape.exponent
    return 1.0 / ((abs(dx) / shape.a) ** p + (abs(dy) / b) ** p) ** (1.0 / p)


class UpperAbdomenBuilder:
    """Draws one upper-abdomen patient; attributes hold the landmarks shared between organs (world mm).

    Args:
        rng: the random stream every draw comes from (``patient()`` consumes it).
        paint_order: names of the paint groups, lowest priority first (a subclass adds its own groups).

    Raises:
        ValueError: if ``paint_order`` lacks one of ``PAINT_ORDER``.
    """

    def __init__(self, rng: np.random.Generator, paint_order: tuple[str, ...] = PAINT_ORDER):
        missing = [name for name in PAINT_ORDER if name not in paint_order]
        if missing:
            raise ValueError(f"paint_order must contain every group of PAINT_ORDER, missing {missing}")
        self.rng = rng
        self.paint_order = tuple(paint_order)
        self.groups: dict[str, list[Structure]] = {name: [] for name in self.paint_order}
        self.group = PAINT_ORDER[0]

    # small helpers -------------------------------------------------------------------------
    def u(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi))

    def jitter(self, points: np.ndarray, sd: float) -> np.ndarray:
        return np.asarray(points, float) + self.rng.normal(0.0, sd, size=np.shape(points))

    def noise(self, length_mm: float, waves: int = 16) -> SmoothNoise:
        return SmoothNoise.sample(self.rng, length_mm, waves)

    def planar_noise(self, length_mm: float, waves: int = 8) -> SmoothNoise:
        """Noise constant along z (for extruded body sections: keeps the field 2-D and cheap)."""
        field = SmoothNoise.sample(self.rng, length_mm, waves)
        freqs = field.frequencies.copy()
        freqs[:, 2] = 0.0
        return SmoothNoise(freqs, field.phases)

    def add(self, shape: Shape, *parts: Part) -> None:
        """Append a structure to the current paint group (``self.group``)."""
        self.groups[self.group].append(Structure(shape, parts))

    def at(self, x: float, y: float, z: float) -> np.ndarray:
        """World point from the spine frame: x scaled with the cavity width, y from the vertebral body front."""
        return np.array([x * self.sx, self.y_o + y, z])

    def anterior(self, x: float, fraction: float, z: float) -> np.ndarray:
        """World point at ``fraction`` of the depth between the vertebral body front and the anterior wall."""
        return np.array([x * self.sx, self.y_o + fraction * self.depth, z])

    # body wall -------------------------------------------------------------------------------
    def sample_body(self) -> None:
        u = self.u
        self.cavity = SuperEllipse((0.0, 0.0), u(108, 135), u(84, 104), u(80, 94), u(2.1, 2.5))
        t_lat, t_ant, t_post = u(9, 16), u(7, 13), u(9, 15)
        c = self.cavity
        self.muscle_outer = SuperEllipse(
            (0.0, 0.0), c.a + t_lat, c.b_anterior + t_ant, c.b_posterior + t_post, u(2.2, 2.7)
        )
        m = self.muscle_outer
        f_lat, f_ant, f_post = u(4, min(20.0, 172.0 - m.a)), u(6, 32), u(6, 20)
        self.skin = SuperEllipse(
            (0.0, 0.0), m.a + f_lat + 2, m.b_anterior + f_ant + 2, m.b_posterior + f_post + 2, u(2.2, 2.8)
        )
        self.sx = c.a / 120.0
        # spine frame
        self.vb_axes = (u(19, 24), u(14, 17))
        self.yv = -c.b_posterior + u(66, 74)
        self.y_o = self.yv + self.vb_axes[1]  # anterior surface of the vertebral bodies
        self.depth = c.b_anterior - self.y_o  # vertebral front -> anterior cavity wall

    def body_wall(self) -> None:
        self.group = "body"
        skin_shape = Perturbed(self.skin, self.planar_noise(40.0), 2.0)
        self.add(skin_shape, Part("soft_tissue", "other"), Part("fat", "fat", inset_mm=2.0))
        self.add(Perturbed(self.muscle_outer, self.planar_noise(30.0), 2.0), Part("muscle", "muscle"))
        self.cavity_shape = Perturbed(self.cavity, self.planar_noise(30.0), 2.5)
        self.add(self.cavity_shape, Part("fat", "fat"))

    # spine and posterior muscles --------------------------------------------------------------
    def posterior(self) -> None:
        self.group = "posterior"
        u, c = self.u, self.cavity
        for side in (1, -1):  # erector spinae and quadratus lumborum
            erector = (side * u(22, 28), -c.b_posterior + u(22, 30))
            self.add(EllipticCylinder(erector, (u(19, 25), u(22, 28)), side * u(-10, 10)), Part("muscle", "muscle"))
            quadratus = (side * u(50, 60), -c.b_posterior + u(26, 34))
            self.add(EllipticCylinder(quadratus, (u(10, 15), u(8, 12)), side * u(20, 40)), Part("muscle", "muscle"))
        rx, ry = self.vb_axes
        period, disc = u(31, 36), u(6, 9)
        phase = u(0, period)
        # vertebral body k spans z in [phase + k * period, phase + (k + 1) * period - disc], its discs the gaps
        self.spine_period, self.spine_phase, self.disc_mm = period, phase, disc
        bodies = ZPeriodic(period, period - disc, phase)
        cortical = u(1.2, 2.2)
        self.add(
            Intersection((EllipticCylinder((0.0, self.yv), (rx, ry)), bodies)),
            Part("bone_cortical", "bone"),
            Part("bone_cancellous", "bone", inset_mm=cortical),
        )
        self.add(
            Intersection((EllipticCylinder((0.0, self.yv), (rx + 1, ry + 1)), ZPeriodic(period, disc, phase - disc))),
            Part("disc", "other"),
        )
        r_canal = u(7, 9)
        canal_y = self.yv - ry - r_canal - 1
        self.psoas_end: dict[int, tuple[np.ndarray, float]] = {}  # side -> (lowest control point, its radius)
        arches = ZPeriodic(period, 0.6 * period, phase + 0.1 * period)
        self.add(
            Intersection((EllipticCylinder((0.0, canal_y), (r_canal + 6, r_canal + 5)), arches)),
            Part("bone", "bone"),
        )
        spinous_len = u(15, 20)
        self.add(
            Intersection(
                (
                    EllipticCylinder((0.0, canal_y - r_canal - spinous_len), (u(3.5, 5), spinous_len)),
                    ZPeriodic(period, 0.45 * period, phase - 0.15 * period),
                )
            ),
            Part("bone", "bone"),
        )
        for side in (1, -1):
            self.add(
                Intersection(
                    (
                        EllipticCylinder((side * (rx + 9), canal_y + 3), (u(13, 17), u(4, 5.5)), -side * u(5, 20)),
                        ZPeriodic(period, u(8, 11), phase + 0.35 * period),
                    )
                ),
                Part("bone", "bone"),
            )
            # psoas: small at L1, growing caudally
            radii = np.array([u(4, 6), u(8, 12), u(14, 18), u(19, 24)])
            zs = np.array([60.0, 0.0, -60.0, -130.0])
            ys = np.full(4, self.yv - 1) + self.rng.normal(0, 2, 4)
            pts = np.stack([side * (rx + 2 + 0.8 * radii), ys, zs], axis=1)
            self.add(Tube.through(pts, radii, step=10.0), Part("muscle", "muscle"))
            self.psoas_end[side] = (pts[-1], float(radii[-1]))
        self.add(EllipticCylinder((0.0, canal_y), (r_canal, 0.85 * r_canal)), Part("csf", "other"))
        self.ribs()

    def ribs(self) -> None:
        """Lower ribs running obliquely in the body wall (posterior-superior to lateral-inferior)."""
        u = self.u
        self.rib_top_z: dict[int, float] = {}  # side -> z (mm) of the posterior end of the highest rib drawn
        for side in (1, -1):
            z_top = u(70, 100)
            self.rib_top_z[side] = z_top
            for k in range(3):
                theta0, theta1 = u(25, 35), u(85, 125) - 20 * k
                thetas = np.linspace(theta0, theta1, 6)
                drop = u(0.45, 0.75)
                pts = []
                for th in thetas:
                    ang = -90.0 + th if side > 0 else -90.0 - th  # from the posterior midline towards the side
                    r_in = superellipse_radius(self.cavity, ang)
                    r_out = superellipse_radius(self.muscle_outer, ang)
                    rr = 0.5 * (r_in + r_out)
                    z = z_top - (th - theta0) * drop
                    pts.append([rr * math.cos(math.radians(ang)), rr * math.sin(math.radians(ang)), z])
                z_top -= u(30, 38)
                radius = u(4, 6)
                self.add(
                    Tube.through(np.array(pts), np.full(6, radius), step=8.0),
                    Part("bone", "bone"),
                    Part("bone_cancellous", "bone", inset_mm=1.5),
                )

    # landmarks ---------------------------------------------------------------------------------
    def sample_vessel_trunks(self) -> None:
        u = self.u
        self.r_aorta = u(9, 12.5)
        self.aorta_xy = np.array([u(-16, -8), self.y_o + self.r_aorta + u(1, 4)])
        self.ivc_axes = (u(10, 14), u(6, 10))
        self.ivc_xy = np.array([u(19, 27), self.y_o + u(5, 11)])

    def sample_pancreas(self) -> None:
        """Centreline control points head -> tail (world mm) and radii of a random pancreas."""
        u = self.u
        template = np.array(
            [  # x, y (from the vertebral front), z, radius   (spine frame, x scaled)
                [2, 27, -42, 6],  # uncinate tip, behind the SMV
                [18, 29, -40, 10],  # uncinate process
                [30, 33, -30, 14],  # lower head
                [33, 37, -16, 15],  # head
                [27, 42, -3, 13],  # upper head
                [8, 49, 3, 10],  # neck, anterior to the portal confluence
                [-20, 48, 8, 10],  # body, anterior to the SMA
                [-46, 39, 13, 9],  # body-tail junction
                [-68, 28, 18, 8],  # tail
                [-84, 19, 24, 6],  # tail tip, towards the splenic hilum
            ],
            float,
        )
        shift = np.array([u(-5, 5), u(-4, 5), u(-6, 6)])
        pts = np.array([self.at(*row[:3]) for row in template]) + shift
        pts[-2:, 2] += u(-6, 14)  # the tail rises more or less towards the splenic hilum
        pts = self.jitter(pts, 2.0)
        head_scale, tail_scale = u(0.8, 1.2), u(0.75, 1.2)
        n = len(template)
        radii = template[:, 3] * np.linspace(head_scale, tail_scale, n) * self.rng.uniform(0.92, 1.08, n)
        self.pancreas_pts = pts
        self.pancreas_r = radii

    def sample_spleen(self) -> None:
        """Spleen against the left posterolateral wall with its hilum just beyond the pancreatic tail tip."""
        u = self.u
        self.spleen_axes = np.array([u(16, 22), u(42, 56), u(40, 52)])
        self.hilum = self.point("tip") + np.array([-u(5, 11), -u(4, 10), u(0, 8)])
        self.spleen_rot = rotation(yaw=u(20, 45), pitch=u(-10, 10))  # hilum (local +x) faces anteromedially
        centre = self.hilum - self.spleen_rot @ np.array([0.8 * self.spleen_axes[0], 0.0, -0.1 * self.spleen_axes[2]])
        centre[0] = max(centre[0], -(self.cavity.a - self.spleen_axes[0] - 2.0))
        self.spleen_centre = centre

    def point(self, name: str) -> np.ndarray:
        """World position (mm) of a named pancreas centreline control point (see ``PANCREAS_POINTS``)."""
        return self.pancreas_pts[PANCREAS_POINTS.index(name)]

    def radius(self, name: str) -> float:
        """Radius (mm) of the pancreas at a named control point."""
        return float(self.pancreas_r[PANCREAS_POINTS.index(name)])

    # organs ------------------------------------------------------------------------------------
    def gi_tube(self, tube: Tube, organ: str, wall_tissue: str, wall_mm: float, air_level_y: float | None) -> None:
        """Hollow viscus inside the cavity: wall, fluid content and air anterior to ``air_level_y`` (supine patient)."""
        parts = [Part(wall_tissue, organ), Part("fluid", organ, inset_mm=wall_mm)]
        if air_level_y is not None:
            parts.append(Part("air", organ, inset_mm=wall_mm, within=_anterior_of(air_level_y)))
        self.add(Intersection((tube, self.cavity_shape)), *parts)

    def colon(self) -> None:
        self.group = "bowel"
        ctrl, radii = self.colon_frame()
        tube = Tube.through(ctrl, radii, step=8.0)
        self.add(Intersection((tube, self.cavity_shape)), *self.colon_parts())

    def colon_frame(self) -> tuple[np.ndarray, np.ndarray]:
        """Centreline control points (8, 3) mm, ascending colon -> transverse -> descending, and radii (8,) mm."""
        u, d = self.u, self.depth
        ctrl = np.array(
            [
                [0.80 * self.cavity.a, self.y_o - 10, -140],
                [0.80 * self.cavity.a, self.y_o + 5, -70],
                [0.62 * self.cavity.a, self.y_o + 0.45 * d, u(-35, -10)],
                [0.20 * self.cavity.a, self.y_o + 0.85 * d, u(-75, -45)],
                [-0.30 * self.cavity.a, self.y_o + 0.85 * d, u(-60, -30)],
                [-0.72 * self.cavity.a, self.y_o + 0.35 * d, u(15, 40)],
                [-0.82 * self.cavity.a, self.y_o - 5, -20],
                [-0.80 * self.cavity.a, self.y_o - 5, -140],
            ]
        )
        ctrl = self.jitter(ctrl, 5.0)
        return ctrl, self.rng.uniform(15, 24, len(ctrl))

    def colon_parts(self) -> tuple[Part, ...]:
        """Wall, faeces and gas (bubbles and gas anterior of a random coronal level) of a stool-filled colon."""
        u, d = self.u, self.depth
        wall = u(1.8, 3.0)
        gas = Union((_anterior_of(self.y_o + u(0.3, 0.9) * d), NoiseLevel(self.noise(4.0), u(0.6, 1.4), 3.0)))
        return (
            Part("colon_wall", "colon"),
            Part("feces", "colon", inset_mm=wall, texture=self.noise(3.0)),
            Part("air", "colon", inset_mm=wall, within=gas),  # gas bubbles and anterior gas
        )

    def small_bowel(self) -> None:
        """Jejunal and ileal loops: random smooth walks, fluid-filled, collapsed or with some air."""
        self.group = "bowel"
        u, d = self.u, self.depth
        ax = self.cavity.a
        regions = [
            ((-0.75 * ax, -0.1 * ax), (self.y_o + 15, self.y_o + 0.9 * d), (-75.0, -5.0)),
            ((-0.75 * ax, 0.0), (self.y_o + 5, self.y_o + 0.9 * d), (-140.0, -60.0)),
            ((0.0, 0.7 * ax), (self.y_o + 10, self.y_o + 0.9 * d), (-140.0, -60.0)),
            ((-0.4 * ax, 0.4 * ax), (self.y_o + 0.55 * d, self.y_o + 0.95 * d), (-110.0, -55.0)),
            ((-0.8 * ax, -0.4 * ax), (self.y_o + 0.0, self.y_o + 0.6 * d), (-40.0, 10.0)),
        ]
        loops = [(self.duodenum_end, regions[0])]  # the jejunum continues from the duodenojejunal flexure
        for _ in range(int(self.rng.integers(5, 9))):
            box = regions[int(self.rng.integers(len(regions)))]
            loops.append((np.array([u(*box[0]), u(*box[1]), u(*box[2])]), box))
        for start, box in loops:
            self.small_bowel_loop(start, box)

    def small_bowel_loop(self, start: np.ndarray, box: tuple[tuple[float, float], ...]) -> Structure:
        """One loop: a random walk of 6-11 steps from ``start`` bouncing inside ``box`` ((lo, hi) mm per axis),
        fluid-filled, collapsed or with an air-fluid level; returns the structure it added."""
        u = self.u
        lo = np.array([b[0] for b in box])
        hi = np.array([b[1] for b in box])
        n = int(self.rng.integers(6, 12))
        pts = [np.asarray(start, float)]
        direction = self.rng.normal(size=3)
        for _ in range(n):
            direction = direction / np.linalg.norm(direction) + self.rng.normal(0, 0.8, 3)
            step = direction / np.linalg.norm(direction) * u(14, 22)
            nxt = pts[-1] + step
            bounce = (nxt < lo) | (nxt > hi)
            direction[bounce] *= -1
            pts.append(np.clip(pts[-1] + np.where(bounce, -step, step), lo - 10, hi + 10))
        kind = self.rng.choice(["fluid", "collapsed", "air"], p=[0.45, 0.4, 0.15])
        if kind == "collapsed":
            radius, wall = u(5, 8), u(3, 5)
        else:
            radius, wall = u(9, 14), u(1.8, 2.8)
        radii = radius * self.rng.uniform(0.85, 1.15, len(pts))
        level = float(np.max(np.asarray(pts)[:, 1])) + radius - u(3, 8) if kind == "air" else None
        self.gi_tube(Tube.through(np.asarray(pts), radii, step=6.0), "small_bowel", "bowel_wall", wall, level)
        return self.groups[self.group][-1]

    def stomach_and_duodenum(self) -> None:
        self.group = "upper_gi"
        u = self.u
        empty_stomach = self.rng.random() < 0.3
        scale, wall = (u(0.45, 0.6), u(6, 9)) if empty_stomach else (1.0, u(3, 5.5))
        neck = self.point("neck")
        ctrl = np.array(
            [
                self.at(-55, 5, 110),
                self.anterior(-60, 0.35, 75),
                self.anterior(-48, 0.62, 40),
                self.anterior(-12, 0.8, neck[2] + u(14, 24)),
                self.anterior(18, 0.75, neck[2] + u(14, 22)),
                self.anterior(33, 0.65, neck[2] + u(14, 20)),
            ]
        )
        ctrl = self.jitter(ctrl, 4.0)
        radii = np.array([u(26, 36), u(26, 36), u(22, 32), u(16, 24), u(11, 15), 7.0]) * np.r_[[scale] * 5, 1.0]
        tube = Tube.through(ctrl, radii, step=7.0)
        self.cardia, self.fundus_radius = ctrl[0], float(radii[0])
        level = float(np.max(ctrl[:, 1] + radii)) - u(2, 30)
        self.gi_tube(tube, "stomach", "stomach_wall", wall, None if empty_stomach else level)
        # duodenum: bulb (D1), descending (D2) lateral to the head, horizontal (D3) between aorta and SMA,
        # ascending (D4) left of the aorta up to the duodenojejunal flexure below the pancreatic body
        collapsed = self.rng.random() < 0.4
        r_d, wall_d = (u(6, 8.5), u(3, 4.5)) if collapsed else (u(9.5, 13.5), u(1.8, 3.0))
        head, head_up, head_low, unc, body = (self.point(n) for n in ("head", "head_up", "head_low", "unc", "body"))

        def lateral(name: str) -> float:  # x of the descending duodenum touching the head's lateral surface
            return float(self.point(name)[0] + self.radius(name) + r_d + u(-2.0, 1.0))

        ao = self.aorta_xy
        z_d3 = unc[2] - self.radius("unc") - r_d - u(2, 6)
        y_d3 = ao[1] + self.r_aorta + r_d + u(0.5, 2.5)
        ctrl = np.array(
            [
                ctrl[-1],
                [head_up[0] + 18, head_up[1] + 14, head_up[2] + self.radius("head_up") + u(4, 9)],
                [lateral("head_up"), head_up[1] - 2, head_up[2] + u(4, 8)],
                [lateral("head"), head[1] - 1, head[2]],
                [lateral("head_low"), head_low[1] - 2, head_low[2] - 6],
                [lateral("unc") - 8, 0.5 * (head_low[1] + y_d3), z_d3 + 5],
                [ao[0] + 12, y_d3, z_d3],
                [ao[0] - self.r_aorta - r_d + 3, y_d3 - 2, z_d3 + 6],
                [ao[0] - self.r_aorta - r_d - 2, ao[1] + self.r_aorta + 10, unc[2] - 8],
                [body[0] - 10, body[1] - 4, body[2] - self.radius("body") - r_d - u(3, 6)],
            ]
        )
        ctrl[1:] = self.jitter(ctrl[1:], 1.5)
        radii = np.r_[7.0, r_d * 1.15, np.full(len(ctrl) - 2, r_d)]  # pylorus, bulb, rest
        radii[1:] *= self.rng.uniform(0.9, 1.1, len(ctrl) - 1)
        level = float(ctrl[1, 1] + radii[1] - u(3, 10)) if self.rng.random() < 0.5 and not collapsed else None
        self.gi_tube(Tube.through(ctrl, radii, step=5.0), "duodenum", "bowel_wall", wall_d, level)
        self.duodenum_end = ctrl[-1]

    def liver_and_gallbladder(self) -> None:
        self.group = "solid"
        u, c = self.u, self.cavity
        right = Ellipsoid(
            np.array([u(0.35, 0.5) * c.a, self.y_o + u(15, 30), u(45, 65)]),
            np.array([u(0.62, 0.75) * c.a, u(75, 90), u(85, 100)]),
            rotation(yaw=u(-10, 10)),
        )
        left_centre = self.anterior(u(-25, -5), 0.72, u(50, 70))
        left = Ellipsoid(left_centre, np.array([u(50, 70), u(26, 36), u(35, 48)]), rotation(yaw=u(-15, 5)))
        neck = self.point("neck")
        # curved medial-inferior boundary: the right lobe ends lateral to the duodenum and pancreatic head
        keep = Perturbed(
            Ellipsoid(
                np.array([neck[0] + u(90, 110), self.y_o + u(10, 30), neck[2] + u(100, 120)]),
                np.array([u(110, 130), u(95, 115), u(150, 170)]),
            ),
            self.noise(30.0, 6),
            6.0,
        )
        self.liver_dome_z = float(right.centre[2] + right.semi_axes[2])  # top of the right lobe
        liver = Perturbed(Intersection((Union((right, left)), keep, self.cavity_shape)), self.noise(25.0, 6), 3.0)
        self.add(liver, Part("liver", "liver", texture=self.noise(6.0, 6)))
        if self.rng.random() < 0.85:
            gb = Ellipsoid(
                self.anterior(u(32, 52), u(0.55, 0.75), neck[2] + u(-2, 22)),
                np.array([u(11, 17), u(11, 17), u(26, 38)]),
                rotation(yaw=u(-20, 20), roll=u(20, 40)),
            )
            wall, bile = Part("soft_tissue", "gallbladder"), Part("bile", "gallbladder", inset_mm=1.5)
            self.add(Intersection((gb, self.cavity_shape)), wall, bile)

    def spleen(self) -> None:
        self.group = "solid"
        a = self.spleen_axes
        base = Ellipsoid(self.spleen_centre, a, self.spleen_rot)
        notch_centre = self.spleen_centre + self.spleen_rot @ np.array([1.25 * a[0], 0, 0])  # hilar concavity
        notch = Ellipsoid(notch_centre, a * np.array([0.55, 0.35, 0.45]), self.spleen_rot)
        shape = Perturbed(Intersection((Difference(base, notch), self.cavity_shape)), self.noise(20.0, 6), 2.0)
        self.add(shape, Part("spleen", "spleen", texture=self.noise(5.0)))

    def kidneys(self) -> None:
        self.group = "solid"
        u = self.u
        rx = self.vb_axes[0]
        self.kidney_hila: dict[str, np.ndarray] = {}
        self.kidney_top: dict[str, float] = {}
        for side, organ, z0 in ((1, "kidney_right", u(-38, -18)), (-1, "kidney_left", u(-22, -2))):
            medial = -side  # sign of x towards the midline
            axes = np.array([u(23, 28), u(20, 25), u(46, 56)])
            centre = np.array([side * (rx + u(44, 54)), self.yv + u(-10, -2), z0])
            rot = rotation(yaw=medial * u(22, 38), pitch=medial * u(8, 18))  # hilum anteromedial, upper pole medial
            pyramids = NoiseLevel(self.noise(5.0), u(-0.4, 0.1), 3.0)
            self.add(
                Perturbed(Ellipsoid(centre, axes, rot), self.noise(20.0, 6), 1.2),
                Part("fat", "fat", inset_mm=-u(2, 4)),  # perirenal fat keeps neighbours off the capsule
                Part("kidney_cortex", organ),
                Part("kidney_medulla", organ, inset_mm=u(5, 7), within=pyramids),
            )
            sinus = Ellipsoid(centre + rot @ np.array([medial * 0.6 * axes[0], 0, 0]), axes * [0.5, 0.42, 0.5], rot)
            self.add(sinus, Part("fat", "fat"))
            pelvis = Ellipsoid(centre + rot @ (axes * [medial * 0.65, 0, -0.1]), axes * [0.3, 0.2, 0.25], rot)
            self.add(pelvis, Part("urine", "other"))
            self.kidney_hila[organ] = centre + rot @ np.array([medial * 0.75 * axes[0], 0, 0])
            self.kidney_top[organ] = z0 + axes[2]

    def adrenals_and_crura(self) -> None:
        self.group = "solid"
        u = self.u
        ao, r = self.aorta_xy, self.r_aorta
        for side in (1, -1):  # diaphragmatic crura alongside the aorta
            x0 = ao[0] + side * (r + u(3, 5))
            pts = [[x0, ao[1] + 4, 110], [x0 + side, ao[1] - 2, 20], [side * 0.6 * self.vb_axes[0], self.y_o, -40]]
            self.vessel(self.jitter(pts, 1.0), np.array([4.5, 4.0, 3.0]) * u(0.8, 1.2), "muscle", "muscle")
        right_top = self.kidney_top["kidney_right"]
        apexes = (  # left: lateral to the aorta behind the pancreas body; right: behind the IVC
            (-1, np.array([ao[0] - r - u(8, 13), self.y_o + u(0, 6), self.kidney_top["kidney_left"] - u(0, 10)])),
            (1, np.array([self.ivc_xy[0] + u(2, 8), self.ivc_xy[1] - self.ivc_axes[1] - u(4, 8), right_top])),
        )
        for side, apex in apexes:  # two thin limbs each (lambda shape)
            for limb in ([side * u(4, 10), -u(14, 22), -u(4, 10)], [side * u(10, 18), -u(6, 12), u(-14, -6)]):
                pts = [apex, apex + 0.5 * np.array(limb) + self.rng.normal(0, 1.5, 3), apex + limb]
                self.vessel(pts, [2.8, 2.5, 1.8], "adrenal", "other", step=4.0)

    def pancreas_lobulation(self) -> float:
        """Amplitude (mm) of the lobulated outline of the gland."""
        return self.u(0.8, 2.6)

    def pancreas_fat_fraction(self) -> float:
        """Fraction of the gland replaced by fat lobules: mostly a few %, sometimes fatty (up to ~30 %)."""
        return float(self.rng.beta(1.3, 9.0)) * 0.4

    def pancreas(self) -> None:
        self.group = "pancreas"
        u = self.u
        tube = Tube.through(self.pancreas_pts, self.pancreas_r, step=4.0)
        lobulation = self.pancreas_lobulation()
        shape = Perturbed(Perturbed(tube, self.noise(6.0, 8), lobulation), self.noise(2.5, 8), 0.6 * lobulation)
        fat_fraction = self.pancreas_fat_fraction()
        parts = [Part("pancreas", "pancreas", texture=self.noise(2.5))]
        if fat_fraction > 0.01:
            lobules = NoiseLevel(self.noise(u(1.8, 3.0)), float(ndtri(1.0 - fat_fraction)), 1.0)
            parts.append(Part("fat", "pancreas", within=lobules))
        self.add(shape, *parts)
        self.pancreas_bounds = shape.bounds
        # main pancreatic duct: tail -> head -> papilla on the medial wall of D2 (dilated in some patients)
        r_duct = u(2.2, 3.5) if self.rng.random() < 0.15 else u(0.8, 1.4)
        papilla = self.point("head") + np.array([self.radius("head") + 2, -3.0, -u(6, 12)])
        duct = [self.point(n) for n in ("tip", "tail", "body_tail", "body", "neck", "head_up", "head")] + [papilla]
        self.vessel(duct, np.full(len(duct), r_duct), "fluid", "pancreas", step=4.0)
        # common bile duct: porta hepatis -> posterior head -> papilla
        head_up, head = self.point("head_up"), self.point("head")
        cbd = [
            head_up + [14, -6, 45],
            head_up + [8, -0.45 * self.radius("head_up"), 10],
            head + [5, -0.5 * self.radius("head"), 0],
            papilla,
        ]
        self.vessel(self.jitter(cbd, 1.0), np.full(4, u(2.5, 4.5)), "bile", "other", step=4.0)

    # vessels -----------------------------------------------------------------------------------
    def vessel(
        self,
        points: np.ndarray | list,
        radii: np.ndarray | list,
        tissue: str,
        organ: str,
        step: float = 5.0,
        pad: float = 4.0,
        in_cavity: bool = False,
    ) -> None:
        """A tube through ``points`` (mm) with ``radii`` (mm), optionally clipped to the abdominal cavity."""
        tube: Shape = Tube.through(np.asarray(points, float), np.asarray(radii, float), step=step, pad=pad)
        if in_cavity:
            tube = Intersection((tube, self.cavity_shape))
        self.add(tube, Part(tissue, organ))

    def sample_mesenteric_trunks(self) -> None:
        """Portal confluence behind the neck; SMV descending to its right, SMA to its left, both into the mesentery."""
        u = self.u
        ao, r_ao = self.aorta_xy, self.r_aorta
        self.r_smv, self.r_sv, self.r_pv = u(4.5, 6.5), u(3.5, 5.5), u(6, 8)
        conf = self.point("neck") + np.array([u(-3, 1), -(self.radius("neck") + self.r_smv - u(2, 4)), -u(2, 5)])
        self.confluence = conf
        smv = np.array([conf, conf + [1, 4, -20], conf + [2, 12, -50], conf + [3, 22, -90], conf + [4, 30, -140]])
        smv[1:] = self.jitter(smv[1:], 2.0)
        self.smv = smv
        sma_x, y_sma0 = conf[0] - u(10, 14), ao[1] + r_ao + u(3, 6)
        self.sma = np.array(
            [
                [ao[0] + 1, ao[1] + r_ao - 3, conf[2] + u(8, 14)],  # origin inside the aortic lumen
                [sma_x, y_sma0, conf[2] + 2],
                [sma_x, y_sma0 + 4, conf[2] - 12],
                [sma_x + 1, smv[2, 1] - 2, conf[2] - 50],
                [sma_x + 2, smv[3, 1] - 2, conf[2] - 90],
                [sma_x + 3, smv[4, 1] - 2, conf[2] - 140],
            ]
        )
        self.portal = self.jitter([conf, conf + [14, -1, 14], conf + [30, -4, 30], conf + [45, -5, 46]], [0, 1.5, 1.5])

    def mesenteric_branches(self) -> None:
        """Small jejunal/ileal branches of the SMA and SMV fanning into the mesenteric fat."""
        u = self.u
        for _ in range(int(self.rng.integers(6, 12))):
            venous = self.rng.random() < 0.5
            trunk = self.smv if venous else self.sma
            k = int(self.rng.integers(2, 5))
            start = trunk[k - 1] + (trunk[k] - trunk[k - 1]) * u(0, 1)
            side = 1 if self.rng.random() < 0.35 else -1
            end = start + np.array([side * u(25, 70), u(0, 35), u(-40, 0)])
            mid = 0.5 * (start + end) + self.rng.normal(0, 6, 3)
            tissue = "portal_vein" if venous else "artery"
            self.vessel([start, mid, end], [u(1.8, 2.8), 1.6, 1.1], tissue, "other_vessel", step=6.0, in_cavity=True)

    def hepatic_vessels(self) -> None:
        """Intrahepatic portal branches and the hepatic veins converging on the IVC above the pancreas."""
        u = self.u
        hilum = self.portal[-1]
        for _ in range(int(self.rng.integers(3, 6))):
            tip = hilum + np.array([u(5, 60), u(-30, 40), u(0, 40)])
            branch = [hilum, 0.5 * (hilum + tip) + self.rng.normal(0, 5, 3), tip]
            self.vessel(branch, [0.7 * self.r_pv, 3.0, 1.8], "portal_vein", "portal_splenic_vein", step=6.0)
        ivc_top = np.array([self.ivc_xy[0], self.ivc_xy[1] + 4, u(70, 85)])
        for angle in (u(10, 40), u(70, 110), u(140, 170)):
            direction = np.array([math.cos(math.radians(angle)), math.sin(math.radians(angle)), -u(0.3, 0.8)])
            tip = ivc_top + direction * u(55, 80)
            vein = [ivc_top, 0.5 * (ivc_top + tip), tip]
            self.vessel(vein, [5.0, 3.5, 2.0], "hepatic_vein", "other_vessel", step=6.0)

    def renal_vessels(self) -> None:
        """Renal veins (the left one crossing between the aorta and the SMA) and renal arteries."""
        u = self.u
        ao, r_ao, ivc = self.aorta_xy, self.r_aorta, self.ivc_xy
        z_lrv = self.confluence[2] - u(6, 12)
        lk, rk = self.kidney_hila["kidney_left"], self.kidney_hila["kidney_right"]
        r_lrv = u(3.5, 5)
        lrv = [
            lk,
            [ao[0] - r_ao - 6, ao[1] + 2, z_lrv + 2],
            [ao[0], ao[1] + r_ao + r_lrv - 2, z_lrv],  # squeezed between the aorta and the SMA
            [ivc[0] - 4, ivc[1], z_lrv + 4],
        ]
        radii = np.array([1, 1, 0.8, 1]) * r_lrv
        self.vessel(self.jitter(lrv, [0.5, 0.5, 1.5]), radii, "renal_vein", "other_vessel", pad=8.0)
        rrv = [rk, 0.5 * (rk + [ivc[0], ivc[1], rk[2] + 10]), [ivc[0], ivc[1], rk[2] + 12]]
        self.vessel(rrv, np.full(3, u(3.5, 5)), "renal_vein", "other_vessel", pad=8.0)
        for hilum, side in ((lk, -1), (rk, 1)):
            origin = np.array([ao[0] + side * (r_ao - 2), ao[1] - 3, z_lrv + u(-2, 6)])
            mid = [0.5 * (origin[0] + hilum[0]), min(origin[1], hilum[1]) - 6, 0.5 * (origin[2] + hilum[2])]
            self.vessel([origin, mid, hilum], [3.0, 2.6, 2.2], "artery", "other_vessel")

    def visceral_arteries(self) -> None:
        """Coeliac trunk, tortuous splenic artery along the superior pancreatic border, common hepatic artery, SMA."""
        u = self.u
        ao, r_ao = self.aorta_xy, self.r_aorta
        coeliac = np.array([ao[0] + 1, ao[1] + r_ao + u(6, 10), self.sma[0, 2] + u(10, 16)])
        splenic = [np.array([ao[0] + 1, ao[1] + r_ao - 3, coeliac[2] - 3]), coeliac]
        amp, wavelength, phase = u(2, 6), u(18, 30), u(0, 2 * math.pi)
        for name in ("body", "body_tail", "tail", "tip"):
            p, r = self.point(name), self.radius(name)
            wiggle = amp * math.sin(2 * math.pi * p[0] / wavelength + phase)
            splenic.append(p + np.array([0.0, -0.35 * r + wiggle, r + u(1, 3) + 0.5 * wiggle]))
        splenic.append(self.hilum + [0.0, 0.0, 4.0])
        self.vessel(splenic, np.full(len(splenic), u(2, 3)), "artery", "other_vessel", step=4.0)
        head_up = self.point("head_up")
        above_head = head_up + [10, -2, self.radius("head_up") + 6]
        hepatic = [coeliac, coeliac + [18, 2, 2], above_head, self.portal[-1] + [-4, 6, 8]]
        self.vessel(self.jitter(hepatic, [0, 1, 1]), np.full(4, u(2, 3)), "artery", "other_vessel", step=4.0)
        r_sma = np.full(len(self.sma), u(3, 4.5))
        r_sma[0] *= 1.2
        self.vessel(self.sma, r_sma, "artery", "other_vessel", pad=8.0)

    def portal_system(self) -> None:
        """Splenic vein along the posterior border of body and tail, SMV and portal vein to the liver hilum."""
        u = self.u
        splenic = [self.confluence]
        for name in ("body", "body_tail", "tail", "tip"):
            r = self.radius(name)
            splenic.append(self.point(name) - np.array([0.0, r + self.r_sv - u(1.5, 3.5), 0.15 * r]))
        splenic.append(self.hilum)
        self.vessel(splenic, np.full(len(splenic), self.r_sv), "portal_vein", "portal_splenic_vein", step=4.0, pad=8.0)
        self.vessel(self.smv, np.full(len(self.smv), self.r_smv), "portal_vein", "portal_splenic_vein", pad=8.0)
        radii = np.r_[self.r_smv, np.full(3, self.r_pv)]
        self.vessel(self.portal, radii, "portal_vein", "portal_splenic_vein", pad=8.0)

    def great_vessels(self) -> None:
        """Inferior vena cava and aorta (with wall calcifications in some patients)."""
        u = self.u
        ao, r_ao = self.aorta_xy, self.r_aorta
        self.add(EllipticCylinder(tuple(self.ivc_xy), self.ivc_axes, u(-10, 10)), Part("ivc", "inferior_vena_cava"))
        drift = self.rng.normal(0, 2.5, (3, 2))
        aorta = [[ao[0] + drift[i, 0], ao[1] + drift[i, 1], z] for i, z in enumerate((150.0, 0.0, -150.0))]
        self.vessel(aorta, np.full(3, r_ao), "artery", "aorta", step=30.0, pad=8.0)
        if self.rng.random() < 0.45:
            for _ in range(int(self.rng.integers(2, 9))):
                ang, z = u(0, 2 * math.pi), u(-70, 70)
                centre = np.array([ao[0] + r_ao * math.cos(ang), ao[1] + r_ao * math.sin(ang), z])
                plaque = Ellipsoid(centre, np.array([u(1.2, 2.5), u(1.2, 2.5), u(2, 6)]))
                self.add(plaque, Part("calcification", "aorta"))

    def vessels(self) -> None:
        self.group = "vessels"
        self.sample_mesenteric_trunks()
        self.mesenteric_branches()
        self.hepatic_vessels()
        self.renal_vessels()
        self.visceral_arteries()
        self.portal_system()
        self.great_vessels()

    # the whole patient -------------------------------------------------------------------------
    def draw(self) -> None:
        """Draw every structure into the paint groups (landmarks first, then organs: the order of the random stream)."""
        self.sample_body()
        self.sample_vessel_trunks()
        self.sample_pancreas()
        self.sample_spleen()
        self.body_wall()
        self.stomach_and_duodenum()  # before the bowel: the jejunum starts at the duodenojejunal flexure
        self.small_bowel()
        self.colon()
        self.posterior()
        self.liver_and_gallbladder()
        self.spleen()
        self.kidneys()
        self.adrenals_and_crura()
        self.pancreas()
        self.vessels()

    def patient(self) -> Patient:
        """Draw the patient (``draw``) and return it; call once per builder."""
        self.draw()
        skin = self.skin
        body_lo = np.array([-skin.a - 4, -skin.b_posterior - 4, -np.inf])
        body_hi = np.array([skin.a + 4, skin.b_anterior + 4, np.inf])
        diameter = 2.0 * math.sqrt(skin.a * 0.5 * (skin.b_anterior + skin.b_posterior))
        structures = tuple(s for name in self.paint_order for s in self.groups[name])
        return Patient(structures, (body_lo, body_hi), self.pancreas_bounds, diameter, (0.0, self.yv))
