"""Procedural abdominal CT phantom with pancreas labels and acquisition domains for domain-generalisation tests.

    from scripts.phantom import DOMAINS, generate_case, write_dataset, ensure_dataset

``generate_case(domain, seed)`` returns one ``PhantomCase`` (HU image, pancreas label, NIfTI affine);
``write_dataset`` / ``ensure_dataset`` write a Medical Segmentation Decathlon style folder;
``python -m scripts.phantom --out data/phantom --domain source --cases 16 --seed 0`` does it from the shell.
"""

from .anatomy import ORGAN_LABELS
from .case import PhantomCase, generate_case
from .dataset import case_seed, ensure_dataset, ensure_phantom_input, write_dataset
from .domains import DOMAINS, AcquisitionDomain, get_domain

__all__ = [
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
