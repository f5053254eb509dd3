"""One phantom case: a random patient (from the seed) scanned with an acquisition domain."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from .acquisition import scan
from .anatomies import DEFAULT_ANATOMY, check_anatomy, sample_patient
from .domains import AcquisitionDomain, get_domain


@dataclass(frozen=True)
class PhantomCase:
    """A generated CT volume.

    image: float32 (X, Y, Z) Hounsfield units (integer valued, in [-1024, 3071]), array axes in the
    domain's storage orientation; label: uint8 (X, Y, Z), 0 background / 1 pancreas, or the
    ``ORGAN_LABELS`` map when generated with ``organ_labels=True``; affine: 4x4 float64 NIfTI affine
    (voxel index -> world RAS+ mm); domain: name of the acquisition domain; seed: the patient seed;
    anatomy: name of the patient anatomy (``scripts.phantom.anatomies.ANATOMIES``).
    """

    image: np.ndarray
    label: np.ndarray
    affine: np.ndarray
    domain: str
    seed: int
    anatomy: str = DEFAULT_ANATOMY


def generate_case(
    domain: str | AcquisitionDomain = "source",
    seed: int = 0,
    organ_labels: bool = False,
    anatomy: str = DEFAULT_ANATOMY,
) -> PhantomCase:
    """Generate one case, fully determined by ``(domain, seed, anatomy)``.

    The patient's anatomy depends on ``seed`` and ``anatomy`` only, so the same seed scanned with two domains is
    the same patient; the acquisition (coverage, contrast timing, noise) depends on the seed and the domain.
    ``anatomy="whole_abdomen"`` draws lung bases to pelvis and scans it with its own 300-500 mm coverage.

    Raises:
        ValueError: for an unknown domain name or anatomy (naming the allowed values).
    """
    dom = get_domain(domain)
    check_anatomy(anatomy)
    patient = sample_patient(np.random.default_rng([seed, 0]), anatomy)
    result = scan(patient, dom, np.random.default_rng([seed, 1, zlib.crc32(dom.name.encode())]), organ_labels)
    return PhantomCase(result.image, result.label, result.affine, dom.name, seed, anatomy)
