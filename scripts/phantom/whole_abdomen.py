"""Whole-abdomen patient anatomy: lung bases and heart to the pelvis around the upper-abdomen organs (world mm).

``WholeAbdomenBuilder(rng).patient()`` draws every upper-abdomen structure with the same random stream as
``UpperAbdomenBuilder`` (so the pancreas and its neighbours keep their real relations) and adds, from a stream
of its own (``rng.spawn``), what an abdomen or abdomen-pelvis CT shows beyond them:

- habitus (thin to obese: subcutaneous and visceral fat) and a body outline varying from the lower chest to the
  hips (``LoftedSuperEllipse``), arms beside the body (in the field, with humerus, radius and ulna) or raised
  (out of it), the scanner table under the back;
- the lower thorax (``scripts.phantom.thorax``): diaphragm domes on the liver and the fundus, lung bases with
  vessels, heart with pericardial fat, mediastinal fat, oesophagus, thoracic aorta, ribs with costal cartilage
  and the sternum;
- the whole colon with segment-wise faeces and gas (``scripts.phantom.large_bowel``), small-bowel loops down
  into the pelvis with fluid or oral contrast, more mesenteric vessels, lymph nodes;
- the pelvis (``scripts.phantom.pelvis``): the lumbar spine ending on the sacrum, iliac wings, acetabula and
  femoral heads, pubis, iliacus and psoas, bladder, uterus or prostate, iliac vessels (the aorta and the inferior
  vena cava end at their bifurcation);
- age: older patients get a smaller, more lobulated and fattier pancreas.

The patient carries its own cranio-caudal coverage (``COVERAGE_MM``, placed at random inside its modelled
extent, always containing the pancreas and the liver dome), replacing the acquisition domain's ``z_extent_mm``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from .anatomy import Part, Patient, Structure, UpperAbdomenBuilder
from .large_bowel import whole_colon
from .pelvis import iliac_vessels, pelvic_bones, pelvic_muscles, pelvic_organs, sample_pelvis, snap_to_spine
from .shapes import (
    Ellipsoid,
    EllipticCylinder,
    Intersection,
    LoftedSuperEllipse,
    Perturbed,
    Shell,
    SuperEllipse,
    Tube,
    ZSlab,
)
from .thorax import heart_and_mediastinum, lungs, rib_cage, sample_diaphragm

WHOLE_ABDOMEN_PAINT_ORDER = (
    "body",
    "bowel",
    "lungs",
    "posterior",
    "solid",
    "pelvis",
    "heart",
    "upper_gi",
    "pancreas",
    "vessels",
)
"""Paint groups, lowest priority first: the lungs fill the chest above the domes and yield to every organ, the
pelvic bones cover the bladder they surround, the heart sits on the diaphragm above the abdominal organs."""

COVERAGE_MM = (300.0, 500.0)
"""Range of the random cranio-caudal coverage (mm): abdomen (lung bases to iliac crests) to abdomen-pelvis."""

ORAL_CONTRAST_P = {"none": 0.45, "oral_contrast_dilute": 0.3, "oral_contrast": 0.25}
"""Probability of each small-bowel content tissue: no oral contrast (fluid), dilute or positive contrast."""


def _loft(
    ref: SuperEllipse, knots: np.ndarray, a: np.ndarray, b_ant: np.ndarray, b_post: np.ndarray
) -> LoftedSuperEllipse:
    """``ref`` lofted along ``knots`` with semi-axes ``a``, ``b_ant``, ``b_post`` (mm, one per knot)."""
    return LoftedSuperEllipse(ref.centre_xy, knots, a, b_ant, b_post, ref.exponent)


class WholeAbdomenBuilder(UpperAbdomenBuilder):
    """Draws one whole-abdomen patient (see the module docstring); ``rng`` is consumed as by the upper abdomen."""

    def __init__(self, rng: np.random.Generator):
        super().__init__(rng, WHOLE_ABDOMEN_PAINT_ORDER)
        self.extra_rng = rng.spawn(1)[0]  # leaves rng's own state untouched
        with self.drawing_from(self.extra_rng):
            self.age = self.u(20, 90)
            self.aging = float(np.clip((self.age - 40.0) / 45.0, 0.0, 1.0))  # 0 up to 40 years, 1 from 85
            self.habitus = float(self.rng.beta(1.6, 1.6))  # 0 thin .. 1 obese
            self.arms_down = bool(self.rng.random() < 0.3)
            self.oral_contrast = str(self.rng.choice(list(ORAL_CONTRAST_P), p=list(ORAL_CONTRAST_P.values())))

    @contextmanager
    def drawing_from(self, rng: np.random.Generator) -> Iterator[None]:
        """Within the block every draw of the builder's helpers comes from ``rng``."""
        saved, self.rng = self.rng, rng
        try:
            yield
        finally:
            self.rng = saved

    # upper-abdomen steps with whole-abdomen additions -----------------------------------------
    def sample_body(self) -> None:
        """The upper-abdomen section, then habitus: visceral fat widens the cavity (the organs stay where they
        are), subcutaneous fat thickens the skin layer; then the pelvic landmarks."""
        super().sample_body()
        c, m = self.cavity, self.muscle_outer
        with self.drawing_from(self.extra_rng):
            u, h = self.u, self.habitus
            cavity = SuperEllipse(c.centre_xy, c.a + 14 * h, c.b_anterior + 24 * h, c.b_posterior, c.exponent)
            wall_lateral, wall_anterior = m.a - c.a, m.b_anterior - c.b_anterior  # muscle thickness kept
            muscle = SuperEllipse(
                m.centre_xy, cavity.a + wall_lateral, cavity.b_anterior + wall_anterior, m.b_posterior, m.exponent
            )
            fat = np.array([3 + 34 * h * u(0.7, 1.2), 5 + 55 * h * u(0.7, 1.2), 5 + 28 * h * u(0.7, 1.2)])
            fat[0] = min(fat[0], 190.0 - muscle.a)
            self.subcutaneous_fat = fat  # lateral, anterior, posterior (mm)
            skin_axes = np.array([muscle.a, muscle.b_anterior, muscle.b_posterior]) + fat + 2.0
            self.skin = SuperEllipse(c.centre_xy, *map(float, skin_axes), self.skin.exponent)
            self.cavity, self.muscle_outer = cavity, muscle
            self.pelvis = sample_pelvis(self)

    def sample_pancreas(self) -> None:
        """The upper-abdomen gland, thinner with age (atrophy from ~40 years)."""
        super().sample_pancreas()
        with self.drawing_from(self.extra_rng):
            self.pancreas_r = self.pancreas_r * (1.0 - self.aging * self.u(0.1, 0.3))

    def pancreas_lobulation(self) -> float:
        return super().pancreas_lobulation() * (1.0 + 0.5 * self.aging)

    def pancreas_fat_fraction(self) -> float:
        base = super().pancreas_fat_fraction()
        with self.drawing_from(self.extra_rng):
            aged = self.aging * self.u(0.0, 0.35)
        return 1.0 - (1.0 - base) * (1.0 - aged)

    def body_wall(self) -> None:
        """Skin, subcutaneous fat, muscle wall and cavity lofted from the lower chest to the hips (the upper-abdomen
        noise fields, same draws), then the arms and the table."""
        self.group = "body"
        p, c, m, s = self.pelvis, self.cavity, self.muscle_outer, self.skin
        hx = p.hip[0]
        knots = np.array([p.lower_limit_z - 40, p.hip[2], p.hip[2] + 45, p.crest_z - 45, p.crest_z + 25, 130.0, 220.0])
        ones = np.ones(len(knots))
        self.cavity_loft = _loft(  # narrowing into the true pelvis inside the iliac wings
            c,
            knots,
            c.a * np.array([0.42, 0.42, 0.55, 0.85, 1.0, 1.0, 1.03]),
            c.b_anterior * np.array([0.85, 0.85, 0.9, 0.97, 1.0, 1.0, 1.0]),
            c.b_posterior * ones,
        )
        hips = hx + 75.0  # greater trochanters and the gluteal muscles over them
        self.muscle_loft = _loft(  # gluteal muscles over the iliac wings and the hips
            m,
            knots,
            np.array([hips, hips, hips, max(1.04 * m.a, p.bowl_axes[0] + 28), m.a, m.a, 1.02 * m.a]),
            m.b_anterior * np.array([0.88, 0.88, 0.92, 0.98, 1.0, 1.0, 1.0]),
            m.b_posterior * np.array([1.12, 1.12, 1.1, 1.04, 1.0, 1.0, 1.0]),
        )
        fat = self.subcutaneous_fat
        thorax = np.array([1, 1, 1, 1, 1, 0.9, 0.8])  # the abdominal panniculus thins over the chest
        ml = self.muscle_loft
        self.skin_loft = _loft(
            s, knots, ml.a + fat[0] * thorax + 2, ml.b_anterior + fat[1] * thorax + 2, ml.b_posterior + fat[2] + 2
        )
        skin_shape = Perturbed(self.skin_loft, self.planar_noise(40.0), 2.0)
        self.add(skin_shape, Part("soft_tissue", "other"), Part("fat", "fat", inset_mm=2.0))
        self.add(Perturbed(self.muscle_loft, self.planar_noise(30.0), 2.0), Part("muscle", "muscle"))
        self.cavity_shape = Perturbed(self.cavity_loft, self.planar_noise(30.0), 2.5)
        self.add(self.cavity_shape, Part("fat", "fat"))
        with self.drawing_from(self.extra_rng):
            if self.arms_down:
                self.arms()
            self.table()

    def arms(self) -> None:
        """Arms hanging beside the body: upper arm with the humerus down to the elbow, forearm with radius and ulna."""
        u, h = self.u, self.habitus
        z_elbow = u(-90, -20)
        z_wrist = z_elbow - u(230, 270)
        for side in (1, -1):
            gap, y = u(0, 8), u(-30, 0)  # resting against the flanks on the table
            r_upper, r_fore = u(38, 48) + 15 * h, u(30, 38) + 10 * h
            zs = np.array([400.0, z_elbow + 60, z_elbow, z_elbow - 120, z_wrist])
            radii = np.array([r_upper, r_upper, 0.5 * (r_upper + r_fore), r_fore, 0.8 * r_fore])
            xs = [side * (self.skin_loft.section(z).a + gap + r) for z, r in zip(zs, radii)]
            axis = np.stack([xs, np.full(5, y), zs], axis=1)
            fat = 4 + 16 * h
            self.add(
                Tube.through(axis, radii, step=10.0),
                Part("soft_tissue", "other"),
                Part("fat", "fat", inset_mm=2.0),
                Part("muscle", "muscle", inset_mm=2.0 + fat),
            )
            bone = [Part("bone_cortical", "bone"), Part("bone_cancellous", "bone", inset_mm=3.0)]
            self.add(Tube.through(axis[:3] + [0, -3, 0], [u(10, 12), 11.0, 14.0], step=10.0), *bone)
            for dy in (-9.0, 9.0):  # radius and ulna
                forearm = axis[2:] + [0, dy, 0]
                forearm[0, 2] -= 12.0
                self.add(Tube.through(forearm, [7.0, 6.0, 7.0], step=10.0), *bone)

    def table(self) -> None:
        """Curved carbon-fibre table top under the patient's back (foam core, label background)."""
        u = self.u
        y_top = -float(self.skin_loft.b_posterior.max()) - 2.0 * 2.0 - u(0, 4)  # below the perturbed skin
        radius, thick, half_width = u(600, 1000), u(35, 55), u(200, 240)
        curved = Shell(EllipticCylinder((0.0, y_top + radius), (radius + thick, radius + thick)), thick)
        table = Intersection((curved, EllipticCylinder((0.0, y_top - 0.5 * thick), (half_width, 3.0 * thick))))
        self.add(table, Part("table_shell", "background"), Part("table_core", "background", inset_mm=2.5))

    def small_bowel(self) -> None:
        """The upper-abdomen loops, more ileal loops down into the pelvis, and oral contrast in most loops of a
        patient who drank it."""
        first = len(self.groups["bowel"])
        super().small_bowel()
        with self.drawing_from(self.extra_rng):
            u, a, d, p = self.u, self.cavity.a, self.depth, self.pelvis
            boxes = [
                ((-0.7 * a, 0.6 * a), (self.y_o + 0.0, self.y_o + 0.85 * d), (p.crest_z - 30.0, -100.0)),
                ((-0.45 * a, 0.45 * a), (self.y_o - 10.0, self.y_o + 0.7 * d), (p.hip[2] + 40.0, p.crest_z - 30.0)),
                ((-0.6 * a, 0.6 * a), (self.y_o + 0.3 * d, self.y_o + 0.9 * d), (-160.0, -90.0)),
            ]
            for _ in range(int(self.rng.integers(5, 10))):
                box = boxes[int(self.rng.integers(len(boxes)))]
                self.small_bowel_loop(np.array([u(*box[0]), u(*box[1]), u(*box[2])]), box)
            group = self.groups["bowel"]
            if self.oral_contrast != "none":
                for i in range(first, len(group)):
                    if self.rng.random() < 0.7:
                        parts = tuple(dataclasses.replace(pt, tissue=self.oral_contrast) if pt.tissue == "fluid"
                                      else pt for pt in group[i].parts)
                        group[i] = Structure(group[i].shape, parts)

    def colon(self) -> None:
        """The whole colon; the upper-abdomen frame and content (same draws) make its ascending-to-descending part."""
        frame, radii = self.colon_frame()
        transverse = self.colon_parts()
        with self.drawing_from(self.extra_rng):
            whole_colon(self, frame, radii, transverse, self.pelvis)

    def posterior(self) -> None:
        """The upper-abdomen spine and muscles, the vertebral column ended on the sacrum, the rib cage up to the top
        of the field, and the pelvic muscles."""
        first = len(self.groups["posterior"])
        super().posterior()
        self.pelvis = snap_to_spine(self.pelvis, self.spine_period, self.spine_phase, self.disc_mm)
        lumbar = ZSlab(self.pelvis.sacrum_top_z, np.inf)
        group = self.groups["posterior"]
        for i in range(first, len(group)):  # z-unbounded bone, discs and canal end at the sacrum; muscles go on
            s = group[i]
            if s.shape.bounds[0][2] == -np.inf and all(pt.organ != "muscle" for pt in s.parts):
                group[i] = Structure(Intersection((s.shape, lumbar)), s.parts)
        with self.drawing_from(self.extra_rng):
            rib_cage(self, self.cavity_loft, self.muscle_loft, self.rib_top_z, 420.0)
            pelvic_muscles(self, self.pelvis, self.psoas_end)

    # structures of the whole abdomen only ------------------------------------------------------
    def draw(self) -> None:
        super().draw()
        with self.drawing_from(self.extra_rng):
            u, p = self.u, self.pelvis
            left_top = max(self.cardia[2] + self.fundus_radius, self.spleen_centre[2] + self.spleen_axes[2]) + 2.0
            right_top = self.liver_dome_z + 1.0
            self.diaphragm = sample_diaphragm(self, right_top, min(max(left_top, right_top - 35.0), right_top))
            self.z_top = self.diaphragm.apex_right_z + u(25, 90)  # the highest a scan of this patient may start
            lungs(self, self.diaphragm, self.cavity_shape)
            heart_and_mediastinum(self, self.diaphragm, self.cavity_shape, self.z_top + 60.0)
            pelvic_bones(self, p)
            pelvic_organs(self, p)
            iliac_vessels(self, p)
            self.lower_mesenteric_vessels()
            self.lymph_nodes()
            z_atrium = self.diaphragm.apex_right_z + u(5, 20)
            self.clip_trunks(p.bifurcation_z, z_atrium)

    def clip_trunks(self, z_bifurcation: float, z_atrium: float) -> None:
        """End the aorta at its bifurcation and the inferior vena cava between its confluence and the right atrium."""
        slabs = {"aorta": ZSlab(z_bifurcation, np.inf), "inferior_vena_cava": ZSlab(z_bifurcation - 8.0, z_atrium)}
        group = self.groups["vessels"]
        for i, s in enumerate(group):
            organ = s.parts[0].organ
            if organ in slabs and s.shape.bounds[0][2] < z_bifurcation:
                group[i] = Structure(Intersection((s.shape, slabs[organ])), s.parts)

    def lower_mesenteric_vessels(self) -> None:
        """Ileal branches of the SMA and SMV fanning into the lower abdomen, and the ileocolic vessels."""
        self.group = "vessels"
        u = self.u
        for _ in range(int(self.rng.integers(5, 10))):
            venous = self.rng.random() < 0.5
            trunk = self.smv if venous else self.sma
            start = trunk[-1] + self.rng.normal(0, 4, 3)
            end = start + np.array([u(-70, 40), u(-10, 30), -u(30, 90)])
            mid = 0.5 * (start + end) + self.rng.normal(0, 6, 3)
            tissue = "portal_vein" if venous else "artery"
            self.vessel([start, mid, end], [u(1.8, 2.6), 1.5, 1.1], tissue, "other_vessel", step=6.0, in_cavity=True)

    def lymph_nodes(self) -> None:
        """A few small nodes: para-aortic, aortocaval, along the iliac arteries and in the mesentery."""
        self.group = "solid"
        u, ao, r_ao, p = self.u, self.aorta_xy, self.r_aorta, self.pelvis
        sites = [
            lambda: [ao[0] - r_ao - u(4, 8), ao[1] + u(-4, 4), u(p.bifurcation_z, -20)],  # left para-aortic
            lambda: [0.5 * (ao[0] + self.ivc_xy[0]), ao[1] + u(-2, 6), u(p.bifurcation_z, -30)],  # aortocaval
            lambda: [u(30, 60) * (1 if self.rng.random() < 0.5 else -1), self.yv + u(10, 40),
                     u(p.hip[2] + 20, p.sacrum_top_z)],  # iliac
            lambda: list(self.sma[-2] + [u(-40, 20), u(0, 25), u(-30, 10)]),  # mesenteric
        ]
        for _ in range(int(self.rng.integers(3, 9))):
            centre = np.array(sites[int(self.rng.integers(len(sites)))](), float)
            axes = np.array([u(3, 6), u(3, 6), u(4, 9)])
            self.add(Ellipsoid(centre, axes), Part("lymph_node", "lymph_node"))

    def patient(self) -> Patient:
        """The patient, with the body box over all heights and the modelled extent and coverage of the anatomy."""
        patient = super().patient()
        skin = self.skin_loft
        lo = np.array([-skin.a.max() - 4, -skin.b_posterior.max() - 4, -np.inf])
        hi = np.array([skin.a.max() + 4, skin.b_anterior.max() + 4, np.inf])
        z_limits = (float(self.pelvis.lower_limit_z), float(self.z_top))
        coverage = (COVERAGE_MM[0], min(COVERAGE_MM[1], z_limits[1] - z_limits[0]))
        dome = self.diaphragm.apex_right_z + 5.0
        required = (dome, dome)  # abdominal scans start above the liver dome
        return dataclasses.replace(
            patient, body_bounds=(lo, hi), z_limits_mm=z_limits, z_coverage_mm=coverage, z_required_mm=required
        )
