"""
Label-efficiency benchmark of PolyCL's slice-level contrastive pretraining on the embedded phantom (arXiv 2505.19208).

    python -m scripts.benchmarks.polycl_label_efficiency                          # CPU profile, 3 seeds, 2 jobs
    python -m scripts.benchmarks.polycl_label_efficiency --profile gpu --jobs 1   # full size, on a GPU

For every seed, the 2D network is pretrained on the ``source`` pool's axial slices by PolyCL-S, -O and -M
(``configs/pretrain_polycl.yaml``, ``strategy`` S, O, M: S reads no labels, O and M the per-slice organ presence
only); then it is fine-tuned (``configs/train.yaml`` + ``configs/baseline.yaml`` + ``configs/finetune_polycl.yaml``:
Dice loss on single labelled slices, the same budget of iterations for every initialisation) with 1, 2 and 5
labelled ``source`` scans from (a) random initialisation and (b-d) the three pretrainings of the same seed, and
scored slice by slice on held-out ``source`` cases and every target domain (the evaluate config with the 2D
network inside ``scripts.networks.SliceWiseNetwork``, against the label files). Runs are processes of their own
(``jobs`` at a time); an interrupted benchmark continues (unfinished runs resume, finished ones are kept). Writes
``docs/polycl_label_efficiency.md`` (tables, paired differences with bootstrap intervals, cost per iteration,
convergence) and ``docs/polycl_label_efficiency.png``.
"""

from __future__ import annotations

import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from scripts.benchmarks.arguments import labelled_counts
from scripts.benchmarks.label_efficiency import _labelled_datalist, finetune_and_score, write_report
from scripts.benchmarks.profiles import profile_overrides
from scripts.benchmarks.reporting import POOL_SEED, TEST_SEED, benchmark_data
from scripts.benchmarks.runs import epoch_seconds, train_once
from scripts.bundle import run_command_line
from scripts.phantom import DOMAINS

__all__ = ["FINETUNE_CONFIGS", "INITIALISATIONS", "SLICE_SIZES", "main", "score_overrides"]

# initialisation -> PolyCL strategy (None: random initialisation)
INITIALISATIONS: dict[str, str | None] = {"random": None, "polycl_s": "S", "polycl_o": "O", "polycl_m": "M"}
# (treated, control) pairs reported as paired differences
COMPARISONS = (
    ("polycl_s", "random"),
    ("polycl_o", "random"),
    ("polycl_m", "random"),
    ("polycl_m", "polycl_s"),
    ("polycl_o", "polycl_s"),
)
FINETUNE_CONFIGS = ("train.yaml", "baseline.yaml", "finetune_polycl.yaml")
# the (X, Y) axial slice size per profile: the phantom's whole cropped slice at the profile's grid
SLICE_SIZES = {"cpu": [96, 80], "cpu_3mm": [128, 112], "gpu": [192, 160]}
# keys of a size profile that the 2D runs take (its 3D roi_size and DualSSL sizes are not used)
PROFILE_KEYS = ("pixdim", "network_def#channels", "num_workers", "hu_window")


def score_overrides(slice_size: list[int]) -> dict:
    """The evaluator's overrides for the 2D network: one-slice windows and the network applied slice by slice."""
    return {
        "network_def#spatial_dims": 2,
        "roi_size": list(slice_size) + [1],
        "sw_batch_size": 16,
        "inference_network": "$scripts.networks.SliceWiseNetwork(scripts.networks.inference_backend(@network, "
        "@inference_backend, [1, 1] + @roi_size[:2]))",
    }


def pretrain(strategy: str, seed: int, pool: Path, run_dir: Path, settings: dict, threads: int) -> dict:
    """PolyCL pretraining once per (strategy, seed); its checkpoint, epoch seconds and iterations."""
    train_once(["pretrain_polycl.yaml"], {"dataset_dir": str(pool), "seed": seed, "strategy": strategy, **settings},
               run_dir, threads)
    log = run_dir / "train.log"
    text = log.read_text() if log.is_file() else ""
    iterations = max((int(n) for n in re.findall(r"Iter: \d+/(\d+)", text)), default=0)
    return {
        "checkpoint": str(run_dir / "models" / "checkpoint_final.pt"),
        "epoch_seconds": epoch_seconds(log),
        "iterations": iterations * settings["max_epochs"],
    }


