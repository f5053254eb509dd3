"""Pelvis of the whole-abdomen phantom: sacrum, iliac bowl, acetabula and femora, pubis, bladder, iliac vessels.

``sample_pelvis(b)`` draws the landmarks (``PelvisLandmarks``, world mm) through an ``UpperAbdomenBuilder``
before any pelvic structure exists, so that the body outline and the colon can follow them; the ``*_structures``
functions then paint the pelvis. The sacrum starts below the last lumbar vertebra and curves backwards, the
iliac wings are the lower, lateral part of an ellipsoidal bowl whose rim is the iliac crest, the femoral heads
sit in the acetabula at the lower end of the bowl, and the bladder lies behind the pubic symphysis.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .anatomy import Part, UpperAbdomenBuilder
from .shapes import (
    Difference,
    Ellipsoid,
    EllipticCylinder,
    HalfSpace,
    Intersection,
    Perturbed,
    Shell,
    Tube,
    Union,
    ZSlab,
    rotation,
)

SACRAL_SEGMENTS_MM = np.array([28.0, 24.0, 20.0, 16.0, 13.0, 10.0, 8.0])
"""Lengths of S1-S5 and two coccygeal segments along the sacral curve."""
SACRAL_HALF_WIDTH_MM = np.array([50.0, 40.0, 30.0, 22.0, 15.0, 10.0, 7.0])
SACRAL_HALF_DEPTH_MM = np.array([17.0, 14.0, 11.0, 9.0, 7.0, 6.0, 5.0])


@dataclass(frozen=True)
class PelvisLandmarks:
    """World positions (mm) of the pelvis of one patient.

    - ``sacrum_top_z``: S1 upper endplate; ``sacrum_tilt_deg``: inclination of S1 from vertical (pointing down
      and back), falling by ``sacrum_curve_deg`` per segment (the sacrum is concave anteriorly and the coccyx
      points forward); ``sacrum_scale``: size factor of the sacral segments.
    - ``crest_z``: iliac crests; ``bowl_centre`` (3,) and ``bowl_axes`` (3,): the ellipsoid whose lower lateral
      shell is the pair of iliac wings (its equator is the crest).
    - ``hip``: (|x|, y, z) of the femoral head centres, ``head_radius_mm``.
    - ``symphysis``: (y, z) of the upper border of the pubic symphysis.
    - ``bifurcation_z``: aortic bifurcation (L4); ``lower_limit_z``: lowest height the anatomy models.
    """

    sacrum_top_z: float
    sacrum_tilt_deg: float
    sacrum_curve_deg: float
    sacrum_scale: float
    crest_z: float
    bowl_centre: np.ndarray
    bowl_axes: np.ndarray
    hip: tuple[float, float, float]
    head_radius_mm: float
    symphysis: tuple[float, float]
    bifurcation_z: float
    lower_limit_z: float

    def sacral_axis(self, spine_y: float) -> tuple[np.ndarray, np.ndarray]:
        """Ends of the sacral segments along the curve (8, 3) and the unit anterior direction of each segment (7, 3)."""
        angles = np.radians(self.sacrum_tilt_deg - self.sacrum_curve_deg * np.arange(len(SACRAL_SEGMENTS_MM)))
        down = np.stack([np.zeros_like(angles), -np.sin(angles), -np.cos(angles)], axis=1)
        steps = down * (SACRAL_SEGMENTS_MM * self.sacrum_scale)[:, None]
        ends = np.vstack([[0.0, spine_y, self.sacrum_top_z], steps]).cumsum(axis=0)
        anterior = np.stack([np.zeros_like(angles), np.cos(angles), -np.sin(angles)], axis=1)
        return ends, anterior

    def sacrum_front(self, spine_y: float) -> np.ndarray:
        """Points (7, 3) on the anterior (pelvic) surface of the sacrum and coccyx, top to bottom."""
        ends, anterior = self.sacral_axis(spine_y)
        return 0.5 * (ends[:-1] + ends[1:]) + anterior * (SACRAL_HALF_DEPTH_MM * self.sacrum_scale)[:, None]


def sample_pelvis(b: UpperAbdomenBuilder) -> PelvisLandmarks:
    """Draw the pelvic landmarks of the builder's patient (uses its cavity section, spine frame and stream)."""
    u, c = b.u, b.cavity
    sacrum_top = u(-160, -140)
    crest = sacrum_top + u(25, 45)
    hip_z = sacrum_top - u(95, 115)
    hip = (u(80, 92) * min(1.0, b.sx), b.yv + u(30, 45), hip_z)
    bowl_y = b.y_o + u(25, 45)
    axes = np.array([c.a * u(0.98, 1.08), (bowl_y - (b.yv - 10.0)) / 0.93, (crest - hip_z) / u(0.8, 0.88)])
    symphysis = (hip[1] + u(50, 68), hip_z - u(0, 15))
    return PelvisLandmarks(
        sacrum_top_z=sacrum_top,
        sacrum_tilt_deg=u(40, 55),
        sacrum_curve_deg=u(9, 14),
        sacrum_scale=u(0.9, 1.1),
        crest_z=crest,
        bowl_centre=np.array([0.0, bowl_y, crest]),
        bowl_axes=axes,
        hip=hip,
        head_radius_mm=u(21, 26),
        symphysis=symphysis,
        bifurcation_z=sacrum_top + u(35, 60),
        lower_limit_z=symphysis[1] - u(20, 50),
    )


