"""Procedural abdominal CT phantom with pancreas labels and acquisition domains for domain-generalisation tests.

    from scripts.phantom import DOMAINS, generate_case, write_dataset, ensure_dataset

``generate_case(domain, seed)`` returns one ``PhantomCase`` (HU image, pancreas label, NIfTI affine);
``write_dataset`` / ``ensure_dataset`` write a Medical Segmentation Decathlon style folder;
``python -m scripts.phantom --out data/phantom --domain source --cases 16 --seed 0`` does it from the shell.
``anatomy="whole_abdomen"`` (``ANATOMIES``) draws lung bases to pelvis instead of the default upper abdomen;
``organ_maps=True`` writes multi-organ maps (``ORGAN_LABELS``) next to the pancreas labels.
"""

from .anatomies import ANATOMIES, DEFAULT_ANATOMY
from .anatomy import ORGAN_LABELS
from .case import PhantomCase, generate_case
from .dataset import case_seed, ensure_dataset, ensure_phantom_input, write_dataset
from .domains import DOMAINS, AcquisitionDomain, get_domain

__all__ = [
    "ANATOMIES",
    "DEFAULT_ANATOMY",
    "DOMAINS",
    "ORGAN_LABELS",
    "AcquisitionDomain",
    "PhantomCase",
    "case_seed",
    "ensure_dataset",
    "ensure_phantom_input",
    "generate_case",
    "get_domain",
    "write_dataset",
]
