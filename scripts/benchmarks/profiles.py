"""
What the benchmarks compare: the training variants (config files over configs/train.yaml) and the size
profiles (config overrides) they are compared at.
"""

from __future__ import annotations

__all__ = ["EVALUATION_KEYS", "PAIRED_BASELINE", "PROFILES", "VARIANTS", "profile_overrides"]

# variant -> config files added to configs/train.yaml, in order
VARIANTS: dict[str, list[str]] = {
    "baseline": ["baseline.yaml"],
    "baseline_bigaug": ["baseline.yaml", "bigaug.yaml"],
    "baseline_gin": ["baseline.yaml", "gin.yaml"],
    "dualssl": [],
    "dualssl_bigaug": ["bigaug.yaml", "dualssl_stages.yaml"],
    "dualssl_gin": ["gin.yaml", "dualssl_stages.yaml"],
    "baseline_gin1": ["baseline.yaml", "gin.yaml", "gin_pointwise.yaml"],
    "dualssl_gin1": ["gin.yaml", "gin_pointwise.yaml", "dualssl_stages.yaml"],
    "dualssl_clean": ["segment_clean.yaml"],
    "dualssl_bigaug_decoder": ["bigaug.yaml"],
    "dualssl_clean_bigaug": ["bigaug.yaml", "segment_clean.yaml", "dualssl_stages.yaml"],
    "contrastive_only": ["contrastive_only.yaml"],
    "restoration_only": ["restoration_only.yaml"],
}

# the plain baseline each variant is paired with (same seed: same split, initialisation and patch stream)
PAIRED_BASELINE: dict[str, str] = {
    "baseline_bigaug": "baseline",
    "baseline_gin": "baseline",
    "dualssl": "baseline",
    "dualssl_bigaug": "baseline_bigaug",
    "dualssl_gin": "baseline_gin",
    "baseline_gin1": "baseline",
    "dualssl_gin1": "baseline_gin1",
    "dualssl_clean": "baseline",
    "dualssl_bigaug_decoder": "baseline_bigaug",
    "dualssl_clean_bigaug": "baseline_bigaug",
    "contrastive_only": "baseline",
    "restoration_only": "baseline",
}

# size profiles: config overrides every run and its evaluation get. Voxel-based SSL sizes are scaled with the
# grid so that they keep their size in mm; ring and band widths are in mm already.
PROFILES: dict[str, dict] = {
    # converges on the 2-core CPU: 4 mm grid, narrow network, 55 epochs of 12 cases = 660 iterations (batch 2)
    "cpu": {
        "pixdim": [4.0, 4.0, 4.0],
        "roi_size": [48, 32, 32],
        "network_def#channels": [8, 16, 32, 64, 128],
        "corruption_block_size": 4,
        "corruption_shuffle_radius": 1,
        "max_epochs": 55,
        "val_interval": 5,
        "num_workers": 0,
    },
    # the shipped model's size (2 mm, 64 x 64 x 48, full width), for a GPU
    "gpu": {
        "pixdim": [2.0, 2.0, 2.0],
        "roi_size": [64, 64, 48],
        "max_epochs": 200,
        "val_interval": 10,
        "num_workers": 4,
    },
}
# the CPU profile on a 3 mm grid, to confirm its conclusion at a finer grid (one seed)
PROFILES["cpu_3mm"] = {
    **PROFILES["cpu"],
    "pixdim": [3.0, 3.0, 3.0],
    "roi_size": [64, 48, 48],
    "corruption_block_size": 5,
}

# keys of a profile that change the evaluation (preprocessing grid, network shape, inferer window)
EVALUATION_KEYS = ("pixdim", "roi_size", "network_def#channels", "hu_window")


def profile_overrides(profile: str, evaluation: bool = False) -> dict:
    """
    The overrides of ``profile``; with ``evaluation``, only those the evaluator must get too.

    Raises:
        KeyError: an unknown profile, naming the known ones.
    """
    if profile not in PROFILES:
        raise KeyError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    overrides = dict(PROFILES[profile])
    return {k: v for k, v in overrides.items() if k in EVALUATION_KEYS} if evaluation else overrides