def snap_to_spine(p: PelvisLandmarks, period: float, phase: float, disc: float) -> PelvisLandmarks:
    """``p`` with the sacrum moved (by at most half a vertebra) to start under the lumbar disc nearest to it.

    Vertebral body k of the z-periodic spine spans [phase + k * period, phase + (k + 1) * period - disc].
    """
    k = round((p.sacrum_top_z + disc - phase) / period)
    return dataclasses.replace(p, sacrum_top_z=phase + k * period - disc)


def bone_parts(cancellous_inset_mm: float = 1.5) -> tuple[Part, Part]:
    """Cortical shell and cancellous core of a bone (label ``bone``)."""
    return Part("bone_cortical", "bone"), Part("bone_cancellous", "bone", inset_mm=cancellous_inset_mm)


def pelvic_bones(b: UpperAbdomenBuilder, p: PelvisLandmarks) -> None:
    """Sacrum with its canal, iliac wings, acetabula, femoral heads, necks and shafts, pubic and ischial rami
    and the symphysis (paint group ``pelvis``, above the bladder and the pelvic muscles)."""
    b.group = "pelvis"
    u = b.u
    ends, anterior = p.sacral_axis(b.yv)
    segments = []
    for i in range(len(SACRAL_SEGMENTS_MM)):
        angle = p.sacrum_tilt_deg - p.sacrum_curve_deg * i
        axes = np.array([SACRAL_HALF_WIDTH_MM[i], SACRAL_HALF_DEPTH_MM[i], 0.5 * SACRAL_SEGMENTS_MM[i] + 2.0])
        segments.append(Ellipsoid(0.5 * (ends[i] + ends[i + 1]), axes * p.sacrum_scale, rotation(roll=-angle)))
    b.add(Perturbed(Union(tuple(segments)), b.noise(15.0, 6), 1.0), *bone_parts())
    depth = 0.55 * SACRAL_HALF_DEPTH_MM[:-2] * p.sacrum_scale
    canal = 0.5 * (ends[:-3] + ends[1:-2]) - anterior[:-2] * depth[:, None]  # S1-S5, behind the bodies
    b.add(Tube.through(canal, np.linspace(6.0, 2.5, len(canal)), step=5.0), Part("csf", "other"))
    # iliac wings: the lower lateral shell of the bowl, open anteriorly, medially joined to the sacral alae
    hx, hy, hz = p.hip
    bowl = Perturbed(Ellipsoid(p.bowl_centre, p.bowl_axes), b.noise(25.0, 6), 3.0)
    anterior_limit = HalfSpace(np.array([0.0, p.bowl_centre[1] + u(0.0, 0.15) * p.bowl_axes[1], 0.0]), [0.0, 1.0, 0.0])
    middle = EllipticCylinder((0.0, 0.0), (u(36, 42), 400.0))
    wing_t = u(6, 9)
    wings = Difference(Intersection((Shell(bowl, wing_t), ZSlab(hz - 5.0, p.crest_z), anterior_limit)), middle)
    iliacus = Shell(Perturbed(Ellipsoid(p.bowl_centre, p.bowl_axes - wing_t), b.noise(25.0, 6), 2.0), u(10, 18))
    b.group = "posterior"  # muscle: painted under the bones and the pelvic organs
    iliacus_slab = ZSlab(hz + 10.0, p.crest_z - 5.0)
    b.add(Difference(Intersection((iliacus, iliacus_slab, anterior_limit)), middle), Part("muscle", "muscle"))
    b.group = "pelvis"
    b.add(wings, *bone_parts())
    sy, sz = p.symphysis
    r_head = p.head_radius_mm
    b.add(Ellipsoid(np.array([0.0, sy - 2.0, sz - 15.0]), np.array([3.0, 9.0, 18.0])), Part("disc", "other"))
    for side in (1, -1):
        head = np.array([side * hx, hy, hz])
        medial = HalfSpace(head + [side * 4.0, 0, 0], [side, 0.0, 0.0])  # the cup opens laterally
        cup = Intersection((Shell(Ellipsoid(head, np.full(3, r_head + 7.0)), 6.5), medial))
        b.add(cup, *bone_parts())
        b.add(Ellipsoid(head, np.full(3, r_head)), *bone_parts(2.0))
        trochanter = head + np.array([side * u(35, 45), -u(0, 10), -u(25, 35)])
        femur = [head, trochanter, trochanter + [-side * 5.0, 0.0, -60.0], trochanter + [-side * 10.0, 5.0, -250.0]]
        b.add(Tube.through(np.array(femur), [0.65 * r_head, 16.0, 14.0, 13.0], step=8.0), *bone_parts(3.0))
        b.add(Ellipsoid(trochanter + [side * 6.0, -6.0, 8.0], np.array([16.0, 18.0, 24.0])), *bone_parts(2.0))
        r_ramus = u(8, 10)
        superior = [
            head + [-side * 0.6 * r_head, 0.6 * r_head, -3.0],
            [side * 0.5 * hx, sy - 8.0, sz - 5.0],
            [side * (r_ramus + 1.5), sy, sz - 12.0],
        ]
        b.add(Tube.through(np.array(superior), np.full(3, r_ramus), step=6.0), *bone_parts())
        inferior = [  # inferior pubic ramus, ischial tuberosity, ischium up to the acetabulum
            [side * (r_ramus + 1.5), sy - 4.0, sz - 25.0],
            [side * 0.45 * hx, sy - 25.0, sz - 45.0],
            [side * (hx - 25.0), hy - 35.0, hz - 45.0],
            head + [-side * 18.0, -30.0, -10.0],
        ]
        b.add(Tube.through(np.array(inferior), np.full(4, u(8, 11)), step=6.0), *bone_parts())


