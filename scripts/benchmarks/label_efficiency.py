"""
Label-efficiency benchmark of self-supervised pretraining on the embedded phantom (PGL, arXiv 2011.12640).

    python -m scripts.benchmarks.label_efficiency                          # CPU profile, 3 seeds, 2 parallel jobs
    python -m scripts.benchmarks.label_efficiency --profile gpu --jobs 1   # the shipped model's size, on a GPU

For every seed, the network is pretrained without labels on the ``source`` pool's images by global consistency
(``configs/pretrain_pgl.yaml`` + ``configs/pretrain_global.yaml``) and by PGL's local consistency
(``configs/pretrain_pgl.yaml``); then it is fine-tuned (``configs/train.yaml`` + ``configs/baseline.yaml``:
supervised, the same budget of iterations for every initialisation) with 2, 4 and 8 labelled ``source`` cases
from (a) random initialisation, (b) the global and (c) the PGL pretraining of the same seed, and scored on held-out
``source`` cases and on every target domain (the evaluate config, against the label files). Runs are processes
of their own (``jobs`` at a time); an interrupted benchmark continues (unfinished runs resume, finished ones are
kept). Writes ``docs/label_efficiency.md`` (tables, paired differences with bootstrap intervals, cost per
iteration, convergence) and ``docs/label_efficiency.png``.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from scripts.benchmarks.arguments import labelled_counts
from scripts.benchmarks.profiles import profile_overrides
from scripts.benchmarks.reporting import (
    POOL_SEED,
    TEST_SEED,
    benchmark_data,
    case_matrix,
    convergence_cells,
    interval_text,
)
from scripts.benchmarks.runs import epoch_seconds, logged_values, score_once, train_once
from scripts.bundle import run_command_line
from scripts.evaluation.statistics import paired_comparison
from scripts.phantom import DOMAINS

__all__ = ["INITIALISATIONS", "main", "summarise"]

# initialisation -> pretraining configs (None: random initialisation)
INITIALISATIONS: dict[str, list[str] | None] = {
    "random": None,
    "global": ["pretrain_pgl.yaml", "pretrain_global.yaml"],
    "pgl": ["pretrain_pgl.yaml"],
}
# (treated, control) pairs reported as paired differences
COMPARISONS = (("pgl", "random"), ("global", "random"), ("pgl", "global"))
# keys of a size profile that the pretraining config has too
PRETRAINING_KEYS = ("pixdim", "roi_size", "network_def#channels", "num_workers")


def _labelled_datalist(pool: Path, cases: int, path: Path) -> Path:
    """A datalist of the first ``cases`` training entries of the pool's ``dataset.json``, with absolute paths."""
    entries = json.loads((pool / "dataset.json").read_text())["training"][:cases]
    absolute = [{k: str((pool / v).resolve()) for k, v in entry.items()} for entry in entries]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"training": absolute}, indent=1))
    return path


def pretrain(initialisation: str, seed: int, pool: Path, run_dir: Path, overrides: dict, threads: int) -> dict:
    """Pretrain once per (initialisation, seed); the checkpoint and the seconds per iteration of its epochs."""
    settings = {"dataset_dir": str(pool), "seed": seed, **overrides}
    train_once(INITIALISATIONS[initialisation], settings, run_dir, threads)
    return {
        "checkpoint": str(run_dir / "models" / "checkpoint_final.pt"),
        "epoch_seconds": epoch_seconds(run_dir / "train.log"),
        "loss_curve": logged_values(run_dir / "train.log", "loss"),
    }


def finetune_and_score(
    checkpoint: str | None,
    seed: int,
    datalist: Path,
    validation: Path,
    tests: dict[str, str],
    run_dir: Path,
    profile: str,
    overrides: dict,
    threads: int,
    configs: tuple[str, ...] = ("train.yaml", "baseline.yaml"),
    score_overrides: dict | None = None,
) -> dict:
    """Fine-tune (supervised: ``configs``) from ``checkpoint`` (None: random initialisation), then score on every
    test set (``score_overrides``: config overrides of the evaluator, e.g. for another network)."""
    settings = {
        "datalist_file": str(datalist),
        "val_datalist_file": str(validation / "dataset.json"),
        "seed": seed,
        "split_seed": seed,
        **overrides,
    }
    if checkpoint is not None:
        settings["pretrained_checkpoint"] = checkpoint
    seconds = train_once(list(configs), settings, run_dir, threads)
    scores = score_once(run_dir, profile, tests, threads, seconds, score_overrides)
    scores["epoch_seconds"] = epoch_seconds(run_dir / "train.log")
    return scores


