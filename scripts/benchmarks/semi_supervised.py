"""
Semi-supervised benchmark of two-subnetwork training (Karimijafarbigloo et al., arXiv 2311.12617) on the phantom.

    python -m scripts.benchmarks.semi_supervised                          # CPU profile, 3 seeds, 2 parallel jobs
    python -m scripts.benchmarks.semi_supervised --profile gpu --jobs 1   # V-Net + ResNet-34 U-Net, full size, a GPU

With 20 % and 10 % of a pool of ``source`` cases labelled (the rest unlabelled), trains the pair of subnetworks
(``configs/train.yaml`` + ``configs/semi_supervised.yaml``) as (a) ``supervised``: CE + Dice on the labelled cases
only, (b) ``method``: every term, the contrastive one with its gradient, (c) ``released``: the method with the
contrastive term under ``no_grad`` as in the public code; same budget and seeds; scores the averaged pair on
held-out ``source`` cases and every target domain. Runs are processes of their own (``jobs`` at a time); an
interrupted benchmark continues. Writes ``docs/semi_supervised.md`` and ``docs/semi_supervised.png``.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from scripts.benchmarks.arguments import comma_separated
from scripts.benchmarks.profiles import profile_overrides
from scripts.benchmarks.reporting import (
    POOL_SEED,
    TEST_SEED,
    benchmark_data,
    case_matrix,
    convergence_cells,
    interval_text,
)
from scripts.benchmarks.runs import epoch_seconds, score_once, train_once
from scripts.bundle import run_command_line
from scripts.evaluation.statistics import paired_comparison
from scripts.phantom import DOMAINS

__all__ = ["PAIR_PROFILES", "VARIANTS", "main"]

# variant -> overrides of configs/semi_supervised.yaml
VARIANTS: dict[str, dict] = {
    "supervised": {"lambda_verification": 0.0, "lambda_pseudo": 0.0, "lambda_contrastive": 0.0},
    "method": {},
    "released": {"contrastive_gradient": False},
}
COMPARISONS = (("method", "supervised"), ("released", "supervised"), ("method", "released"))
# the subnetworks per size profile: the method's V-Net + ResNet-34 U-Net at full size (configs/semi_supervised.yaml);
# on the CPU two narrow networks of the same two kinds (a residual U-Net, a ResNet-style encoder with a light
# decoder: MONAI's SegResNet), as the V-Net alone (45.6 M parameters) takes 2.6 s for two 48 x 32 x 32 patches
PAIR_PROFILES: dict[str, dict] = {
    "cpu": {
        "first_network_def": {
            "_target_": "scripts.networks.ResidualUNet",
            "channels": [8, 16, 32, 64, 128],
            "num_res_units": 1,
        },
        "second_network_def": {
            "_target_": "SegResNet",
            "spatial_dims": 3,
            "init_filters": 8,
            "in_channels": 1,
            "out_channels": 2,
            "blocks_down": [1, 2, 2, 4],
            "blocks_up": [1, 1, 1],
        },
        "feature_modules": ["segmentation_head", "conv_final"],
    },
    "gpu": {"roi_size": [96, 96, 64]},
}
# profile keys that do not apply to the pair (its subnetworks are set by PAIR_PROFILES)
PAIR_EXCLUDED = ("network_def#channels",)
# set per run from the iteration budget
BUDGET_KEYS = ("max_epochs", "val_interval")


def _pair_network_def(pair: dict) -> dict:
    """The evaluator's ``network_def``: the averaged pair of the profile's subnetworks (semi_supervised_inference)."""
    first = pair.get("first_network_def", {"_target_": "VNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2,
                                           "dropout_prob_down": 0.0, "dropout_prob_up": [0.0, 0.0]})
    second = pair.get("second_network_def", {"_target_": "FlexibleUNet", "in_channels": 1, "out_channels": 2,
                                             "backbone": "resnet34", "spatial_dims": 3, "pretrained": False,
                                             "decoder_channels": [128, 64, 32, 16, 8]})
    return {"_target_": "scripts.networks.SoftmaxAveragedPair", "first": first, "second": second}


def train_and_score(
    variant: str, seed: int, datalist: Path, validation: Path, tests: dict[str, str], run_dir: Path, profile: str,
    settings: dict, evaluation: dict, threads: int,
) -> dict:
    """Train one variant with one seed, then score the averaged pair; returns the scores."""
    run_settings = {"datalist_file": str(datalist), "val_datalist_file": str(validation / "dataset.json"),
                    "seed": seed, "split_seed": seed, **settings, **VARIANTS[variant]}
    seconds = train_once(["train.yaml", "semi_supervised.yaml"], run_settings, run_dir, threads)
    scores = score_once(run_dir, profile, tests, threads, seconds, evaluation)
    scores["epoch_seconds"] = epoch_seconds(run_dir / "train.log")
    return scores


def write_report(results: dict, fractions: list[float], docs_dir: Path, header: list[str]) -> dict:
    """``semi_supervised.md`` (tables, paired differences, cost, convergence) and ``semi_supervised.png``."""
    domains = list(DOMAINS)
    targets = [d for d in domains if d != "source"]
    groups = {"source": ["source"], "unseen_mean": targets, **{d: [d] for d in targets}}
    summary: dict = {"dice": {}, "paired": {}}
    lines = header + ["", "## Dice per domain", "", "Mean +- std over seeds of the per-seed case mean of the averaged "
                      "pair; `unseen_mean`: the three target domains together.", "",
                      "| labelled | variant | " + " | ".join(groups) + " |", "|---" * (2 + len(groups)) + "|"]
    for fraction in fractions:
        for variant in VARIANTS:
            if (fraction, variant) not in results:
                continue
            row = {}
            for name, selected in groups.items():
                per_seed = np.nanmean(case_matrix(results[(fraction, variant)], selected), axis=1)
                row[name] = (float(per_seed.mean()), float(per_seed.std(ddof=1)) if len(per_seed) > 1 else float("nan"))
            summary["dice"][f"{fraction}/{variant}"] = row
            cells = [f"{row[g][0]:.3f} +- {row[g][1]:.3f}" for g in groups]
            lines.append(f"| {fraction:.0%} | {variant} | " + " | ".join(cells) + " |")
    lines += ["", "## Paired differences (same seed, labelled cases and test cases)", "",
              "Dice points x 100: mean [95 % two-level bootstrap interval over seeds and cases]; p: two-sided Wilcoxon",
              "signed-rank test over the seed-averaged per-case differences.", "",
              "| labelled | comparison | source | unseen_mean |", "|---|---|---|---|"]
    for fraction in fractions:
        for treated, control in COMPARISONS:
            if (fraction, treated) in results and (fraction, control) in results:
                paired = {name: paired_comparison(case_matrix(results[(fraction, treated)], sel),
                                                  case_matrix(results[(fraction, control)], sel))
                          for name, sel in (("source", ["source"]), ("unseen_mean", targets))}
                summary["paired"][f"{fraction}/{treated}-{control}"] = paired
                lines.append(f"| {fraction:.0%} | {treated} - {control} | {interval_text(paired['source'])} | "
                             f"{interval_text(paired['unseen_mean'])} |")
    lines += ["", "## Cost per iteration", "", "Seconds per iteration, median over runs, from the trainer's epoch "
              "times (validation excluded), same process settings:", ""]
    for variant in VARIANTS:
        per_iteration = [s["epoch_seconds"] / s["iterations"] for (f, v), r in results.items() if v == variant
                         for s in r.values() if s.get("epoch_seconds")]
        if per_iteration:
            lines.append(f"- {variant}: {np.median(per_iteration):.3f} s")
    lines += ["", "## Convergence", "", "Source validation Dice (mean over seeds): first, middle, last validation and "
              "the change over the last three.", "", "| labelled | variant | first | middle | last | last-3 change |",
              "|---|---|---|---|---|---|"]
    for (fraction, variant), runs in results.items():
        cells = convergence_cells(runs)
        if cells:
            lines.append(f"| {fraction:.0%} | {variant} | " + " | ".join(cells) + " |")
    lines += ["", "![Dice per variant](semi_supervised.png)", ""]
    docs_dir.mkdir(parents=True, exist_ok=True)
    (docs_dir / "semi_supervised.md").write_text("\n".join(lines) + "\n")
    (docs_dir / "semi_supervised_summary.json").write_text(json.dumps(summary, indent=1))
    _plot(summary, fractions, docs_dir / "semi_supervised.png")
    return summary


def _plot(summary: dict, fractions: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100, sharey=True)
    width = 0.8 / len(VARIANTS)
    for ax, domain in zip(axes, ("source", "unseen_mean")):
        for index, variant in enumerate(VARIANTS):
            rows = [summary["dice"].get(f"{f}/{variant}") for f in fractions]
            means = [r[domain][0] if r else np.nan for r in rows]
            stds = [r[domain][1] if r else np.nan for r in rows]
            ax.bar(np.arange(len(fractions)) + index * width, means, width, yerr=stds, capsize=3, label=variant)
        ax.set_xticks(np.arange(len(fractions)) + width, [f"{f:.0%} labelled" for f in fractions])
        ax.set_title("held-out source" if domain == "source" else "unseen target domains (mean)")
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("Dice (mean +- std over seeds)")
    axes[0].legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(
    profile: str = "cpu",
    seeds: int = 3,
    fractions: str | float | list[float] = "0.2,0.1",
    jobs: int = 2,
    work_dir: str = "runs/semi_supervised",
    docs_dir: str = "docs",
    pool_cases: int = 20,
    val_cases: int = 4,
    test_cases: int = 8,
    iterations: int = 600,
    first_seed: int = 0,
) -> None:
    """
    Run the benchmark (see the module docs). ``fractions``: labelled fractions of the pool, comma-separated;
    ``iterations``: the budget of every run (one labelled and one unlabelled batch each).

    Raises:
        ValueError: a fraction outside (0, 1] or one that labels no case, before anything runs.
        KeyError: an unknown profile.
    """
    values = comma_separated(fractions, float)
    if any(not 0 < f <= 1 or round(f * pool_cases) < 1 for f in values):
        raise ValueError(f"fractions must be in (0, 1] and label at least one of {pool_cases} cases, got {values}")
    overrides = {k: v for k, v in profile_overrides(profile).items() if k not in PAIR_EXCLUDED + BUDGET_KEYS}
    pair = PAIR_PROFILES.get(profile, {})
    evaluation = {k: v for k, v in profile_overrides(profile, evaluation=True).items() if k not in PAIR_EXCLUDED}
    evaluation.update({"network_def": _pair_network_def(pair), **({"roi_size": pair["roi_size"]} if "roi_size" in pair
                                                                 else {})})
    work = Path(work_dir).resolve()
    pool, validation, tests = benchmark_data(work, "source_pool", pool_cases, val_cases, test_cases)
    datalist = pool / "dataset.json"
    threads = max(1, (os.cpu_count() or 1) // jobs)
    tasks = []
    for seed in range(first_seed, first_seed + seeds):
        for fraction in values:
            labelled = max(1, round(fraction * pool_cases))
            epochs = max(1, round(iterations / labelled))  # one labelled case per iteration
            settings = {**overrides, **pair, "labelled_fraction": fraction, "max_epochs": epochs,
                        "val_interval": max(1, epochs // 6), "semi_rampup_iterations": iterations // 4}
            for variant in VARIANTS:
                run_dir = work / "runs" / profile / f"{fraction:g}_{variant}_seed{seed}"
                tasks.append(((fraction, variant, seed, epochs * labelled),
                              (variant, seed, datalist, validation, tests, run_dir, profile, settings, evaluation,
                               threads)))
    start = time.perf_counter()
    results: dict = {}
    with ThreadPoolExecutor(max_workers=jobs) as executor:
        futures = {executor.submit(train_and_score, *arguments): key for key, arguments in tasks}
        for future, (fraction, variant, seed, run_iterations) in futures.items():
            scores = {**future.result(), "iterations": run_iterations}
            results.setdefault((fraction, variant), {})[str(seed)] = scores
            print(f"{fraction:.0%} labelled, {variant}, seed {seed}: Dice " + ", ".join(
                f"{d} {np.nanmean(scores[d]['dice']):.3f}" for d in DOMAINS), flush=True)
    wall = time.perf_counter() - start
    command = (
        f"python -m scripts.benchmarks.semi_supervised --profile {profile} --seeds {seeds} --jobs {jobs} "
        f"--iterations {iterations}"
    )
    header = [
        "# Semi-supervised benchmark: two subnetworks, verification, pseudo-labels, prototype contrast (phantom)",
        "",
        f"Command: `{command}`; this invocation took {wall / 60:.1f} min ({jobs} runs in parallel, {threads} torch "
        "thread(s) each; finished runs are reused).",
        "",
        f"Profile `{profile}`: {json.dumps(overrides)}; subnetworks {json.dumps(pair)}. Pool of {pool_cases} `source` "
        f"cases (seed {POOL_SEED}); labelled fractions {values} of it (chosen with the run's seed), the rest "
        f"unlabelled; about {iterations} iterations per run, each one labelled case (2 crops) and one unlabelled case "
        f"(2 crops); validated on {val_cases} other `source` cases; tested on {test_cases} cases per domain "
        f"(seed {TEST_SEED}) by the evaluate config against the label files. Seeds {first_seed} to "
        f"{first_seed + seeds - 1}. Variants: {json.dumps(VARIANTS)}.",
    ]
    write_report(results, values, Path(docs_dir), header)
    print((Path(docs_dir) / "semi_supervised.md").read_text())


if __name__ == "__main__":
    run_command_line(main)
