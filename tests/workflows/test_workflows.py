"""The real train, evaluate and inference configs, run through ``monai.bundle`` with overrides for a tiny run."""

from __future__ import annotations

import csv
import json
import re
import signal
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pytest
import torch

from scripts.bundle import bundle_parser
from tests.bundle_cli import BUNDLE_ROOT, run_bundle

pytestmark = pytest.mark.slow

TINY = {
    "max_epochs": 6,
    "val_interval": 3,
    "roi_size": [32, 32, 32],
    "num_workers": 0,
    "ssl_start_iteration": 1,
    "ssl_rampup_iterations": 0,
    "phantom_cases": 3,
    "val_fraction": 0.34,
}
LOSS_TERMS = ("loss_segmentation", "loss_contrastive", "loss_restoration")


def _network_def():
    parser = bundle_parser(["inference.yaml"])
    return parser.get_parsed_content("network_def")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny DualSSL training run that also generates its phantom data set (the default data path)."""
    root = tmp_path_factory.mktemp("train")
    result = run_bundle(
        "run",
        ["train.yaml"],
        phantom_dir=str(root / "phantom_source"),
        output_dir=str(root / "run"),
        **TINY,
    )
    return root, result.stdout + result.stderr


def test_train_generates_the_phantom_and_writes_checkpoints(trained):
    root, _ = trained
    assert (root / "phantom_source" / "dataset.json").is_file()
    assert len(list((root / "phantom_source" / "imagesTr").glob("*.nii.gz"))) == TINY["phantom_cases"]
    models = root / "run" / "models"
    assert (models / "model.pt").is_file() and (models / "checkpoint_final.pt").is_file()
    assert list((root / "run").glob("events.out.tfevents.*")), "no TensorBoard events"


def test_best_model_is_a_plain_network_def_state_dict(trained):
    root, _ = trained
    state = torch.load(root / "run" / "models" / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert not any(k.startswith(("projection", "restoration", "ssl_heads")) for k in state)
    network = _network_def()
    network.load_state_dict(state, strict=True)
    final = torch.load(root / "run" / "models" / "checkpoint_final.pt", weights_only=True)
    assert {"model", "ssl_heads", "optimizer", "lr_scheduler"} <= set(final)


def test_training_logs_and_lowers_every_loss_term(trained):
    _, log = trained
    history = {term: [float(v) for v in re.findall(rf"{term}: ([0-9.]+)", log)] for term in LOSS_TERMS}
    for term, values in history.items():
        assert len(values) >= 6, f"{term} is not logged every iteration"
        first, last = np.mean(values[:3]), np.mean(values[-3:])
        assert last < first, f"{term} did not decrease: {first:.4f} -> {last:.4f}"
    assert re.search(r"contrastive_skipped: [0-9.]+", log)
    assert "val_mean_dice" in log


def test_trained_weights_export_to_torchscript(trained, tmp_path):
    root, _ = trained
    ts_path = tmp_path / "model.ts"
    run_bundle(
        "ckpt_export",
        ["inference.yaml"],
        net_id="network_def",
        filepath=str(ts_path),
        ckpt_file=str(root / "run" / "models" / "model.pt"),
    )
    scripted = torch.jit.load(str(ts_path))
    network = _network_def()
    network.load_state_dict(torch.load(root / "run" / "models" / "model.pt", weights_only=True))
    x = torch.rand(1, 1, 32, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), network.eval()(x))


def test_evaluate_writes_per_case_metrics(trained, tmp_path):
    root, _ = trained
    out = tmp_path / "eval"
    evaluate = dict(
        checkpoint=str(root / "run" / "models" / "model.pt"),
        phantom_dir=str(tmp_path / "phantom_test"),
        output_dir=str(out),
        phantom_cases=2,
        roi_size=[32, 32, 32],
        num_workers=0,
    )
    run_bundle("run", ["train.yaml", "evaluate.yaml"], **evaluate)
    for metric in ("val_mean_dice", "val_hd95_mm", "val_surface_dice"):
        with open(out / f"{metric}_raw.csv") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 2, metric
        assert all(row["filename"].endswith(".nii.gz") for row in rows)
        values = [float(row["class0"]) for row in rows]
        if metric != "val_hd95_mm":
            assert all(0.0 <= v <= 1.0 for v in values), (metric, values)
        else:
            assert all(v >= 0.0 or np.isnan(v) for v in values)
        assert (out / f"{metric}_summary.csv").is_file()
    assert (out / "metrics.csv").is_file()
    assert not list(out.glob(".partial-*")), "staging folder left behind"
    # a second evaluation into the same folder is refused before it runs and leaves the report as it was
    report = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(AssertionError, match="exist from an earlier run; set overwrite to true to replace the earlier report"):
        run_bundle("run", ["train.yaml", "evaluate.yaml"], **evaluate)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == report


def _assert_same_geometry(image_file, mask_file):
    image, mask = nib.load(str(image_file)), nib.load(str(mask_file))
    assert mask.shape == image.shape
    np.testing.assert_allclose(mask.affine, image.affine, atol=1e-4)
    values = np.unique(np.asarray(mask.dataobj))
    assert set(values.tolist()) <= {0, 1}


def test_inference_on_a_folder_keeps_geometry_and_writes_an_overlay(trained, tmp_path):
    root, _ = trained
    images = sorted((root / "phantom_source" / "imagesTr").glob("*.nii.gz"))
    out = tmp_path / "out"
    run_bundle(
        "run",
        ["inference.yaml"],
        input_path=str(root / "phantom_source" / "imagesTr"),
        output_dir=str(out),
        checkpoint=str(root / "run" / "models" / "model.pt"),
        roi_size=[32, 32, 32],
    )
    for image in images:
        _assert_same_geometry(image, out / image.name.replace(".nii.gz", "_seg.nii.gz"))
        assert (out / image.name.replace(".nii.gz", "_seg_overlay.png")).is_file()
    with open(out / "summary.csv") as f:
        assert [row["status"] for row in csv.DictReader(f)] == ["ok"] * len(images)
    assert not list(out.glob("*.partial*")), "temporary files left behind"


def test_inference_on_an_lps_file_and_a_datalist(trained, tmp_path):
    root, _ = trained
    from scripts.phantom import write_dataset

    data = write_dataset(tmp_path / "lowdose", domain="target_lowdose", cases=1, seed=5)
    image = next((data / "imagesTr").glob("*.nii.gz"))
    assert nib.aff2axcodes(nib.load(str(image)).affine) != ("R", "A", "S")
    for input_path, out in ((image, tmp_path / "single"), (data / "dataset.json", tmp_path / "datalist")):
        run_bundle(
            "run",
            ["inference.yaml"],
            input_path=str(input_path),
            output_dir=str(out),
            checkpoint=str(root / "run" / "models" / "model.pt"),
            roi_size=[32, 32, 32],
        )
        _assert_same_geometry(image, out / image.name.replace(".nii.gz", "_seg.nii.gz"))


def test_inference_never_overwrites_a_finished_case(trained, tmp_path):
    root, _ = trained
    image = sorted((root / "phantom_source" / "imagesTr").glob("*.nii.gz"))[0]
    out = tmp_path / "out"
    args = dict(input_path=str(image), output_dir=str(out), checkpoint=str(root / "run" / "models" / "model.pt"),
                roi_size=[32, 32, 32])
    run_bundle("run", ["inference.yaml"], **args)
    finished = {p.name: p.read_bytes() for p in out.iterdir() if not p.name.startswith(("summary", "."))}
    result = run_bundle("run", ["inference.yaml"], **args)
    assert {p.name: p.read_bytes() for p in out.iterdir() if not p.name.startswith(("summary", "."))} == finished
    assert "skipping" in result.stdout + result.stderr


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_an_interrupted_run_writes_its_summary_and_the_rerun_finishes_the_cases(trained, tmp_path, signal_number):
    """A real monai.bundle run stopped by a signal while the second of three cases runs (first manifest = trigger)."""
    root, _ = trained
    cases = tmp_path / "cases"
    cases.mkdir()
    images = sorted((root / "phantom_source" / "imagesTr").glob("*.nii.gz"))
    for image in images:
        (cases / image.name).symlink_to(image)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(BUNDLE_ROOT / "configs" / "inference.yaml"),
               "--input_path", str(cases), "--output_dir", str(out), "--save_probability", "True", "--save_entropy", "True"]
    # a child inherits an ignored SIGINT (a CI job started in the background of a non-interactive shell), and
    # Python then keeps ignoring it: the run gets the default disposition, as from an interactive terminal
    process = subprocess.Popen(command, cwd=BUNDLE_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               preexec_fn=_default_sigint)
    first = out / images[0].name.replace(".nii.gz", "_seg_manifest.json")
    deadline = time.monotonic() + 300
    while not first.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode != 0, "an interrupted run must not report success"
    report = json.loads((out / "summary.json").read_text())
    statuses = [case["status"] for case in report["cases"]]
    done = next(i for i, status in enumerate(statuses) if status != "ok")  # the signal may come before or in a case
    assert 1 <= done < len(images), (statuses, stderr[-2000:])
    assert statuses[done] in ("interrupted", "not-run") and set(statuses[done + 1 :]) <= {"not-run"}, statuses
    assert report["interrupted"] == f"interrupted by {signal_number.name}"
    assert not list(out.glob(".partial*")), "the staging folder of the interrupted case is removed"
    for image in images[done:]:
        stem = image.name.replace(".nii.gz", "")
        assert not list(out.glob(f"{stem}_*")), "an unfinished case leaves no output"
    rerun = subprocess.run(command, cwd=BUNDLE_ROOT, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    report = json.loads((out / "summary.json").read_text())
    assert [case["status"] for case in report["cases"]] == ["skipped-existing"] * done + ["ok"] * (len(images) - done)
    for image in images:
        stem = image.name.replace(".nii.gz", "")
        manifest = json.loads((out / f"{stem}_seg_manifest.json").read_text())
        assert manifest["outputs"] == [f"{stem}_seg.nii.gz", f"{stem}_prob.nii.gz", f"{stem}_entropy.nii.gz",
                                       f"{stem}_seg_overlay.png"]
