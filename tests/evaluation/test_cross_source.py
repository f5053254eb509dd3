"""Cross-source evaluation: the added metrics, the test-set file, and the report of a tiny two-set run."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from scripts.bundle import bundle_parser
from scripts.data.errors import InputError
from scripts.evaluation import REPORT_FILES, CaseError, CaseEvaluator, read_test_sets
from scripts.evaluation.cross_source import CrossSourceError, main, metric_columns
from scripts.evaluation.report import summarize
from scripts.metrics import RelativeVolumeErrorMetric
from scripts.phantom import write_dataset
from tests.bundle_cli import BUNDLE_ROOT

# the shipped model on a coarse grid and small windows: a few seconds per phantom case on 2 cores
FAST = {"pixdim": [4.0, 4.0, 4.0]}
ROI = [32, 32, 32]
COLUMNS = [column.key for column in metric_columns(1.0)]


def _one_hot(foreground: torch.Tensor, spacing: float = 1.0) -> MetaTensor:
    """(B=1, C=2, *S) one-hot of a boolean (*S) mask, with an isotropic ``spacing`` in its affine."""
    mask = foreground.float()[None]
    return MetaTensor(torch.cat([1 - mask, mask])[None], affine=torch.diag(torch.tensor([spacing] * 3 + [1.0])))


def _cube(start: int, size: int = 4, shape: int = 12) -> torch.Tensor:
    mask = torch.zeros(shape, shape, shape, dtype=torch.bool)
    mask[start : start + size, 4:8, 4:8] = True
    return mask


def _config_metrics(tolerance_mm: float) -> dict:
    """The metric functions of the evaluator of configs/evaluate.yaml, with ``surface_dice_tolerance_mm`` set."""
    parser = bundle_parser(["train.yaml", "evaluate.yaml"])
    parser["surface_dice_tolerance_mm"] = tolerance_mm
    handlers = {"val_mean_dice": "validate#key_metric#val_mean_dice"}
    handlers.update({name: f"validate#additional_metrics#{name}" for name in parser["validate#additional_metrics"]})
    return {name: parser.get_parsed_content(handler).metric_fn for name, handler in handlers.items()}


def test_relative_volume_error_is_signed_and_relative_to_the_reference():
    metric = RelativeVolumeErrorMetric(include_background=False)
    reference = _cube(2, size=2)  # 2 x 4 x 4 = 32 voxels
    larger, smaller = _cube(2, size=3), _cube(2, size=1)  # 48 and 16 voxels
    empty = torch.zeros_like(reference)
    values = [metric(_one_hot(p), _one_hot(reference)) for p in (larger, smaller, empty, reference)]
    assert [v.shape for v in values] == [(1, 1)] * 4
    assert [v.item() for v in values] == [0.5, -0.5, -1.0, 0.0]
    assert math.isnan(metric(_one_hot(larger), _one_hot(empty)).item()), "undefined for an empty reference"
    assert metric.aggregate().item() == pytest.approx((0.5 - 0.5 - 1.0 + 0.0) / 4), "NaN is left out of the mean"


def test_surface_dice_at_1mm_of_a_one_voxel_shift_depends_on_the_spacing():
    metric = _config_metrics(tolerance_mm=1.0)["val_surface_dice"]
    reference, shifted = _cube(2), _cube(3)
    # 1 mm voxels: every boundary voxel lies within 1 mm of the other boundary
    assert metric(_one_hot(shifted, 1.0), _one_hot(reference, 1.0)).item() == pytest.approx(1.0)
    # 2 mm voxels: of the 56 boundary voxels of each cube, 36 coincide with the other boundary, 20 are 2 mm away
    assert metric(_one_hot(shifted, 2.0), _one_hot(reference, 2.0)).item() == pytest.approx(36 * 2 / (56 * 2))
    assert _config_metrics(tolerance_mm=2.0)["val_surface_dice"](
        _one_hot(shifted, 2.0), _one_hot(reference, 2.0)
    ).item() == pytest.approx(1.0)


def test_empty_prediction_gives_dice_0_and_its_undefined_distances_are_counted_not_averaged():
    metrics = _config_metrics(tolerance_mm=1.0)
    reference, empty = _one_hot(_cube(2), 2.0), _one_hot(torch.zeros(12, 12, 12, dtype=torch.bool), 2.0)
    values = {name: metric(empty, reference).item() for name, metric in metrics.items()}
    assert values["val_mean_dice"] == 0.0 and values["val_surface_dice"] == 0.0
    assert values["val_relative_volume_error"] == -1.0
    assert math.isnan(values["val_hd95_mm"])
    columns = metric_columns(1.0)
    rows = [
        {"dataset": "a", "dice": 0.0, "hd95_mm": values["val_hd95_mm"], "surface_dice_1mm": 0.0,
         "relative_volume_error": -1.0, "error": ""},
        {"dataset": "a", "dice": 0.8, "hd95_mm": 4.0, "surface_dice_1mm": 0.7, "relative_volume_error": 0.1,
         "error": ""},
        {"dataset": "a", "error": "cannot read label x.nii.gz: EOFError"},
    ]
    summary = {s["metric"]: s for s in summarize(rows, columns, ["a"])}
    assert summary["dice"]["mean"] == pytest.approx(0.4) and summary["dice"]["finite"] == 2
    assert summary["hd95_mm"]["finite"] == 1 and summary["hd95_mm"]["mean"] == summary["hd95_mm"]["median"] == 4.0
    assert {s["cases"] for s in summary.values()} == {3} and {s["failed"] for s in summary.values()} == {1}


def test_test_set_files_are_validated_and_resolved_against_their_folder(tmp_path):
    shipped = read_test_sets(BUNDLE_ROOT / "configs" / "test_sets_phantom.yaml")
    assert [s.name for s in shipped] == ["source", "target_arterial", "target_noncontrast", "target_lowdose"]
    assert all(s.phantom_domain == s.name and s.cases == 8 and s.seed == 1000 for s in shipped)
    good = tmp_path / "sets.yaml"
    good.write_text("a: {dataset_dir: folder}\nb: {datalist: lists/list.json}\nc: {phantom_domain: source}\n")
    a, b, c = read_test_sets(good)
    assert (a.dataset_dir, b.datalist) == (tmp_path / "folder", tmp_path / "lists" / "list.json")
    assert (c.cases, c.seed) == (8, 1000)
    for content, message in [
        ("a: {dataset_dir: x, datalist: y}", "exactly one"),
        ("a: {phantom_domain: nowhere}", "unknown phantom domain"),
        ("a: {dataset_dir: x, cases: 3}", "phantom_domain entries only"),
        ("a: {dataset_dir: x, label_key: y}", "unknown key"),
        ("a: /data/x", "expected a mapping"),
    ]:
        bad = tmp_path / "bad.yaml"
        bad.write_text(content)
        with pytest.raises(ValueError, match=message) as error:
            read_test_sets(bad)
        assert str(bad) in str(error.value) and "'a'" in str(error.value)


def test_datalists_list_image_label_pairs_relative_to_their_folder(tmp_path):
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "list.json").write_text(json.dumps([{"image": "a.nii.gz", "label": "../b.nii.gz"}, "c.nii"]))
    (tmp_path / "msd").mkdir()
    (tmp_path / "msd" / "dataset.json").write_text(
        json.dumps({"training": [{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}], "test": ["y"]})
    )
    (tmp_path / "sets.yaml").write_text("l: {datalist: lists/list.json}\nm: {dataset_dir: msd}\nn: {dataset_dir: none}\n")
    listed, msd, missing = read_test_sets(tmp_path / "sets.yaml")
    assert listed.resolve(tmp_path) == [
        {"image": str(tmp_path / "lists" / "a.nii.gz"), "label": str(tmp_path / "b.nii.gz")},
        {"image": str(tmp_path / "lists" / "c.nii")},  # no label: reported as a failed case
    ]
    assert msd.resolve(tmp_path) == [
        {"image": str(tmp_path / "msd" / "imagesTr" / "x.nii.gz"), "label": str(tmp_path / "msd" / "labelsTr" / "x.nii.gz")}
    ]
    with pytest.raises(InputError, match=f"{tmp_path / 'none' / 'dataset.json'}: file not found"):
        missing.resolve(tmp_path)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A tiny report: 2 phantom ``source`` cases and an MSD folder with 2 cases and one unreadable label."""
    root = tmp_path_factory.mktemp("cross_source")
    hospital = write_dataset(root / "hospital", domain="target_lowdose", cases=2, seed=7)
    broken = hospital / "labelsTr" / "broken.nii.gz"
    valid = (hospital / "labelsTr" / "target_lowdose_000.nii.gz").read_bytes()
    broken.write_bytes(valid[: len(valid) // 2])  # truncated gzip
    meta = json.loads((hospital / "dataset.json").read_text())
    meta["training"].append({"image": "./imagesTr/target_lowdose_000.nii.gz", "label": "./labelsTr/broken.nii.gz"})
    (hospital / "dataset.json").write_text(json.dumps(meta))
    sets = root / "sets.yaml"
    sets.write_text("phantom: {phantom_domain: source, cases: 2, seed: 1000}\nhospital: {dataset_dir: hospital}\n")
    arguments = {
        "test_sets": str(sets),
        "checkpoint": str(BUNDLE_ROOT / "models" / "model.pt"),
        "output_dir": str(root / "report"),
        "data_dir": str(root / "data"),
        "roi_size": ROI,
        "overrides": FAST,
    }
    with pytest.raises(CrossSourceError, match=r"1 of 5 rows failed \(0 test set\(s\) could not be listed"):
        main(**arguments)  # the report is written, then the command fails: one label cannot be read
    with open(root / "report" / REPORT_FILES["cases"]) as f:
        cases = list(csv.DictReader(f))
    with open(root / "report" / REPORT_FILES["summary"]) as f:
        summary = list(csv.DictReader(f))
    return root, arguments, cases, summary


@pytest.mark.slow
def test_report_lists_every_case_and_names_the_unreadable_file(report):
    root, _, cases, _ = report
    assert [(row["dataset"], row["case"]) for row in cases] == [
        ("phantom", "source_000"),
        ("phantom", "source_001"),
        ("hospital", "target_lowdose_000"),
        ("hospital", "target_lowdose_001"),
        ("hospital", "target_lowdose_000"),
    ]
    failed = cases[-1]
    assert failed["error"].startswith(f"cannot read label {root / 'hospital' / 'labelsTr' / 'broken.nii.gz'}: ")
    assert "EOFError" in failed["error"] and all(failed[key] == "" for key in COLUMNS)
    for row in cases[:-1]:
        assert row["error"] == ""
        values = {key: float(row[key]) for key in COLUMNS}
        assert 0.0 <= values["dice"] <= 1.0 and 0.0 <= values["surface_dice_1mm"] <= 1.0
        assert values["relative_volume_error"] >= -1.0 and values["hd95_mm"] >= 0.0
    assert (root / "data" / "phantom_source_seed1000_2cases" / "dataset.json").is_file(), "phantom set generated"


@pytest.mark.slow
def test_summary_statistics_are_those_of_the_per_case_values(report):
    _, _, cases, summary = report
    assert [(s["dataset"], s["metric"]) for s in summary] == [(d, m) for d in ("phantom", "hospital") for m in COLUMNS]
    for s in summary:
        rows = [row for row in cases if row["dataset"] == s["dataset"]]
        values = np.array([float(row[s["metric"]]) for row in rows if not row["error"]])
        assert (int(s["cases"]), int(s["failed"]), int(s["finite"])) == (
            len(rows), sum(bool(row["error"]) for row in rows), np.isfinite(values).sum())
        finite = values[np.isfinite(values)]
        assert float(s["mean"]) == pytest.approx(finite.mean(), abs=1e-12)
        assert float(s["median"]) == pytest.approx(np.median(finite), abs=1e-12)
        assert float(s["std"]) == pytest.approx(finite.std(), abs=1e-12)


@pytest.mark.slow
def test_markdown_and_box_plot_are_written_and_never_overwritten(report):
    root, arguments, _, summary = report
    out = root / "report"
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES.values()), "no temporary file left"
    markdown = (out / REPORT_FILES["markdown"]).read_text()
    assert "| dataset | source | cases | Dice | HD95 (mm) | surface Dice (1 mm) | relative volume error |" in markdown
    dice = next(s for s in summary if s["dataset"] == "phantom" and s["metric"] == "dice")
    assert f"| phantom | phantom:source | 2 | {float(dice['mean']):.3f} +- " in markdown
    assert "| 3 (1 failed) |" in markdown and "broken.nii.gz" in markdown
    assert (out / REPORT_FILES["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(FileExistsError, match="--overwrite"):
        main(**arguments)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.slow
def test_a_case_that_fails_inside_the_engine_is_reported_and_the_next_one_still_runs(report):
    root, arguments, cases, _ = report
    evaluator = CaseEvaluator(arguments["checkpoint"], {"roi_size": ROI, "surface_dice_tolerance_mm": 1.0, **FAST})
    folder = root / "data" / "phantom_source_seed1000_2cases"
    item = {"image": str(folder / "imagesTr" / "source_001.nii.gz"), "label": str(folder / "labelsTr" / "source_001.nii.gz")}

    def fail(*args, **kwargs):
        raise RuntimeError("out of memory")

    called = evaluator.evaluator.network  # what the sliding window calls (ONNX Runtime on CPU, else the network)
    called.forward = fail
    with pytest.raises(CaseError, match=r"evaluating .*source_001.nii.gz failed: RuntimeError: out of memory"):
        evaluator(item)
    del called.forward  # the failure is over: the same engine must evaluate, not silently skip
    values = evaluator(item)
    expected = next(row for row in cases if row["case"] == "source_001")
    assert values["val_mean_dice"] == pytest.approx(float(expected["dice"]))
    assert values["val_relative_volume_error"] == pytest.approx(float(expected["relative_volume_error"]))


def test_the_command_refuses_a_misspelt_flag_before_it_evaluates_anything(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "scripts.evaluation", "--test_sets", str(BUNDLE_ROOT / "configs" / "test_sets_phantom.yaml"),
         "--checkpiont", "x.pt", "--output_dir", str(tmp_path / "report")],
        cwd=BUNDLE_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 1
    assert "error: unknown option 'checkpiont' (did you mean 'checkpoint'?)" in result.stderr
    assert not (tmp_path / "report").exists()


def test_a_datalist_set_reads_the_sections_it_names_and_warns_about_the_others(tmp_path, caplog):
    (tmp_path / "dl.json").write_text(json.dumps({
        "training": [{"image": "t.nii.gz", "label": "tl.nii.gz"}],
        "validation": [{"image": "v.nii.gz", "label": "vl.nii.gz"}],
        "test": [{"image": "x.nii.gz", "label": "xl.nii.gz"}, {"image": "y.nii.gz"}],
    }))
    (tmp_path / "sets.yaml").write_text("default: {datalist: dl.json}\nheld_out: {datalist: dl.json, sections: [test]}\n")
    default, held_out = read_test_sets(tmp_path / "sets.yaml")
    assert [item["image"] for item in default.resolve(tmp_path)] == [str(tmp_path / "t.nii.gz")]
    assert "not evaluated: validation (1 cases), test (2 cases)" in caplog.text
    assert default.source == f"{tmp_path / 'dl.json'} (training)"
    assert [item["image"] for item in held_out.resolve(tmp_path)] == [str(tmp_path / "x.nii.gz"), str(tmp_path / "y.nii.gz")]
    (tmp_path / "bad.yaml").write_text("p: {phantom_domain: source, sections: [test]}\n")
    with pytest.raises(ValueError, match="sections apply to dataset_dir and datalist entries only"):
        read_test_sets(tmp_path / "bad.yaml")


def test_a_test_set_file_that_is_not_yaml_is_refused_with_its_name_and_line(tmp_path):
    path = tmp_path / "sets.yaml"
    path.write_text("source: {phantom_domain: source\nother: [\n")
    with pytest.raises(ValueError, match=f"^{path} is not valid YAML at line 2, column 6"):
        read_test_sets(path)