def main(
    profile: str = "cpu",
    seeds: int = 3,
    labelled: str | int | list[int] = "1,2,5",
    jobs: int = 2,
    work_dir: str = "runs/polycl_label_efficiency",
    docs_dir: str = "docs",
    pool_cases: int = 12,
    val_cases: int = 4,
    test_cases: int = 4,
    finetune_iterations: int = 600,
    pretrain_epochs: int = 10,
    first_seed: int = 0,
) -> None:
    """
    Run the benchmark (see the module docs). ``labelled``: comma-separated scan counts (at most ``pool_cases``);
    ``finetune_iterations``: the budget of every fine-tuning run (one scan, 8 slices, per iteration);
    ``pretrain_epochs``: epochs over every valid anchor slice of the pool (16 triplets per iteration).

    Raises:
        ValueError: a labelled count outside [1, pool_cases], before anything runs.
        KeyError: an unknown profile.
    """
    counts = labelled_counts(labelled, pool_cases)
    if profile not in SLICE_SIZES:
        raise KeyError(f"unknown profile {profile!r}; known: {', '.join(SLICE_SIZES)}")
    sizes = {k: v for k, v in profile_overrides(profile).items() if k in PROFILE_KEYS}
    sizes["slice_size"] = SLICE_SIZES[profile]
    work = Path(work_dir).resolve()
    pool, validation, tests = benchmark_data(work, "source_pool", pool_cases, val_cases, test_cases)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    evaluation = score_overrides(SLICE_SIZES[profile])
    start = time.perf_counter()
    strategies = {name: s for name, s in INITIALISATIONS.items() if s}
    pretraining: dict = {name: {} for name in strategies}
    with ThreadPoolExecutor(max_workers=jobs) as executor:
        futures = {
            executor.submit(
                pretrain, strategy, seed, pool, work / "pretrain" / profile / f"{name}_seed{seed}",
                {**sizes, "max_epochs": pretrain_epochs}, threads,
            ): (name, seed)
            for seed in range(first_seed, first_seed + seeds)
            for name, strategy in strategies.items()
        }
        for future, (name, seed) in futures.items():
            pretraining[name][str(seed)] = future.result()
            print(f"pretrained {name} seed {seed}", flush=True)
        tasks = []
        for seed in range(first_seed, first_seed + seeds):
            for n in counts:
                epochs = max(1, round(finetune_iterations / n))
                settings = {**sizes, "max_epochs": epochs, "val_interval": max(1, epochs // 8)}
                datalist = _labelled_datalist(pool, n, work / "data" / f"labelled_{n}.json")
                for name in INITIALISATIONS:
                    checkpoint = pretraining[name][str(seed)]["checkpoint"] if name in pretraining else None
                    run_dir = work / "finetune" / profile / f"{n}cases_{name}_seed{seed}"
                    arguments = (checkpoint, seed, datalist, validation, tests, run_dir, profile, settings, threads,
                                 FINETUNE_CONFIGS, evaluation)
                    tasks.append(((n, name, seed, epochs * n), arguments))
        futures = {executor.submit(finetune_and_score, *arguments): key for key, arguments in tasks}
        results: dict = {}
        for future, (n, name, seed, iterations) in futures.items():
            scores = {**future.result(), "iterations": iterations}
            results.setdefault((n, name), {})[str(seed)] = scores
            print(f"{n} scans, {name}, seed {seed}: Dice " + ", ".join(
                f"{d} {np.nanmean(scores[d]['dice']):.3f}" for d in DOMAINS), flush=True)
    wall = time.perf_counter() - start
    command = (f"python -m scripts.benchmarks.polycl_label_efficiency --profile {profile} --seeds {seeds} "
               f"--jobs {jobs}")
    header = [
        "# Label-efficiency benchmark: PolyCL slice-level contrastive pretraining (phantom)",
        "",
        f"Command: `{command}`; this invocation took {wall / 60:.1f} min ({jobs} runs in parallel, {threads} torch "
        "thread(s) each; finished runs are reused).",
        "",
        f"Profile `{profile}`: {json.dumps(sizes)}. A 2D `ResidualUNet` on axial slices. Pretraining on the axial "
        f"slices of the {pool_cases} `source` pool scans (seed {POOL_SEED}), {pretrain_epochs} epochs over every "
        "valid anchor (configs/pretrain_polycl.yaml: 16 triplets per iteration, temperature 0.1, 90 % of each "
        "scan's slices around the organ; S without labels, O and M with the per-slice organ presence only); "
        f"fine-tuning (Dice loss, configs/finetune_polycl.yaml) on the first {', '.join(map(str, counts))} pool scans "
        f"with their labels (8 slices of one scan per iteration), about {finetune_iterations} iterations for every "
        f"count and initialisation, validated on {val_cases} other `source` scans; tested slice by slice on "
        f"{test_cases} scans per domain (seed {TEST_SEED}) by the evaluate config against the label files. Seeds "
        f"{first_seed} to {first_seed + seeds - 1}: seed s pretrains the three strategies and fine-tunes all four "
        "initialisations.",
    ]
    write_report(results, pretraining, counts, list(DOMAINS), Path(docs_dir), header, tuple(INITIALISATIONS),
                 COMPARISONS, name="polycl_label_efficiency")
    print((Path(docs_dir) / "polycl_label_efficiency.md").read_text())


if __name__ == "__main__":
    run_command_line(main)
