"""
Single-source domain-generalisation benchmark on the embedded phantom.

    python -m scripts.benchmarks.generalization                       # CPU budget (2 cores: about 25 minutes)
    python -m scripts.benchmarks.generalization --scale 8 --seeds 5   # GPU budget: 8x the iterations, 5 seeds

Trains the plain supervised baseline, DualSSL and the two ablations (configs/train.yaml with
configs/baseline.yaml, -, configs/contrastive_only.yaml, configs/restoration_only.yaml) on the phantom
``source`` domain with the same budget and seeds, then evaluates every run on held-out ``source`` cases and
on every target domain (Dice and HD95 in the original geometry of each case). Writes a Markdown table and a
bar chart (mean +- std over seeds per domain) to ``docs/`` and every per-run number to ``<work_dir>``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import fire
import numpy as np

from scripts.bundle import BUNDLE_ROOT, config_files
from scripts.evaluation import DomainEvaluator
from scripts.evaluation.report import finite_statistics
from scripts.phantom import DOMAINS, ensure_dataset

VARIANTS = {
    "baseline": ["baseline.yaml"],
    "contrastive_only": ["contrastive_only.yaml"],
    "restoration_only": ["restoration_only.yaml"],
    "dualssl": [],
}
TEST_SEED = 1000


def train_run(variant: str, seed: int, data_dir: Path, run_dir: Path, budget: dict) -> float:
    """Train one variant with one seed through ``monai.bundle run``; returns wall seconds."""
    overrides = {
        "dataset_dir": str(data_dir),
        "generate_phantom": False,
        "output_dir": str(run_dir),
        "seed": seed,
        "split_seed": seed,
        # an interrupted benchmark continues each unfinished run from its newest checkpoint
        "resume": True,
        **budget,
    }
    args = [sys.executable, "-m", "monai.bundle", "run", "--config_file", json.dumps(config_files("train.yaml", *VARIANTS[variant]))]
    args += ["--meta_file", str(BUNDLE_ROOT / "configs" / "metadata.json")]
    for key, value in overrides.items():
        args += [f"--{key}", json.dumps(value) if isinstance(value, list) else str(value)]
    start = time.perf_counter()
    log = run_dir / "train.log"
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        result = subprocess.run(args, cwd=BUNDLE_ROOT, stdout=f, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise RuntimeError(f"training {variant} seed {seed} failed, see {log}")
    return time.perf_counter() - start


def _mean_std(values: list[float]) -> tuple[float, float]:
    stats = finite_statistics(values)
    return stats["mean"], stats["std"]


def write_benchmark_report(results: dict, domains: list[str], docs_dir: Path, command: str, budget: dict) -> None:
    """Markdown table and bar chart of per-seed case means, mean +- std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary: dict[str, dict[str, dict[str, tuple[float, float]]]] = {}
    for variant, seeds in results.items():
        summary[variant] = {}
        for domain in domains:
            per_seed = {
                metric: [_mean_std(seeds[seed][domain][metric])[0] for seed in seeds] for metric in ("dice", "hd95_mm")
            }
            summary[variant][domain] = {metric: _mean_std(v) for metric, v in per_seed.items()}
    lines = [
        "# Single-source generalisation benchmark (phantom)",
        "",
        f"Command: `{command}`",
        "",
        f"Training budget per run: {json.dumps(budget)}; seeds: {len(next(iter(results.values())))}.",
        "Dice (higher is better) and HD95 in mm (lower is better), mean +- std over seeds of the per-seed case mean.",
        "All variants are trained on `source` only; the other columns are unseen domains.",
        "",
        "| variant | " + " | ".join(f"{d} Dice" for d in domains) + " | " + " | ".join(f"{d} HD95" for d in domains) + " |",
        "|---" * (1 + 2 * len(domains)) + "|",
    ]
    for variant in results:
        dice = [f"{summary[variant][d]['dice'][0]:.3f} +- {summary[variant][d]['dice'][1]:.3f}" for d in domains]
        hd = [f"{summary[variant][d]['hd95_mm'][0]:.1f} +- {summary[variant][d]['hd95_mm'][1]:.1f}" for d in domains]
        lines.append(f"| {variant} | " + " | ".join(dice + hd) + " |")
    base = summary.get("baseline")
    if base is not None:
        lines += ["", "Dice difference to the baseline (positive: better than the baseline):", ""]
        lines.append("| variant | " + " | ".join(domains) + " |")
        lines.append("|---" * (1 + len(domains)) + "|")
        for variant in results:
            if variant != "baseline":
                diffs = [summary[variant][d]["dice"][0] - base[d]["dice"][0] for d in domains]
                lines.append(f"| {variant} | " + " | ".join(f"{x:+.3f}" for x in diffs) + " |")
        drops = [base["source"]["dice"][0] - base[d]["dice"][0] for d in domains if d != "source"]
        targets = [d for d in domains if d != "source"]
        lines += ["", "Baseline Dice lost from held-out source to each unseen target: " + ", ".join(
            f"{d}: {x:.3f}" for d, x in zip(targets, drops))]
    docs_dir.mkdir(parents=True, exist_ok=True)
    (docs_dir / "generalization.md").write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=100)
    width = 0.8 / len(results)
    for index, variant in enumerate(results):
        means = [summary[variant][d]["dice"][0] for d in domains]
        stds = [summary[variant][d]["dice"][1] for d in domains]
        ax.bar(np.arange(len(domains)) + index * width, means, width, yerr=stds, capsize=3, label=variant)
    ax.set_xticks(np.arange(len(domains)) + width * (len(results) - 1) / 2)
    ax.set_xticklabels(domains)
    ax.set_ylabel("Dice (mean +- std over seeds)")
    ax.set_ylim(0, 1)
    ax.set_title("Trained on phantom 'source' only; evaluated on held-out source and unseen target domains")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(docs_dir / "generalization.png")
    plt.close(fig)


