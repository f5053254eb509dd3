"""The whole colon of the whole-abdomen phantom: caecum to rectum, segment by segment with its own content.

The upper-abdomen colon frame (ascending colon, hepatic flexure, transverse colon, splenic flexure, descending
colon) is extended by the caecum in the right iliac fossa, the descending colon in the left iliac fossa, the
sigmoid loop and the rectum along the front of the sacrum. One smooth centreline runs through all of it and is
cut into segments, each filled with one kind of content (``COLON_CONTENTS``): formed stool with mottled gas
pockets inside soft-tissue-density faeces (what a model must not call pancreas), liquid stool with an air-fluid
level, gas with dependent residue, or a collapsed segment with a thick wall.
"""

from __future__ import annotations

import numpy as np

from .anatomy import Part, UpperAbdomenBuilder
from .pelvis import PelvisLandmarks
from .shapes import HalfSpace, Intersection, NoiseLevel, Tube, Union

COLON_CONTENTS = ("stool", "liquid", "gas", "collapsed")
"""Kinds of segment content."""

SEGMENT_CONTENT_P: dict[str, tuple[float, float, float, float]] = {
    # probabilities of COLON_CONTENTS per segment
    "caecum_ascending": (0.6, 0.25, 0.1, 0.05),
    "descending": (0.45, 0.0, 0.2, 0.35),
    "sigmoid": (0.5, 0.0, 0.2, 0.3),
    "rectum": (0.5, 0.05, 0.2, 0.25),
}


def _level(y: float, anterior: bool) -> HalfSpace:
    """Half-space anterior (``anterior``) or posterior of the coronal plane at ``y`` (supine: gas floats up)."""
    return HalfSpace(np.array([0.0, y, 0.0]), np.array([0.0, -1.0 if anterior else 1.0, 0.0]))


def content_parts(b: UpperAbdomenBuilder, kind: str, top_y: float, radius: float) -> tuple[Part, ...]:
    """Wall and content layers of a segment of ``kind`` whose lumen reaches up to ``top_y`` (mm)."""
    u = b.u
    wall = u(3.0, 5.0) if kind == "collapsed" else u(1.8, 3.0)
    parts = [Part("colon_wall", "colon")]
    if kind in ("stool", "collapsed"):
        fine = NoiseLevel(b.noise(u(2.5, 4.0)), u(0.8, 1.4), 3.0)  # small bubbles
        coarse = NoiseLevel(b.noise(7.0), u(1.5, 2.2), 3.0)  # a few larger pockets
        bubbles = Union((fine, coarse))
        gas = Union((bubbles, _level(top_y - u(0.1, 0.5) * radius, True))) if b.rng.random() < 0.4 else bubbles
        parts += [
            Part("feces", "colon", inset_mm=wall, texture=b.noise(3.0)),
            Part("air", "colon", inset_mm=wall, within=gas),
        ]
    elif kind == "liquid":
        parts += [
            Part("feces", "colon", inset_mm=wall, texture=b.noise(6.0)),
            Part("air", "colon", inset_mm=wall, within=_level(top_y - u(0.2, 0.8) * radius, True)),
        ]
    else:  # gas, with stool or fluid lying posteriorly
        residue = top_y - radius * u(1.5, 1.95)
        parts += [
            Part("air", "colon", inset_mm=wall),
            Part("feces", "colon", inset_mm=wall, within=_level(residue, False), texture=b.noise(3.0)),
        ]
    return tuple(parts)


def whole_colon(
    b: UpperAbdomenBuilder, frame: np.ndarray, radii: np.ndarray, transverse: tuple[Part, ...], p: PelvisLandmarks
) -> None:
    """Paint the colon (group ``bowel``, clipped to ``b.cavity_shape``).

    Args:
        b: builder; its current stream draws the extension and the contents.
        frame: (8, 3) upper-abdomen control points (``colon_frame``), ascending -> descending; ``radii`` (8,).
        transverse: layers of the hepatic flexure -> splenic flexure segment (the upper-abdomen content).
        p: pelvic landmarks (iliac crest, sacrum, symphysis) the lower colon follows.
    """
    b.group = "bowel"
    u, a, d = b.u, b.cavity.a, b.depth
    front = p.sacrum_front(b.yv)
    r_rectum = u(16, 26)

    def on_sacrum(z: float) -> list[float]:  # rectum centre in front of the sacral curve at height z
        y = float(np.interp(-z, -front[:, 2], front[:, 1]))
        return [u(-5, 5), y + r_rectum + u(2, 6), z]

    caecum = [[0.62 * a, b.y_o + 0.2 * d, min(frame[0, 2] - u(30, 55), p.crest_z - u(10, 30))]]
    lower = [
        [-0.72 * a, b.y_o + 0.05 * d, p.crest_z - u(10, 30)],  # descending colon in the left iliac fossa
        [-0.5 * a, b.y_o + 0.45 * d, p.crest_z - u(40, 60)],  # sigmoid loop
        [u(-0.2, 0.15) * a, b.y_o + u(0.4, 0.6) * d, p.crest_z - u(20, 70)],
        [u(0.05, 0.25) * a, b.y_o + 0.2 * d, p.sacrum_top_z - u(40, 60)],
        on_sacrum(p.sacrum_top_z - 75.0),  # rectosigmoid junction
        on_sacrum(p.sacrum_top_z - 105.0),
        on_sacrum(p.symphysis[1] - 20.0),
        on_sacrum(p.lower_limit_z - 40.0),
    ]
    ctrl = np.vstack([b.jitter(caecum, 5.0), frame, b.jitter(lower, 4.0)])
    ctrl_r = np.r_[u(26, 34), radii, u(14, 20), b.rng.uniform(13, 20, 3), np.full(4, r_rectum)]
    # segments by control point index (caecum = 0, frame = 1..8, lower = 9..16)
    bounds = {
        "caecum_ascending": (0, 3),
        "transverse": (3, 6),
        "descending": (6, 10),
        "sigmoid": (10, 13),
        "rectum": (13, len(ctrl) - 1),
    }
    kinds = {name: str(b.rng.choice(COLON_CONTENTS, p=SEGMENT_CONTENT_P[name])) for name in SEGMENT_CONTENT_P}
    kinds["transverse"] = "stool"
    for name, (i0, i1) in bounds.items():
        if kinds[name] == "collapsed":
            ctrl_r[i0 + 1 : i1] *= u(0.4, 0.55)  # keep the joints: the neighbours taper into it
    tube = Tube.through(ctrl, ctrl_r, step=8.0)
    chord = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(ctrl, axis=0), axis=1))]
    last = len(tube.points) - 1  # Tube.through samples the spline evenly in its chord-length parameter
    for name, (i0, i1) in bounds.items():
        j0, j1 = (int(round(chord[i] / chord[-1] * last)) for i in (i0, i1))
        points, seg_r = tube.points[j0 : j1 + 1], tube.radii[j0 : j1 + 1]
        if len(points) < 2:
            continue
        segment = Tube(points, seg_r, tube.pad)
        if name == "transverse":
            parts = transverse
        else:
            parts = content_parts(b, kinds[name], float(np.max(points[:, 1] + seg_r)), float(np.median(seg_r)))
        b.add(Intersection((segment, b.cavity_shape)), *parts)
