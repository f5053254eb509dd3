"""
Cross-source evaluation: one model on several named labelled test sets, one report.

    python -m scripts.evaluation --test_sets configs/test_sets_phantom.yaml --checkpoint models/model.pt \
        --output_dir eval/cross_source

The test sets (phantom domains, MSD-style folders, datalists) are listed in a small YAML file, see
``scripts.evaluation.labelled_sets``. Every case is evaluated by the evaluate config's evaluator
(``configs/train.yaml`` + ``configs/evaluate.yaml``) in its original geometry: Dice, HD95 (mm), surface Dice
at ``surface_dice_tolerance_mm`` and the signed relative volume error. Writes ``per_case.csv``,
``summary.csv``, ``report.md`` and ``boxplot.png`` to ``output_dir`` (see ``scripts.evaluation.report``).
A test set or case that cannot be read is reported with the file and the reason; the others go on.
"""

from __future__ import annotations

import time
from pathlib import Path

from scripts.data.naming import case_name
from scripts.evaluation.evaluator import CaseError, CaseEvaluator
from scripts.evaluation.labelled_sets import read_test_sets
from scripts.evaluation.report import MetricColumn, check_outputs, write_report

__all__ = ["CONFIG_METRICS", "CrossSourceError", "main", "metric_columns"]

CONFIG_METRICS = ("val_mean_dice", "val_hd95_mm", "val_surface_dice", "val_relative_volume_error")
"""Metrics of the evaluate config's evaluator, in the order of ``metric_columns``."""


class CrossSourceError(RuntimeError):
    """Some test sets or cases could not be evaluated; the report (with their reasons) is written."""


def metric_columns(surface_dice_tolerance_mm: float) -> list[MetricColumn]:
    """The report columns, one per entry of ``CONFIG_METRICS``."""
    tolerance = f"{surface_dice_tolerance_mm:g}"
    return [
        MetricColumn("dice", "Dice"),
        MetricColumn("hd95_mm", "HD95 (mm)", digits=1),
        MetricColumn(f"surface_dice_{tolerance}mm", f"surface Dice ({tolerance} mm)"),
        MetricColumn("relative_volume_error", "relative volume error", signed=True),
    ]


def main(
    test_sets: str,
    checkpoint: str = "models/model.pt",
    output_dir: str = "eval/cross_source",
    data_dir: str = "data/cross_source",
    surface_dice_tolerance_mm: float = 1.0,
    roi_size: list[int] | None = None,
    overrides: dict | None = None,
    overwrite: bool = False,
) -> None:
    """
    Evaluate ``checkpoint`` on every test set of the ``test_sets`` file and write the report.

    Args:
        test_sets: YAML/JSON file naming the test sets (format: ``scripts.evaluation.labelled_sets``).
        checkpoint: ``network_def`` state dict (or training checkpoint with a ``model`` entry).
        output_dir: folder of the report; existing report files are kept unless ``overwrite``.
        data_dir: where phantom test sets are generated if missing.
        surface_dice_tolerance_mm: tolerance of the surface Dice, in mm.
        roi_size: sliding-window size; the config's (the training patch size) if not given.
        overrides: further overrides of the evaluate config, id -> value, e.g. ``{"device": "$torch.device('cpu')"}``.
        overwrite: replace an existing report.

    Raises:
        CrossSourceError: after the report is written, when a test set or a case could not be evaluated (the
            command then exits non-zero).
        FileExistsError, FileNotFoundError, ValueError: before any evaluation, for an existing report, a missing
            checkpoint or a bad test-set file.
    """
    sets = read_test_sets(test_sets)
    check_outputs(output_dir, overwrite)
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    columns = metric_columns(surface_dice_tolerance_mm)
    overrides = {**(overrides or {}), "surface_dice_tolerance_mm": float(surface_dice_tolerance_mm)}
    if roi_size is not None:
        overrides["roi_size"] = list(roi_size)
    start = time.perf_counter()
    evaluator = CaseEvaluator(checkpoint, overrides)
    rows: list[dict] = []
    for labelled_set in sets:
        try:
            items = labelled_set.resolve(data_dir)
        except Exception as error:  # a test set that cannot be listed is reported; the others go on
            reason = f"{type(error).__name__}: {error}"
            rows.append({"dataset": labelled_set.name, "case": "", "image": labelled_set.source, "error": reason})
            print(f"[{labelled_set.name}] FAILED: {reason}", flush=True)
            continue
        for item in items:
            image = item.get("image", "")
            row = {"dataset": labelled_set.name, "case": case_name(image), "image": image, "label": item.get("label", "")}
            try:
                values = evaluator(item)
                row.update({column.key: values[name] for column, name in zip(columns, CONFIG_METRICS)}, error="")
                status = ", ".join(f"{column.key} {row[column.key]:.3f}" for column in columns)
            except CaseError as error:
                row["error"] = str(error)
                status = f"FAILED: {error}"
            rows.append(row)
            print(f"[{labelled_set.name}] {row['case']}: {status}", flush=True)
    seconds = time.perf_counter() - start
    evaluated = sum(not row.get("error") for row in rows)
    preamble = (
        "# Cross-source evaluation\n\n"
        f"Model `{checkpoint}` on the test sets of `{test_sets}`: {evaluated} of {len(rows)} cases evaluated in "
        f"{seconds:.0f} s on {evaluator.evaluator.state.device}. Metrics in the original geometry of each case; "
        f"surface Dice at {surface_dice_tolerance_mm:g} mm; relative volume error (V_pred - V_ref) / V_ref."
    )
    datasets = {labelled_set.name: labelled_set.source for labelled_set in sets}
    paths = write_report(rows, columns, datasets, output_dir, preamble, overwrite)
    print(paths["markdown"].read_text())
    failed = [row for row in rows if row.get("error")]
    if failed:
        sets = sorted({row["dataset"] for row in failed if not row.get("case")})
        raise CrossSourceError(
            f"{len(failed)} of {len(rows)} rows failed ({len(sets)} test set(s) could not be listed: {sets}); "
            f"the report {paths['markdown']} gives each reason"
        )