def summarise(results: dict, domains: list[str], comparisons: tuple = COMPARISONS) -> dict:
    """Per (labelled, initialisation) and domain: mean and std over seeds of the case mean; paired differences of
    the (treated, control) ``comparisons``."""
    targets = [d for d in domains if d != "source"]
    groups = {"source": ["source"], "unseen_mean": targets, **{d: [d] for d in targets}}
    summary: dict = {"dice": {}, "paired": {}}
    for (labelled, initialisation) in results:
        row = {}
        for name, selected in groups.items():
            per_seed = np.nanmean(case_matrix(results[(labelled, initialisation)], selected), axis=1)
            row[name] = (float(per_seed.mean()), float(per_seed.std(ddof=1)) if len(per_seed) > 1 else float("nan"))
        summary["dice"][f"{labelled}/{initialisation}"] = row
    for labelled in sorted({n for n, _ in results}):
        for treated, control in comparisons:
            if (labelled, treated) in results and (labelled, control) in results:
                summary["paired"][f"{labelled}/{treated}-{control}"] = {
                    name: paired_comparison(
                        case_matrix(results[(labelled, treated)], selected), case_matrix(results[(labelled, control)], selected)
                    )
                    for name, selected in (("source", ["source"]), ("unseen_mean", targets))
                }
    return summary


