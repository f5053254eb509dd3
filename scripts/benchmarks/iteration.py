"""
Time one DualSSL training iteration against a plain supervised one on the same patches.

    python -m scripts.benchmarks.iteration --iterations 10 --batch 2
    python -m scripts.benchmarks.iteration --entropy_top_percent 0   # any config key can be overridden
    python -m scripts.benchmarks.iteration --recipe segment_clean.yaml   # config files over train.yaml for DualSSL

Both trainers are built from ``configs/train.yaml`` (the baseline with ``configs/baseline.yaml`` on top), share
the network initialisation and run on the same batch of phantom patches with structure maps. The script
prints seconds per iteration of each, their ratio, and (on CUDA) peak memory of each and its ratio.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import nibabel as nib
import torch
from monai.bundle import ConfigParser
from monai.data import list_data_collate

from scripts.bundle import bundle_parser, run_command_line
from scripts.phantom import generate_case


def _parser(*overrides: str, **values) -> ConfigParser:
    # no handlers: timing only, nothing is validated, logged or saved
    values = {"ssl_start_iteration": 1, "ssl_rampup_iterations": 0, "train#handlers": [], **values}
    return bundle_parser(("train.yaml", *overrides), values)


def _batch(parser: ConfigParser, batch_size: int, seed: int) -> dict:
    """Patches of one phantom case through the training transforms (crop around the pancreas), collated."""
    case = generate_case("source", seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        image, label = Path(tmp) / "image.nii.gz", Path(tmp) / "label.nii.gz"
        nib.save(nib.Nifti1Image(case.image, case.affine), image)
        nib.save(nib.Nifti1Image(case.label, case.affine), label)
        transforms = parser.get_parsed_content("train#preprocessing")
        transforms.set_random_state(seed)
        samples = []
        while len(samples) < batch_size:
            samples += transforms({"image": str(image), "label": str(label)})
    return list_data_collate(samples[:batch_size])


def _trainer(parser: ConfigParser, state: dict):
    trainer = parser.get_parsed_content("train#trainer", instantiate=True)
    trainer.network.load_state_dict(state)
    return trainer


def _step(trainer, batch: dict, iteration: int) -> float:
    """Seconds of one training iteration (device-synchronised)."""
    device = trainer.state.device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    trainer.state.iteration = iteration
    trainer._iteration(trainer, batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _peak_mib(trainer, batch: dict) -> float:
    device = trainer.state.device
    if device.type != "cuda":
        return float("nan")
    torch.cuda.reset_peak_memory_stats(device)
    _step(trainer, batch, 10**6)
    return torch.cuda.max_memory_allocated(device) / 2**20


def measure_iterations(
    iterations: int = 10,
    warmup: int = 2,
    batch: int = 2,
    seed: int = 0,
    recipe: str | tuple[str, ...] = (),
    **overrides,
) -> dict:
    """
    Median seconds per iteration (and CUDA peak MiB) of baseline and DualSSL, interleaved, and their ratios.

    ``recipe``: config files over configs/train.yaml for the DualSSL trainer (comma-separated), e.g.
    ``segment_clean.yaml``; extra keywords override config keys of both trainers, e.g. ``entropy_top_percent=0``.
    """
    recipe = tuple(recipe.split(",")) if isinstance(recipe, str) else tuple(recipe)
    common = {
        "train#trainer#train_data_loader": [],
        "train#trainer#train_handlers": [],
        "train#trainer#postprocessing": None,
        "train#trainer#key_train_metric": None,
        "train#trainer#decollate": False,
        **overrides,
    }
    dual = _parser(*recipe, **common)
    base = _parser("baseline.yaml", **common)
    data = _batch(dual, batch, seed)
    state = dual.get_parsed_content("network").state_dict()
    trainers = {"baseline": _trainer(base, state), "dualssl": _trainer(dual, state)}
    seconds = {name: [] for name in trainers}
    for index in range(warmup + iterations):  # interleaved, so both see the same machine load
        for name, trainer in trainers.items():
            elapsed = _step(trainer, data, index + 1)
            if index >= warmup:
                seconds[name].append(elapsed)
    base_time, dual_time = (sorted(seconds[name])[len(seconds[name]) // 2] for name in trainers)
    base_peak, dual_peak = (_peak_mib(trainer, data) for trainer in trainers.values())
    result = {
        "baseline_s_per_iteration": base_time,
        "dualssl_s_per_iteration": dual_time,
        "time_ratio": dual_time / base_time,
        "baseline_peak_mib": base_peak,
        "dualssl_peak_mib": dual_peak,
        "memory_ratio": dual_peak / base_peak if base_peak == base_peak else float("nan"),
        "patch_batch": list(data["image"].shape),
    }
    return result


def main(iterations: int = 10, warmup: int = 2, batch: int = 2, seed: int = 0, recipe: str = "", **overrides) -> None:
    """
    Print the median seconds per iteration (and CUDA peak MiB) of baseline and DualSSL, and their ratios.

    Extra flags override config keys of both trainers, e.g. ``--entropy_top_percent 0 --roi_size [96,96,64]``.
    """
    result = measure_iterations(iterations, warmup, batch, seed, tuple(filter(None, recipe.split(","))), **overrides)
    shape = result.pop("patch_batch")
    roi = tuple(shape[2:])
    print(f"patch batch {tuple(shape[:2])} x {roi}, {iterations} timed iterations after {warmup} warm-up")
    for key, value in result.items():
        print(f"{key:>26}: {value:.4f}")


if __name__ == "__main__":
    run_command_line(main)
