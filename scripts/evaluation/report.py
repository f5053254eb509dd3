"""
Per-case metrics of several test sets written as a report: per-case CSV, per-dataset summary CSV, Markdown, box plot.

Statistics of a metric are taken over the cases of a test set whose value is finite. A value is not finite
when the metric is undefined for the case (MONAI gives NaN for HD95 when the prediction or the reference is
empty, and NaN for Dice and relative volume error when the reference is empty); such values stay
in the per-case CSV as ``nan``/``inf`` and are counted in the summary (``cases - failed - finite``), never
averaged. Cases that failed carry an ``error`` and no metric value.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scripts.data.writers import atomic_path, refuse_existing

__all__ = [
    "CASE_FIELDS",
    "REPORT_FILES",
    "SUMMARY_FIELDS",
    "MetricColumn",
    "check_outputs",
    "finite_statistics",
    "summarize",
    "write_report",
]

REPORT_FILES = {"cases": "per_case.csv", "summary": "summary.csv", "markdown": "report.md", "plot": "boxplot.png"}
CASE_FIELDS = ("dataset", "case", "image", "label")
SUMMARY_FIELDS = ("dataset", "metric", "cases", "failed", "finite", "mean", "std", "median")


@dataclass(frozen=True)
class MetricColumn:
    """A reported metric: ``key`` in the CSVs (e.g. ``hd95_mm``), ``title`` for tables and plots, decimals shown."""

    key: str
    title: str
    digits: int = 3
    signed: bool = False

    def format(self, value: float) -> str:
        return f"{value:{'+' if self.signed else ''}.{self.digits}f}"


def finite_statistics(values: Sequence[float]) -> dict[str, float | int]:
    """``finite`` (count), ``mean``, ``std`` (population, ddof 0) and ``median`` of the finite ``values``; NaN without any."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    stats = (finite.mean(), finite.std(), np.median(finite)) if finite.size else (np.nan,) * 3
    return {"finite": int(finite.size), **{name: float(value) for name, value in zip(("mean", "std", "median"), stats)}}


def summarize(rows: Sequence[dict[str, Any]], columns: Sequence[MetricColumn], datasets: Sequence[str]) -> list[dict]:
    """
    One summary row per dataset and metric (``SUMMARY_FIELDS``): ``cases`` rows of the dataset, ``failed``
    of them with an error, ``finite`` with a finite value; mean, std (population, ddof 0) and median of
    those finite values, NaN when there is none.
    """
    summary = []
    for dataset in datasets:
        cases = [row for row in rows if row["dataset"] == dataset]
        evaluated = [row for row in cases if not row.get("error")]
        for column in columns:
            stats = finite_statistics([row[column.key] for row in evaluated])
            summary.append(
                {
                    "dataset": dataset,
                    "metric": column.key,
                    "cases": len(cases),
                    "failed": len(cases) - len(evaluated),
                    **stats,
                }
            )
    return summary


def check_outputs(output_dir: str | Path, overwrite: bool = False) -> dict[str, Path]:
    """
    Paths of the report files in ``output_dir``.

    Raises:
        FileExistsError: naming the report files that exist, unless ``overwrite``.
    """
    paths = {kind: Path(output_dir) / name for kind, name in REPORT_FILES.items()}
    if not overwrite:
        refuse_existing(paths.values(), hint="choose another output_dir or pass --overwrite")
    return paths