def pelvic_muscles(b: UpperAbdomenBuilder, p: PelvisLandmarks, psoas_end: dict[int, tuple[np.ndarray, float]]) -> None:
    """Psoas continued from its lowest upper-abdomen point along the pelvic brim to the iliopsoas in front of the
    hip (paint group ``posterior``); ``psoas_end``: side -> (point, radius)."""
    b.group = "posterior"
    u = b.u
    hx, hy, hz = p.hip
    for side, (end, radius) in psoas_end.items():
        pts = [
            end,
            [side * (abs(end[0]) + u(10, 20)), end[1] + u(10, 20), p.sacrum_top_z - 30.0],
            [side * (hx - 20.0), hy + 0.9 * p.head_radius_mm, hz + 15.0],
            [side * (hx - 12.0), hy + 30.0, hz - 40.0],
        ]
        radii = radius * np.array([1.0, 1.0, 0.85, 0.8])
        b.add(Tube.through(np.array(pts), radii, step=10.0), Part("muscle", "muscle"))


def pelvic_organs(b: UpperAbdomenBuilder, p: PelvisLandmarks) -> None:
    """Uterus (above and behind the bladder) or prostate (below it), and the urinary bladder behind the symphysis,
    from collapsed to distended (paint group ``solid``)."""
    b.group = "solid"
    u = b.u
    sy, sz = p.symphysis
    fill = float(b.rng.beta(1.5, 1.5))
    axes = np.array([u(22, 28) + 28 * fill, u(18, 24) + 24 * fill, u(15, 20) + 30 * fill])
    centre = np.array([u(-6, 6), sy - 6.0 - axes[1], sz - 8.0 + 0.9 * axes[2]])
    if b.rng.random() < 0.5:  # female
        uterus = Ellipsoid(
            centre + [u(-10, 10), -axes[1] - u(5, 15), axes[2] * u(0.6, 1.0)],
            np.array([u(20, 28), u(15, 22), u(28, 40)]),
            rotation(roll=u(-60, -30)),  # anteverted
        )
        b.add(Perturbed(uterus, b.noise(20.0, 6), 2.0), Part("muscle", "other"))
    else:
        prostate = Ellipsoid(np.array([0.0, sy - 25.0, sz - 18.0]), np.array([u(18, 24), u(14, 18), u(16, 22)]))
        b.add(prostate, Part("soft_tissue", "other"))
    wall = 5.0 - 3.0 * fill
    bladder = Perturbed(Ellipsoid(centre, axes), b.noise(25.0, 6), 1.5)
    b.add(bladder, Part("soft_tissue", "urinary_bladder"), Part("urine", "urinary_bladder", inset_mm=wall))


