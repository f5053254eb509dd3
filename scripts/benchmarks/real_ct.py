"""
Real-CT plausibility checks of one or more models (``scripts.evaluation.real_ct``): numbers and overlays.

    python -m scripts.benchmarks.real_ct                     # the shipped model, ../shared/data/real_ct
    python -m scripts.benchmarks.real_ct --models '{"shipped": {}, "new": {"checkpoint": "runs/x/models/model.pt"}}'

Each model runs the bundle's default inference (``configs/inference.yaml``, plus the model's ``configs`` and
``overrides``, with its ``checkpoint``) on every real case into ``WORK_DIR/<model>/<case>/``, in a process of its own;
a mask already there is reused (inference never overwrites one). The masks inference wrote are checked
(``check_case``) and ``DOCS_DIR/real_ct_checks.md`` and ``.json`` report them with one overlay per model and case.
These are plausibility numbers (volume, overlap with other organs, distance from a landmark, Dice against a model-made
label), not accuracy: none of these scans has a hand-drawn pancreas.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from scripts.benchmarks.runs import bundle_run_args, run_logged
from scripts.bundle import BUNDLE_ROOT, run_command_line
from scripts.data.naming import output_path
from scripts.data.writers import atomic_path
from scripts.evaluation.real_ct import REAL_CASES, REAL_CT_DIR, TARGETS, check_case, meets_targets

__all__ = ["check_models", "main"]

MODEL_KEYS = ("checkpoint", "configs", "overrides")


def infer_once(model: dict, image: Path, out_dir: Path, threads: int) -> Path:
    """The pancreas mask of ``image`` by ``model``'s default inference in ``out_dir`` (run once, then reused).

    Raises:
        RuntimeError: when inference fails, naming its log.
    """
    mask = output_path(image, out_dir, "seg")
    if not mask.is_file():
        out_dir.mkdir(parents=True, exist_ok=True)
        settings = {"input_path": str(image), "output_dir": str(out_dir), "save_overlay": False}
        if model.get("checkpoint"):
            settings["checkpoint"] = str(Path(model["checkpoint"]).absolute())
        configs = ["inference.yaml", *model.get("configs", [])]
        args = bundle_run_args(configs, {**settings, **model.get("overrides", {})})
        run_logged(args, out_dir / "inference.log", threads)
    return mask


def check_models(models: dict, real_ct_dir: Path, work_dir: Path, docs_dir: Path, threads: int) -> list[dict]:
    """``check_case`` reports of every model on every real case, overlays in ``docs_dir``.

    Raises:
        ValueError: for a model setting other than ``MODEL_KEYS``.
    """
    reports = []
    for name, model in models.items():
        unknown = set(model) - set(MODEL_KEYS)
        if unknown:
            raise ValueError(f"model {name!r}: unknown settings {sorted(unknown)}; known: {', '.join(MODEL_KEYS)}")
        for case in REAL_CASES.values():
            mask = infer_once(model, real_ct_dir / case.image, work_dir / name / case.name, threads)
            overlay = docs_dir / f"real_ct_{name}_{case.name}.png"
            reports.append({"model": name, **check_case(case.name, real_ct_dir, mask, overlay)})
            print(f"{name} on {case.name}: {reports[-1]}", flush=True)
    return reports


def _cell(value, digits: int = 1) -> str:
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"


def report_markdown(reports: list[dict], models: dict) -> str:
    """The report: one row per model and case, the targets and what the numbers mean."""
    lines = [
        "# Real-CT plausibility checks",
        "",
        "Command: `python -m scripts.benchmarks.real_ct`. Default inference (configs/inference.yaml) of each model on "
        "the real CT in `../shared/data/real_ct` (not part of the bundle); the masks inference wrote are checked. "
        "None of these scans has a hand-drawn pancreas: the numbers say whether a mask can be a pancreas, not how "
        "accurate it is.",
        "",
        "Models: " + "; ".join(f"`{k}` {json.dumps(v) if v else '(models/model.pt)'}" for k, v in models.items()),
        "",
        "| model | case | volume (mL) | parts | in liver/spleen/kidneys (%) | in air (%) | outside body (%) | "
        "plausible (%) | distance to landmark (mm) | Dice, labelled slices | targets met |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in reports:
        percent = {k: None if r[k] is None else 100 * r[k] for k in ("inside_any_organ", "in_air", "outside_body",
                                                                     "plausible")}
        lines.append(
            f"| {r['model']} | {r['case']} | {_cell(r['volume_ml'])} | {r['components']} | "
            f"{_cell(percent['inside_any_organ'])} | {_cell(percent['in_air'])} | {_cell(percent['outside_body'])} | "
            f"{_cell(percent['plausible'])} | {_cell(r['landmark_distance_mm'], 0)} ({r['landmark']}) | "
            f"{_cell(r.get('dice_labelled_slices'), 3)} | {'yes' if meets_targets(r) else 'no'} |"
        )
    lines += [
        "",
        "Targets: " + "; ".join(f"{case}: " + ", ".join(f"{k} in [{lo:g}, {hi:g}]" for k, (lo, hi) in t.items())
                                for case, t in TARGETS.items()) + ".",
        "",
        "- `plausible`: the part of the mask in none of the organs the case has masks of (ircad_1.1: hand-drawn liver, "
        "spleen, kidneys; totalseg_b: TotalSegmentator's liver, spleen, stomach), not in air (< -500 HU) and inside "
        "the body. A mask in fat or muscle counts as plausible: look at the overlays.",
        "- Landmarks: ircad_1.1, the portal-splenic confluence traced on the hand-drawn portal venous system "
        "(`scripts.evaluation.plausibility.portal_confluence`; the pancreatic neck lies just in front of it, the "
        "centre of a real gland typically 2 to 5 cm to its left); totalseg_b, the centre of the model-made pancreas.",
        "- Dice on totalseg_b is against a model's label on the 4 slices that hold it, not ground truth.",
        "",
        "Overlays (red: prediction, green: reference pancreas, blue: liver, purple: spleen, orange: kidneys, cyan: "
        "stomach, yellow x: landmark): " + ", ".join(f"`real_ct_{r['model']}_{r['case']}.png`" for r in reports) + ".",
    ]
    private = [case for case in REAL_CASES.values() if not case.shareable]
    if private:
        lines += ["", "Overlays of " + ", ".join(f"{c.name} ({c.licence})" for c in private) + " show images whose "
                     "licence allows no modified copies: they stay beside the report, never in the repository."]
    return "\n".join(lines) + "\n"


def main(
    models: dict | str | None = None,
    real_ct_dir: str = str(REAL_CT_DIR),
    work_dir: str = str(BUNDLE_ROOT / "runs" / "real_ct"),
    docs_dir: str = str(BUNDLE_ROOT / "runs" / "real_ct" / "docs"),
    threads: int = os.cpu_count() or 1,
) -> None:
    """Check ``models`` (``{name: {"checkpoint": ..., "configs": [...], "overrides": {...}}}`` or its JSON; default:
    the shipped model) on the real cases and write the report.

    Raises:
        FileNotFoundError: when ``real_ct_dir`` is absent.
    """
    models = json.loads(models) if isinstance(models, str) else dict(models or {"shipped": {}})
    if not Path(real_ct_dir).is_dir():
        raise FileNotFoundError(f"{real_ct_dir} does not exist: the real CT samples are not beside the project")
    docs = Path(docs_dir)
    docs.mkdir(parents=True, exist_ok=True)
    reports = check_models(models, Path(real_ct_dir), Path(work_dir), docs, threads)
    with atomic_path(docs / "real_ct_checks.json") as tmp:
        tmp.write_text(json.dumps({"models": models, "reports": reports}, indent=1) + "\n")
    with atomic_path(docs / "real_ct_checks.md") as tmp:
        tmp.write_text(report_markdown(reports, models))
    print((docs / "real_ct_checks.md").read_text())


if __name__ == "__main__":
    run_command_line(main)
