"""Lower thorax of the whole-abdomen phantom: diaphragm domes, lung bases, heart, rib cage (world mm).

Everything here is drawn through an ``UpperAbdomenBuilder`` (its random stream, helpers and paint groups) from
landmarks the upper abdomen already fixed: the right dome rests on the liver, the left one on the gastric
fundus and the spleen, the heart sits on the central part of the diaphragm left of the midline, the lungs fill
the rest of the thoracic cavity above the domes (down into the posterior costophrenic recesses) and yield to
every later structure, and the ribs continue the upper-abdomen ribs upwards, the upper ones reaching the sternum
through costal cartilage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .anatomy import Part, UpperAbdomenBuilder, superellipse_radius
from .shapes import (
    Difference,
    Ellipsoid,
    EllipticCylinder,
    Intersection,
    LoftedSuperEllipse,
    Perturbed,
    Shape,
    Tube,
    Union,
    ZSlab,
    rotation,
)


@dataclass(frozen=True, eq=False)
class Diaphragm:
    """The hemidiaphragms and the lower central tendon between them as ellipsoids whose upper surfaces form the
    diaphragm (abdomen inside, thorax above)."""

    right: Ellipsoid
    left: Ellipsoid
    central: Ellipsoid

    @property
    def parts(self) -> tuple[Ellipsoid, Ellipsoid, Ellipsoid]:
        return self.right, self.left, self.central

    @property
    def apex_right_z(self) -> float:
        """Height (mm) of the top of the right dome."""
        return float(self.right.centre[2] + self.right.semi_axes[2])

    @property
    def base_z(self) -> float:
        """Height (mm) of the equator of the lower ellipsoid: below it the domes fill the whole section."""
        return float(min(e.centre[2] for e in self.parts))

    def below(self, grow_mm: float = 0.0) -> Shape:
        """Everything under the domes, grown by ``grow_mm`` (the diaphragm's thickness)."""
        return Union(tuple(Ellipsoid(e.centre, e.semi_axes + grow_mm) for e in self.parts))

    def height(self, x: float, y: float) -> float:
        """Height (mm) of the diaphragm surface above the in-plane point (x, y) (the base where off both domes)."""
        heights = [self.base_z]
        for e in self.parts:
            r2 = ((x - e.centre[0]) / e.semi_axes[0]) ** 2 + ((y - e.centre[1]) / e.semi_axes[1]) ** 2
            if r2 < 1.0:
                heights.append(float(e.centre[2] + e.semi_axes[2] * math.sqrt(1.0 - r2)))
        return max(heights)


def sample_diaphragm(b: UpperAbdomenBuilder, right_top_z: float, left_top_z: float) -> Diaphragm:
    """Domes with apices over the right and left upper quadrants at ``right_top_z`` / ``left_top_z`` (mm).

    The ellipsoids reach the chest wall 60-80 mm below their apices posteriorly and laterally (the
    costophrenic recesses) and less anteriorly.
    """
    u, c = b.u, b.cavity
    height = u(95, 120)
    axes = np.array([0.62 * c.a, 0.58 * (c.b_anterior + c.b_posterior), height])
    y_centre = 0.5 * (c.b_anterior - c.b_posterior) + u(0, 10)  # the anterior recess is shallower
    left_height = height * u(0.9, 1.0)
    right = Ellipsoid(np.array([0.42 * c.a, y_centre, right_top_z - height]), axes)
    left_axes = axes * [1.0, 1.0, left_height / height]
    left = Ellipsoid(np.array([-0.42 * c.a, y_centre, left_top_z - left_height]), left_axes)
    central_top = min(right_top_z, left_top_z) - u(12, 25)
    central = Ellipsoid(np.array([0.0, y_centre, central_top - height]), axes * [0.75, 1.0, 1.0])
    return Diaphragm(right, left, central)


def lungs(b: UpperAbdomenBuilder, diaphragm: Diaphragm, cavity: Shape) -> Shape:
    """Lung bases filling the thoracic ``cavity`` above the domes, with a muscular rim (diaphragm, pleura) and
    pulmonary vessels branching down from the hila; returns the lung shape. Paint group ``lungs``."""
    b.group = "lungs"
    u = b.u
    # behind the vertebral bodies and over the paraspinal muscles there is no lung
    paraspinal = EllipticCylinder((0.0, -b.cavity.b_posterior), (60.0, b.yv + b.cavity.b_posterior + 5.0))
    thoracic = Difference(Intersection((cavity, ZSlab(diaphragm.base_z, np.inf))), paraspinal)
    shape = Difference(thoracic, diaphragm.below())
    b.add(shape, Part("muscle", "muscle"), Part("lung", "lung", inset_mm=u(3.0, 4.5), texture=b.noise(6.0)))
    top = diaphragm.apex_right_z
    for side in (1, -1):
        for _ in range(int(b.rng.integers(7, 13))):
            point = np.array([side * u(35, 60) * b.sx, b.y_o + u(0, 40), top + u(40, 90)])
            pts = [point]
            for _ in range(4):
                step = np.array([side * u(0.1, 0.7), u(-0.7, 0.4), -1.0])
                pts.append(pts[-1] + step / np.linalg.norm(step) * u(20, 32) + b.rng.normal(0, 3, 3))
            radii = np.linspace(u(2.8, 4.5), 1.0, len(pts))
            vessel = Tube.through(np.array(pts), radii, step=6.0, pad=3.0)
            b.add(Intersection((vessel, shape)), Part("blood", "lung"))
    return shape


def heart_and_mediastinum(b: UpperAbdomenBuilder, diaphragm: Diaphragm, cavity: Shape, z_top: float) -> None:
    """Mediastinal fat, the heart with pericardial fat on the diaphragm, the oesophagus from the cardia up
    (paint group ``heart``) and the descending thoracic aorta above the abdominal one (group ``vessels``)."""
    b.group = "heart"
    u = b.u
    ao, r_ao = b.aorta_xy, b.r_aorta
    centre_x, centre_y = -u(15, 35) * b.sx, b.y_o + u(0.45, 0.62) * b.depth
    floor = diaphragm.height(centre_x, centre_y)
    mediastinum = EllipticCylinder((0.5 * ao[0] - 3.0, b.y_o + 12.0), (u(28, 36), u(24, 30)))
    b.add(Difference(Intersection((mediastinum, ZSlab(floor - 10.0, np.inf))), diaphragm.below()), Part("fat", "fat"))
    axes = np.array([u(55, 68), u(42, 52), u(50, 62)])
    heart = Ellipsoid(
        np.array([centre_x, centre_y, floor + u(0.75, 0.9) * axes[2]]), axes, rotation(yaw=-u(30, 45), pitch=-u(5, 20))
    )
    shape = Intersection((Difference(Perturbed(heart, b.noise(20.0, 6), 2.0), diaphragm.below(3.0)), cavity))
    b.add(
        shape,
        Part("fat", "fat", inset_mm=-u(3, 10)),  # pericardial and epicardial fat
        Part("myocardium", "heart"),
        Part("blood", "heart", inset_mm=u(8, 12)),
    )
    hiatus = np.array([ao[0] + r_ao + 6, ao[1] + 0.5 * r_ao + 6, floor + 5])
    oesophagus = [b.cardia, 0.5 * (b.cardia + hiatus) + [0, 0, 10], hiatus, hiatus + [2, -2, 80], hiatus + [3, -4, 220]]
    tube = Tube.through(np.array(oesophagus), np.full(5, u(7, 10)), step=6.0)
    b.gi_tube(tube, "other", "bowel_wall", u(3, 4.5), float(hiatus[1]) if b.rng.random() < 0.5 else None)
    b.group = "vessels"
    thoracic = [
        [ao[0], ao[1], 130.0],
        [ao[0] - u(0, 5), ao[1] - u(2, 8), floor + 80],
        [ao[0] - u(2, 8), ao[1] - u(5, 12), z_top],
    ]
    b.vessel(thoracic, np.full(3, 0.95 * r_ao), "artery", "aorta", step=20.0, pad=8.0)


def rib_cage(
    b: UpperAbdomenBuilder,
    cavity: LoftedSuperEllipse,
    muscle: LoftedSuperEllipse,
    first_z: dict[int, float],
    z_top: float,
) -> None:
    """Ribs above the upper-abdomen ones up to ``z_top`` (paint group ``posterior``), each from the spine around
    the body wall midway between ``cavity`` and ``muscle`` and falling anteriorly; the lower ones end laterally,
    the upper ones reach the sternum through costal cartilage. ``first_z``: side -> z of the highest rib drawn."""
    b.group = "posterior"
    u = b.u
    sternal_ends = []

    def wall_point(theta: float, side: int, z: float) -> list[float]:
        angle = -90.0 + theta if side > 0 else -90.0 - theta  # from the posterior midline towards the side
        r = 0.5 * (superellipse_radius(cavity.section(z), angle) + superellipse_radius(muscle.section(z), angle))
        return [r * math.cos(math.radians(angle)), r * math.sin(math.radians(angle)), z]

    for side in (1, -1):
        z_post, k = first_z[side], 0
        while z_post < z_top:
            z_post, k = z_post + u(26, 34), k + 1
            theta0, theta_bone = u(15, 25), u(105, 130) if k <= 2 else u(125, 148)
            drop = u(0.5, 0.7)  # mm per degree: the anterior end lies lower
            thetas = np.linspace(theta0, theta_bone, 9)
            bone = [wall_point(t, side, z_post - (t - theta0) * drop) for t in thetas]
            radius = u(4, 6)
            b.add(
                Tube.through(np.array(bone), np.full(len(bone), radius), step=8.0),
                Part("bone", "bone"),
                Part("bone_cancellous", "bone", inset_mm=1.5),
            )
            if k <= 1:
                continue  # the lowest added rib (10th) ends free like the upper-abdomen ones
            z_end, theta_end = bone[-1][2], u(168, 176)
            rise = u(20, 45) if k <= 4 else u(0, 25)  # the costal margin climbs steeply to the xiphoid
            thetas = np.linspace(theta_bone, theta_end, 4)
            cart = [wall_point(t, side, z_end + rise * (t - theta_bone) / (theta_end - theta_bone)) for t in thetas]
            b.add(Tube.through(np.array(cart), np.full(4, 0.9 * radius), step=6.0), Part("cartilage", "other"))
            sternal_ends.append(cart[-1][2])
    if sternal_ends:
        z_ref = float(np.median(sternal_ends))
        y_in, y_out = cavity.section(z_ref).b_anterior, muscle.section(z_ref).b_anterior
        sternum = EllipticCylinder((0.0, 0.5 * (y_in + y_out)), (u(12, 16), min(u(5, 7), 0.5 * (y_out - y_in) + 1)))
        b.add(
            Intersection((sternum, ZSlab(min(sternal_ends) - u(5, 15), z_top + 100.0))),
            Part("bone_cortical", "bone"),
            Part("bone_cancellous", "bone", inset_mm=1.5),
        )