def iliac_vessels(b: UpperAbdomenBuilder, p: PelvisLandmarks) -> None:
    """Common, external and internal iliac arteries from the aortic bifurcation and the iliac veins joining the
    inferior vena cava just below it (paint group ``vessels``)."""
    b.group = "vessels"
    u = b.u
    ao, ivc = b.aorta_xy, b.ivc_xy
    hx, hy, hz = p.hip
    z_bif = p.bifurcation_z
    r_cia = u(5, 6.5)
    for side in (1, -1):
        split = np.array([side * u(25, 35), ao[1] - 5.0, p.sacrum_top_z - 10.0])
        external = [  # common and external iliac artery, on to the femoral artery
            [ao[0], ao[1], z_bif + 4],
            split,
            [side * (hx - 25.0), hy + 25.0, hz + 10.0],
            [side * (hx - 15.0), hy + 35.0, hz - 40.0],
        ]
        b.vessel(b.jitter(external, [0, 1.5, 1.5]), [r_cia, r_cia, 0.8 * r_cia, 0.75 * r_cia], "artery", "other_vessel")
        internal = [split, split + [side * 8.0, -20.0, -25.0], [side * 40.0, b.yv - 10.0, p.sacrum_top_z - 60.0]]
        b.vessel(internal, [0.7 * r_cia, 0.6 * r_cia, 0.5 * r_cia], "artery", "other_vessel")
        vein = [
            [ivc[0], ivc[1], z_bif - 4],
            [side * u(20, 30), ivc[1] - 10.0, p.sacrum_top_z - 15.0],
            [side * (hx - 35.0), hy + 20.0, hz + 5.0],
            [side * (hx - 25.0), hy + 28.0, hz - 40.0],
        ]
        r_vein = u(6, 8)
        b.vessel(b.jitter(vein, [0, 1.5, 1.5]), [r_vein, r_vein, 0.9 * r_vein, 0.85 * r_vein], "ivc", "other_vessel")