def _plot(summary: dict, labelled: list[int], path: Path, initialisations: tuple = tuple(INITIALISATIONS)) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100, sharey=True)
    for ax, domain in zip(axes, ("source", "unseen_mean")):
        for offset, initialisation in enumerate(initialisations):
            rows = [summary["dice"].get(f"{n}/{initialisation}") for n in labelled]
            x = [n * (1 + 0.04 * (offset - 1)) for n, r in zip(labelled, rows) if r]
            means = [r[domain][0] for r in rows if r]
            stds = [r[domain][1] for r in rows if r]
            ax.errorbar(x, means, yerr=stds, marker="o", capsize=3, label=initialisation)
        ax.set_xscale("log", base=2)
        ax.set_xticks(labelled, [str(n) for n in labelled])
        ax.set_xlabel("labelled source cases")
        ax.set_title("held-out source" if domain == "source" else "unseen target domains (mean)")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Dice (mean +- std over seeds)")
    axes[0].legend(title="initialisation", loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_curves(results: dict, pretraining: dict, labelled: list[int], path: Path, initialisations: tuple) -> None:
    """Pretraining loss per iteration (one line per run) and the fine-tuning runs' source validation Dice."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    colors = plt.get_cmap("tab10")
    for index, (initialisation, runs) in enumerate(pretraining.items()):
        for seed_index, run in enumerate(runs.values()):
            curve = run.get("loss_curve", [])
            left.plot(range(1, len(curve) + 1), curve, color=colors(index), alpha=0.7,
                      label=initialisation if seed_index == 0 else None)
    left.set_xlabel("pretraining iteration")
    left.set_ylabel("consistency loss (2 - 2 cos)")
    left.set_title("Pretraining: one line per seed")
    left.legend()
    for index, initialisation in enumerate(initialisations):
        for style, n in zip(("-", "--", ":", "-."), labelled):
            for seed_index, scores in enumerate(results.get((n, initialisation), {}).values()):
                curve = scores.get("validation_curve", [])
                right.plot([e["iteration"] for e in curve], [e["val_mean_dice"] for e in curve], color=colors(index),
                           linestyle=style, alpha=0.6,
                           label=f"{initialisation}, {n} cases" if seed_index == 0 else None)
    right.set_xlabel("fine-tuning iteration")
    right.set_ylabel("source validation Dice")
    right.set_ylim(0, 1)
    right.set_title("Fine-tuning: one line per seed")
    right.legend(fontsize=6, ncol=3, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(
    results: dict,
    pretraining: dict,
    labelled: list[int],
    domains: list[str],
    docs_dir: Path,
    header: list[str],
    initialisations: tuple = tuple(INITIALISATIONS),
    comparisons: tuple = COMPARISONS,
    name: str = "label_efficiency",
) -> dict:
    """``<name>.md``, ``<name>_summary.json`` and ``<name>.png`` in ``docs_dir`` (rows in the order of
    ``initialisations``, paired differences of ``comparisons``); returns the summary."""
    summary = summarise(results, domains, comparisons)
    columns = ["source", "unseen_mean"] + [d for d in domains if d != "source"]
    lines = header + [
        "",
        "## Dice per domain",
        "",
        "Mean +- std over seeds of the per-seed case mean; `unseen_mean`: the three target domains together.",
        "",
        "| labelled cases | initialisation | " + " | ".join(columns) + " |",
        "|---" * (2 + len(columns)) + "|",
    ]
    for n in labelled:
        for initialisation in initialisations:
            row = summary["dice"].get(f"{n}/{initialisation}")
            if row:
                cells = [f"{row[c][0]:.3f} +- {row[c][1]:.3f}" for c in columns]
                lines.append(f"| {n} | {initialisation} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Paired differences (same seed, same labelled cases, same test cases)",
        "",
        "Dice points x 100: mean [95 % two-level bootstrap interval over seeds and cases]; p: two-sided Wilcoxon",
        "signed-rank test over the seed-averaged per-case differences.",
        "",
        "| labelled cases | comparison | source | unseen_mean |",
        "|---|---|---|---|",
    ]
    for key, paired in summary["paired"].items():
        n, comparison = key.split("/")
        lines.append(f"| {n} | {comparison.replace('-', ' - ')} | {interval_text(paired['source'])} | "
                     f"{interval_text(paired['unseen_mean'])} |")
    lines += ["", "## Cost per iteration", ""]
    finetune = [s["epoch_seconds"] / s["iterations"] for r in results.values() for s in r.values() if s["epoch_seconds"]]
    lines.append(
        "Seconds per iteration, median over runs, from the trainer's epoch times in each run's log (validation "
        "excluded), same process settings:"
    )
    lines.append("")
    sup = float(np.median(finetune)) if finetune else float("nan")
    lines.append(f"- supervised fine-tuning iteration: {sup:.3f} s")
    for initialisation, runs in pretraining.items():
        per_iteration = [r["epoch_seconds"] / r["iterations"] for r in runs.values() if r["epoch_seconds"]]
        if per_iteration:
            median = float(np.median(per_iteration))
            lines.append(f"- {initialisation} pretraining iteration: {median:.3f} s ({median / sup:.2f}x supervised)")
    lines += ["", "## Convergence", "", "Source validation Dice of the fine-tuning runs: first, middle and last "
              "validation (mean over seeds); change over the last three validations (flat: near 0).", "",
              "| labelled cases | initialisation | first | middle | last | last-3 change |", "|---|---|---|---|---|---|"]
    for n in labelled:
        for initialisation in initialisations:
            cells = convergence_cells(results.get((n, initialisation), {}))
            if cells:
                lines.append(f"| {n} | {initialisation} | " + " | ".join(cells) + " |")
    lines += ["", f"![Dice against labelled cases]({name}.png)", "",
              f"![pretraining loss and fine-tuning validation curves]({name}_curves.png)", ""]
    docs_dir.mkdir(parents=True, exist_ok=True)
    (docs_dir / f"{name}.md").write_text("\n".join(lines) + "\n")
    (docs_dir / f"{name}_summary.json").write_text(json.dumps(summary, indent=1))
    _plot(summary, labelled, docs_dir / f"{name}.png", initialisations)
    _plot_curves(results, pretraining, labelled, docs_dir / f"{name}_curves.png", initialisations)
    return summary


def main(
    profile: str = "cpu",
    seeds: int = 3,
    labelled: str | int | list[int] = "2,4,8",
    jobs: int = 2,
    work_dir: str = "runs/label_efficiency",
    docs_dir: str = "docs",
    pool_cases: int = 12,
    val_cases: int = 4,
    test_cases: int = 8,
    finetune_iterations: int = 400,
    pretrain_iterations: int = 480,
    first_seed: int = 0,
) -> None:
    """
    Run the benchmark (see the module docs). ``labelled``: comma-separated case counts (at most ``pool_cases``);
    ``finetune_iterations`` / ``pretrain_iterations``: the budget of every fine-tuning / pretraining run.

    Raises:
        ValueError: a labelled count outside [1, pool_cases], before anything runs.
        KeyError: an unknown profile.
    """
    counts = labelled_counts(labelled, pool_cases)
    # the iteration budget sets max_epochs and val_interval of every run
    overrides = {k: v for k, v in profile_overrides(profile).items() if k not in ("max_epochs", "val_interval")}
    work = Path(work_dir).resolve()
    pool, validation, tests = benchmark_data(work, "source_pool", pool_cases, val_cases, test_cases)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    # pretraining: batch 1 case x 2 views per iteration, views_per_case 2: 2 * pool_cases iterations per epoch
    views_per_case = 2
    pretrain_epochs = max(1, round(pretrain_iterations / (views_per_case * pool_cases)))
    pretraining_settings = {k: v for k, v in overrides.items() if k in PRETRAINING_KEYS}
    pretraining_settings.update(max_epochs=pretrain_epochs, views_per_case=views_per_case)
    start = time.perf_counter()
    pretraining: dict = {name: {} for name, configs in INITIALISATIONS.items() if configs}
    with ThreadPoolExecutor(max_workers=jobs) as pool_executor:
        futures = {
            pool_executor.submit(
                pretrain, name, seed, pool, work / "pretrain" / profile / f"{name}_seed{seed}", pretraining_settings,
                threads,
            ): (name, seed)
            for seed in range(first_seed, first_seed + seeds)
            for name in pretraining
        }
        for future, (name, seed) in futures.items():
            pretraining[name][str(seed)] = {**future.result(), "iterations": pretrain_epochs * views_per_case * pool_cases}
            print(f"pretrained {name} seed {seed}", flush=True)
        # fine-tuning: batch 1 case x num_samples patches, one case per iteration
        tasks = []
        for seed in range(first_seed, first_seed + seeds):
            for n in counts:
                epochs = max(1, round(finetune_iterations / n))
                settings = {**overrides, "max_epochs": epochs, "val_interval": max(1, epochs // 8)}
                datalist = _labelled_datalist(pool, n, work / "data" / f"labelled_{n}.json")
                for name in INITIALISATIONS:
                    checkpoint = pretraining[name][str(seed)]["checkpoint"] if name in pretraining else None
                    run_dir = work / "finetune" / profile / f"{n}cases_{name}_seed{seed}"
                    tasks.append(((n, name, seed, epochs * n), (checkpoint, seed, datalist, validation, tests, run_dir,
                                                                profile, settings, threads)))
        futures = {pool_executor.submit(finetune_and_score, *arguments): key for key, arguments in tasks}
        results: dict = {}
        for future, (n, name, seed, iterations) in futures.items():
            scores = {**future.result(), "iterations": iterations}
            results.setdefault((n, name), {})[str(seed)] = scores
            print(f"{n} cases, {name}, seed {seed}: Dice " + ", ".join(
                f"{d} {np.nanmean(scores[d]['dice']):.3f}" for d in DOMAINS), flush=True)
    wall = time.perf_counter() - start
    command = f"python -m scripts.benchmarks.label_efficiency --profile {profile} --seeds {seeds} --jobs {jobs}"
    header = [
        "# Label-efficiency benchmark: PGL and global consistency pretraining (phantom)",
        "",
        f"Command: `{command}`; this invocation took {wall / 60:.1f} min ({jobs} runs in parallel, {threads} torch "
        "thread(s) each; finished runs are reused).",
        "",
        f"Profile `{profile}`: {json.dumps(overrides)}. Pretraining without labels on the {pool_cases} images of the "
        f"`source` pool (seed {POOL_SEED}), {pretrain_epochs} epochs of {views_per_case * pool_cases} view pairs = "
        f"{pretrain_epochs * views_per_case * pool_cases} iterations; fine-tuning (supervised, configs/baseline.yaml) "
        f"on the first 2, 4 or 8 pool cases with their labels, about {finetune_iterations} iterations for every "
        f"count and initialisation, validated on {val_cases} other `source` cases; tested on {test_cases} cases per "
        f"domain (seed {TEST_SEED}) by the evaluate config against the label files. Seeds {first_seed} to "
        f"{first_seed + seeds - 1}: seed s pretrains both methods and fine-tunes all three initialisations.",
    ]
    write_report(results, pretraining, counts, list(DOMAINS), Path(docs_dir), header)
    print((Path(docs_dir) / "label_efficiency.md").read_text())


if __name__ == "__main__":
    run_command_line(main)