def _atomic_write(path: Path, write: Callable[[Path], object], overwrite: bool) -> None:
    """``write(tmp)`` to a temporary file next to ``path``, then move it into place (``overwrite`` or new)."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        write(tmp)


def _csv(rows: Sequence[dict[str, Any]], fields: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fields), restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _markdown(
    rows: Sequence[dict[str, Any]], summary: list[dict], columns: Sequence[MetricColumn], datasets: dict[str, str], preamble: str
) -> str:
    stats = {(s["dataset"], s["metric"]): s for s in summary}
    lines = [
        preamble.rstrip(),
        "",
        "Each cell: mean +- std [median] over the cases with a finite value; `(k n/a)`: k cases whose value is",
        "undefined (NaN/inf, e.g. HD95 of an empty prediction), left out of that cell. Failed cases are listed below.",
        "",
        "| dataset | source | cases | " + " | ".join(column.title for column in columns) + " |",
        "|---" * (3 + len(columns)) + "|",
    ]
    for dataset, source in datasets.items():
        first = stats[(dataset, columns[0].key)]
        cases = f"{first['cases']}" + (f" ({first['failed']} failed)" if first["failed"] else "")
        cells = []
        for column in columns:
            s = stats[(dataset, column.key)]
            undefined = s["cases"] - s["failed"] - s["finite"]
            cell = "n/a" if not s["finite"] else (
                f"{column.format(s['mean'])} +- {s['std']:.{column.digits}f} [{column.format(s['median'])}]"
            )
            cells.append(cell + (f" ({undefined} n/a)" if undefined and s["finite"] else ""))
        lines.append(f"| {dataset} | {source} | {cases} | " + " | ".join(cells) + " |")
    failures = [row for row in rows if row.get("error")]
    if failures:
        lines += ["", "Failed cases:", ""]
        lines += [f"- {row['dataset']} / {row['case'] or '(test set)'}: {row['error']}" for row in failures]
    return "\n".join(lines) + "\n"


def _box_plot(rows: Sequence[dict[str, Any]], columns: Sequence[MetricColumn], datasets: Sequence[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(columns), figsize=(3.2 * len(columns), 4.2), dpi=100, squeeze=False)
    for ax, column in zip(axes[0], columns):
        per_dataset = []
        for dataset in datasets:
            values = np.asarray(
                [row[column.key] for row in rows if row["dataset"] == dataset and not row.get("error")], dtype=float
            )
            per_dataset.append(values[np.isfinite(values)])
        ax.boxplot(per_dataset, showfliers=False)
        for index, values in enumerate(per_dataset, start=1):  # every case as a point over its box
            ax.plot(index + np.linspace(-0.15, 0.15, len(values)), values, ".", color="tab:blue", alpha=0.6)
        if column.signed:
            ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_xticks(range(1, len(datasets) + 1))
        ax.set_xticklabels(datasets, rotation=35, ha="right", fontsize=8)
        ax.set_title(column.title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def write_report(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[MetricColumn],
    datasets: dict[str, str],
    output_dir: str | Path,
    preamble: str = "# Cross-source evaluation",
    overwrite: bool = False,
) -> dict[str, Path]:
    """
    Write the report files (``REPORT_FILES``) atomically into ``output_dir`` and return their paths.

    Args:
        rows: one dict per case: ``CASE_FIELDS``, every ``column.key`` (float) and ``error`` (empty if none).
        columns: the metrics, in report order.
        datasets: test-set name -> source description, in report order (sets without any row are listed too).
        preamble: Markdown written above the table (title, model, command).
        overwrite: replace existing report files; otherwise FileExistsError names the first existing one.
    """
    paths = check_outputs(output_dir, overwrite)
    paths["cases"].parent.mkdir(parents=True, exist_ok=True)
    summary = summarize(rows, columns, list(datasets))
    fields = (*CASE_FIELDS, *(column.key for column in columns), "error")
    _atomic_write(paths["cases"], lambda tmp: tmp.write_text(_csv(rows, fields)), overwrite)
    _atomic_write(paths["summary"], lambda tmp: tmp.write_text(_csv(summary, SUMMARY_FIELDS)), overwrite)
    markdown = _markdown(rows, summary, columns, datasets, preamble)
    _atomic_write(paths["markdown"], lambda tmp: tmp.write_text(markdown), overwrite)
    _atomic_write(paths["plot"], lambda tmp: _box_plot(rows, columns, list(datasets), tmp), overwrite)
    return paths