def main(
    work_dir: str = "runs/generalization",
    seeds: int = 3,
    scale: float = 1.0,
    train_cases: int = 12,
    test_cases: int = 4,
    variants: str | list[str] = tuple(VARIANTS),
    docs_dir: str = "docs",
    num_workers: int = 0,
) -> None:
    """
    Run the benchmark. ``scale`` multiplies the number of training epochs (and the SSL ramp with it);
    ``variants`` may select a subset (comma-separated) of baseline, contrastive_only, restoration_only, dualssl.
    """
    work = Path(work_dir).resolve()
    variants = variants.split(",") if isinstance(variants, str) else list(variants)
    max_epochs = max(1, round(12 * scale))
    iterations = max_epochs * round(train_cases * 0.9)
    budget = {
        "max_epochs": max_epochs,
        "val_interval": max_epochs + 1,
        "val_fraction": 0.1,
        "roi_size": [48, 48, 32],
        "num_workers": num_workers,
        "ssl_start_iteration": max(1, iterations // 10),
        "ssl_rampup_iterations": max(1, iterations // 5),
    }
    source_dir = ensure_dataset(work / "data" / "source_train", domain="source", cases=train_cases, seed=0)
    domains = list(DOMAINS)
    test_dirs = {
        d: ensure_dataset(work / "data" / f"{d}_test", domain=d, cases=test_cases, seed=TEST_SEED) for d in domains
    }
    results_file = work / f"results_scale{scale:g}.json"
    results: dict = json.loads(results_file.read_text()) if results_file.exists() else {}
    evaluators: dict[str, DomainEvaluator] = {}
    for variant in variants:
        for seed in range(seeds):
            if str(seed) in results.get(variant, {}):
                continue
            run_dir = work / "runs" / f"scale{scale:g}" / f"{variant}_seed{seed}"
            seconds = train_run(variant, seed, source_dir, run_dir, budget)
            for domain in domains:
                if domain not in evaluators:
                    evaluators[domain] = DomainEvaluator(test_dirs[domain], budget["roi_size"], num_workers)
            scores = {d: evaluators[d](run_dir / "models" / "checkpoint_final.pt") for d in domains}
            scores["train_seconds"] = seconds
            results.setdefault(variant, {})[str(seed)] = scores
            results_file.write_text(json.dumps(results, indent=1))
            print(f"{variant} seed {seed}: {seconds:.0f} s, Dice " + ", ".join(
                f"{d} {np.nanmean(scores[d]['dice']):.3f}" for d in domains), flush=True)
    selected = {v: results[v] for v in variants if v in results}
    command = "python -m scripts.benchmarks.generalization" + (f" --scale {scale:g}" if scale != 1 else "") + (
        f" --seeds {seeds}" if seeds != 3 else "") + (
        f" --variants {','.join(variants)}" if set(variants) != set(VARIANTS) else "")
    write_benchmark_report(selected, domains, Path(docs_dir), command, budget)
    print((Path(docs_dir) / "generalization.md").read_text())


if __name__ == "__main__":
    fire.Fire(main)
