"""
Single-source domain-generalisation benchmark on the embedded phantom.

    python -m scripts.benchmarks.generalization                          # CPU profile, 3 seeds, 2 parallel jobs
    python -m scripts.benchmarks.generalization --profile gpu --jobs 1   # the shipped model's size, on a GPU

Trains every variant (``scripts.benchmarks.profiles.VARIANTS``: config files over configs/train.yaml) on the
phantom ``source`` domain with the same budget and seeds, with a separate source validation set whose Dice is
recorded through training (the convergence curves), then scores every run's final weights on held-out
``source`` cases and on every target domain with the evaluate config (the inferer, post-processing and
inversion of inference, against the label files). Each run is trained and scored by processes of their own
(``jobs`` at a time, ``cores / jobs`` torch threads each); an interrupted benchmark continues where it stopped
(training resumes from its newest checkpoint, scored runs are kept). Writes ``docs/generalization.md`` (tables,
paired differences with bootstrap intervals and Wilcoxon p-values), ``docs/generalization.png`` (Dice per
domain) and ``docs/generalization_curves.png`` (validation Dice over iterations).
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from scripts.benchmarks.arguments import comma_separated
from scripts.benchmarks.profiles import PAIRED_BASELINE, VARIANTS, profile_overrides
from scripts.benchmarks.reporting import POOL_SEED, TEST_SEED, benchmark_data, case_matrix, interval_text
from scripts.benchmarks.runs import score_once, train_once
from scripts.bundle import run_command_line
from scripts.evaluation.statistics import auroc, paired_comparison
from scripts.phantom import DOMAINS

__all__ = ["main", "summarise"]

DEFAULT_VARIANTS = ("baseline", "baseline_bigaug", "baseline_gin", "dualssl", "dualssl_bigaug", "dualssl_gin")


def train_and_score(
    variant: str, seed: int, data: dict[str, Path], run_dir: Path, profile: str, overrides: dict, threads: int
) -> dict:
    """Train one variant with one seed through ``monai.bundle run``, then score it; returns its scores."""
    tests = {d: str(data[f"{d}_test"]) for d in DOMAINS}
    if (run_dir / "scores.json").is_file():
        return score_once(run_dir, profile, tests, threads, float("nan"))
    settings = {
        "dataset_dir": str(data["source_train"]),
        "val_datalist_file": str(data["source_val"] / "dataset.json"),
        "seed": seed,
        "split_seed": seed,
        **overrides,
    }
    seconds = train_once(["train.yaml", *VARIANTS[variant]], settings, run_dir, threads)
    return score_once(run_dir, profile, tests, threads, seconds)


def summarise(results: dict, domains: list[str]) -> dict:
    """Per variant and domain: mean +- std over seeds of the per-seed case mean; paired comparisons; gaps."""
    targets = [d for d in domains if d != "source"]
    summary: dict = {"domains": {}, "paired": {}, "gap": {}}
    for variant in results:
        summary["domains"][variant] = {}
        for domain in domains + ["unseen_mean"]:
            for metric in ("dice", "hd95_mm"):
                cases = case_matrix(results[variant], targets if domain == "unseen_mean" else [domain], metric)
                per_seed = np.nanmean(cases, axis=1)
                summary["domains"][variant].setdefault(domain, {})[metric] = (
                    float(np.mean(per_seed)),
                    float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else float("nan"),
                )
        dice = summary["domains"][variant]
        summary["gap"][variant] = dice["source"]["dice"][0] - dice["unseen_mean"]["dice"][0]
        control = PAIRED_BASELINE.get(variant)
        if control in results:
            common = sorted(set(results[variant]) & set(results[control]), key=int)
            paired = {}
            for domain in ["unseen_mean"] + domains:
                selected = targets if domain == "unseen_mean" else [domain]
                treated = case_matrix({s: results[variant][s] for s in common}, selected)
                base = case_matrix({s: results[control][s] for s in common}, selected)
                paired[domain] = paired_comparison(treated, base)
            summary["paired"][variant] = {"control": control, **paired}
    return summary


def _finish(fig, ax, path: Path, ylabel: str, title: str, legend_loc: str) -> None:
    """Dice axis from 0 to 1, title, two-column legend; save the figure to ``path`` and close it."""
    import matplotlib.pyplot as plt

    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc=legend_loc, fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_dice(summary: dict, domains: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = list(summary["domains"])
    fig, ax = plt.subplots(figsize=(12, 4.5), dpi=100)
    width = 0.8 / len(variants)
    colors = plt.get_cmap("tab20")
    for index, variant in enumerate(variants):
        means = [summary["domains"][variant][d]["dice"][0] for d in domains]
        stds = [summary["domains"][variant][d]["dice"][1] for d in domains]
        ax.bar(
            np.arange(len(domains)) + index * width, means, width, yerr=stds, capsize=2, label=variant,
            color=colors(index % 20),
        )
    ax.set_xticks(np.arange(len(domains)) + width * (len(variants) - 1) / 2)
    ax.set_xticklabels(domains)
    title = "Trained on phantom 'source' only; held-out source and unseen target domains"
    _finish(fig, ax, path, "Dice (mean +- std over seeds)", title, "lower left")


def _plot_curves(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5), dpi=100)
    colors = plt.get_cmap("tab20")
    for index, (variant, seeds) in enumerate(results.items()):
        color = colors(index % 20)
        style = "--" if variant.startswith("baseline") else "-"
        for seed_index, scores in enumerate(seeds.values()):
            curve = scores.get("validation_curve", [])
            if curve:
                ax.plot(
                    [e["iteration"] for e in curve],
                    [e["val_mean_dice"] for e in curve],
                    color=color,
                    linestyle=style,
                    alpha=0.8,
                    label=variant if seed_index == 0 else None,
                )
    ax.set_xlabel("iteration")
    title = "Convergence: one line per run (seed); dashed: baselines"
    _finish(fig, ax, path, "source validation Dice", title, "lower right")


def _plateau(curve: list[dict], tail: int = 3) -> float:
    """Change of validation Dice over the last ``tail`` validations (a flat curve: close to 0)."""
    values = [e["val_mean_dice"] for e in curve]
    return float(values[-1] - values[-tail]) if len(values) >= tail else float("nan")


def quality_ranking(
    results: dict, domains: list[str], wrong_below: float = 0.5, percentile: float = 95.0
) -> dict | None:
    """
    How well the inference quality estimate tells the unseen-domain test cases that went wrong: Spearman
    correlation of ``uncertainty`` with Dice, the AUROC of ``uncertainty`` for Dice below ``wrong_below``, and
    the same for the flag ``uncertainty > threshold`` with the threshold calibrated on the held-out ``source``
    cases only (their ``percentile``-th percentile: what a user with labelled source data can do).
    ``None`` when the scores hold no quality estimate.
    """
    from scipy import stats

    source, dice, uncertainty = [], [], []
    for seeds in results.values():
        for scores in seeds.values():
            if any("uncertainty" not in scores[d] for d in domains):
                return None
            source += scores["source"]["uncertainty"]
            for domain in domains:
                if domain != "source":
                    dice += scores[domain]["dice"]
                    uncertainty += scores[domain]["uncertainty"]
    dice, uncertainty = np.array(dice, dtype=float), np.array(uncertainty, dtype=float)
    keep = np.isfinite(dice) & np.isfinite(uncertainty)
    dice, uncertainty = dice[keep], uncertainty[keep]
    threshold = float(np.nanpercentile(np.array(source, dtype=float), percentile))
    flag = uncertainty > threshold
    wrong = dice < wrong_below
    both = 0 < wrong.sum() < len(wrong)
    return {
        "cases": int(len(dice)),
        "wrong_cases": int(wrong.sum()),
        "spearman_uncertainty_dice": float(stats.spearmanr(uncertainty, dice).statistic),
        "auroc_uncertainty": auroc(wrong, uncertainty) if both else float("nan"),
        "threshold": threshold,
        "percentile": percentile,
        "flagged": int(flag.sum()),
        "flagged_wrong": int((flag & wrong).sum()),
        "auroc_flag": auroc(wrong, flag) if both else float("nan"),
        "mean_dice_flagged": float(dice[flag].mean()) if flag.any() else float("nan"),
        "mean_dice_not_flagged": float(dice[~flag].mean()) if (~flag).any() else float("nan"),
    }


def write_report(results: dict, domains: list[str], docs_dir: Path, header: list[str]) -> None:
    """``generalization.md`` with the tables and statistics, and the two figures."""
    summary = summarise(results, domains)
    columns = domains + ["unseen_mean"]
    lines = header + [
        "",
        "## Dice and HD95 per domain",
        "",
        "Mean +- std over seeds of the per-seed case mean; `unseen_mean` is the mean over the three target domains",
        "(the primary endpoint); gap = source minus unseen_mean.",
        "",
        "| variant | " + " | ".join(f"{d} Dice" for d in columns) + " | gap | " + " | ".join(
            f"{d} HD95 mm" for d in domains) + " |",
        "|---" * (2 + len(columns) + len(domains)) + "|",
    ]
    for variant, per_domain in summary["domains"].items():
        dice = [f"{per_domain[d]['dice'][0]:.3f} +- {per_domain[d]['dice'][1]:.3f}" for d in columns]
        hd = [f"{per_domain[d]['hd95_mm'][0]:.1f}" for d in domains]
        gap = summary["gap"][variant]
        lines.append(f"| {variant} | " + " | ".join(dice) + f" | {gap:.3f} | " + " | ".join(hd) + " |")
    lines += [
        "",
        "## Paired differences (variant minus its paired baseline, same seeds and cases)",
        "",
        "Dice points x 100. Mean difference [95 % two-level bootstrap interval over seeds and cases]; p: two-sided",
        "Wilcoxon signed-rank test over the seed-averaged per-case differences.",
        "",
        "| variant | paired with | " + " | ".join(columns[-1:] + domains) + " |",
        "|---" * (2 + len(domains) + 1) + "|",
    ]
    for variant, paired in summary["paired"].items():
        cells = [interval_text(paired[d]) for d in ["unseen_mean"] + domains]
        lines.append(f"| {variant} | {paired['control']} | " + " | ".join(cells) + " |")
    lines += ["", "## Convergence", "", "![validation curves](generalization_curves.png)", ""]
    lines += ["Change of source validation Dice over the last three validations of each run (flat: near 0):", ""]
    lines += ["| variant | " + " | ".join(f"seed {s}" for s in sorted(next(iter(results.values())), key=int)) + " |"]
    lines += ["|---" * (1 + len(next(iter(results.values())))) + "|"]
    for variant, seeds in results.items():
        cells = [f"{_plateau(seeds[s].get('validation_curve', [])):+.3f}" for s in sorted(seeds, key=int)]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    lines += ["", "Training wall time per run (s, median over seeds, runs in parallel as stated above):", ""]
    for variant, seeds in results.items():
        lines.append(f"- {variant}: {np.median([seeds[s]['train_seconds'] for s in seeds]):.0f}")
    ranking = quality_ranking(results, domains)
    if ranking is not None:
        lines += [
            "",
            "## Quality estimate of inference",
            "",
            f"Over the {ranking['cases']} unseen-domain test cases of every run "
            f"({ranking['wrong_cases']} with Dice < 0.5): "
            f"Spearman correlation of the uncertainty with Dice {ranking['spearman_uncertainty_dice']:+.2f}; AUROC of "
            f"the uncertainty for Dice < 0.5 {ranking['auroc_uncertainty']:.2f}. Flag = uncertainty above "
            f"{ranking['threshold']:.3f}, the {ranking['percentile']:g}th percentile of the held-out source cases' "
            f"uncertainty (calibrated on source only): {ranking['flagged']} flagged, {ranking['flagged_wrong']} of the "
            f"{ranking['wrong_cases']} with Dice < 0.5 among them, AUROC {ranking['auroc_flag']:.2f}; mean Dice "
            f"{ranking['mean_dice_flagged']:.3f} flagged against {ranking['mean_dice_not_flagged']:.3f} not flagged.",
        ]
        summary["quality"] = ranking
    lines += ["", "![Dice per domain](generalization.png)", ""]
    docs_dir.mkdir(parents=True, exist_ok=True)
    (docs_dir / "generalization.md").write_text("\n".join(lines) + "\n")
    (docs_dir / "generalization_summary.json").write_text(json.dumps(summary, indent=1))
    _plot_dice(summary, domains, docs_dir / "generalization.png")
    _plot_curves(results, docs_dir / "generalization_curves.png")


def main(
    profile: str = "cpu",
    seeds: int = 3,
    variants: str | list[str] = DEFAULT_VARIANTS,
    jobs: int = 2,
    work_dir: str = "runs/generalization",
    docs_dir: str = "docs",
    train_cases: int = 12,
    val_cases: int = 4,
    test_cases: int = 8,
    first_seed: int = 0,
) -> None:
    """
    Run the benchmark (see the module docs). ``variants``: comma-separated names of
    ``scripts.benchmarks.profiles.VARIANTS``; ``jobs``: runs in parallel.

    Raises:
        KeyError: an unknown profile or variant, before anything runs.
    """
    variants = comma_separated(variants, str)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise KeyError(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    overrides = profile_overrides(profile)
    iterations = overrides["max_epochs"] * train_cases
    # the SSL terms start at a quarter of training and reach full weight over the next fifth
    overrides.update(ssl_start_iteration=max(1, iterations // 4), ssl_rampup_iterations=max(1, iterations // 5))
    work = Path(work_dir).resolve()
    pool, validation, tests = benchmark_data(work, "source_train", train_cases, val_cases, test_cases)
    data = {"source_train": pool, "source_val": validation, **{f"{d}_test": Path(p) for d, p in tests.items()}}
    threads = max(1, (os.cpu_count() or 1) // jobs)
    tasks = [(v, s) for s in range(first_seed, first_seed + seeds) for v in variants]  # paired runs finish together
    results: dict = {v: {} for v in variants}
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {
            pool.submit(
                train_and_score, v, s, data, work / "runs" / profile / f"{v}_seed{s}", profile, overrides, threads
            ): (v, s)
            for v, s in tasks
        }
        for future, (variant, seed) in futures.items():
            scores = future.result()
            results[variant][str(seed)] = scores
            print(f"{variant} seed {seed}: {scores['train_seconds']:.0f} s, Dice " + ", ".join(
                f"{d} {np.nanmean(scores[d]['dice']):.3f}" for d in DOMAINS), flush=True)
    wall = time.perf_counter() - start
    command = f"python -m scripts.benchmarks.generalization --profile {profile} --seeds {seeds} --jobs {jobs}"
    header = [
        "# Single-source generalisation benchmark (phantom)",
        "",
        f"Command: `{command}` (variants: {', '.join(variants)}); this invocation took {wall / 60:.1f} min "
        f"({jobs} runs in parallel, {threads} torch thread(s) each; runs scored earlier are reused).",
        "",
        f"Profile `{profile}`: {json.dumps(overrides)}. Trained on {train_cases} `source` cases (seed {POOL_SEED}), "
        f"validated on {val_cases} other `source` cases; tested on {test_cases} cases per domain (seed "
        f"{TEST_SEED}), scored by the evaluate config on the label files. Seeds {first_seed} to "
        f"{first_seed + seeds - 1}. Variants: {json.dumps({v: VARIANTS[v] for v in variants})}.",
    ]
    write_report(results, list(DOMAINS), Path(docs_dir), header)
    print((Path(docs_dir) / "generalization.md").read_text())


if __name__ == "__main__":
    run_command_line(main)
