"""
Data preparation: write a validated datalist JSON that ``configs/train.yaml`` reads through its ``datalist`` key.

    python -m scripts.prepare msd --root /data/Task07_Pancreas --output /data/Task07_Pancreas/datalist.json
    python -m scripts.prepare nih --root /data/NIH --labels /data/TCIA_pancreas_labels --output /data/nih.json
    python -m scripts.prepare folder --images "/data/ct/*.nii.gz" --labels "/data/seg/*.nii.gz" --output /data/dl.json

Every command checks every case with ``scripts.data.checks`` before writing and fails with the full list
of bad cases (or leaves them out with ``--skip_invalid``); see ``docs/data_preparation.md``.
"""

from .datalist import Case, DatalistOptions, assign_folds, prepare_datalist, split_cases
from .folder import folder, folder_cases
from .msd import msd, msd_cases
from .nih import nih, nih_cases

__all__ = [
    "Case",
    "assign_folds",
    "folder",
    "folder_cases",
    "msd",
    "msd_cases",
    "nih",
    "nih_cases",
    "prepare_datalist",
    "split_cases",
    "DatalistOptions",
]
