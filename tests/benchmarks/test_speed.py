"""The speed benchmark's measuring parts: a child's wall time and own peak memory, stage timings, time to accuracy."""

from __future__ import annotations

import json
import sys

import nibabel as nib
import numpy as np
import pytest

from scripts.benchmarks.pipelines import run_pipeline
from scripts.benchmarks.speed import _time_to_accuracy, measure_process


def test_measure_process_reports_the_childs_own_peak_memory_and_output():
    big = measure_process([sys.executable, "-c", "x = bytearray(300 * 2**20); x[::4096] = b'1' * len(x[::4096]); print('done')"])
    small = measure_process([sys.executable, "-c", "print('small')"])
    assert big["peak_rss_mb"] > small["peak_rss_mb"] + 250
    assert (big["stdout"], small["stdout"]) == ("done", "small")
    assert big["wall_s"] > 0
    with pytest.raises(RuntimeError, match="failed"):
        measure_process([sys.executable, "-c", "raise SystemExit(3)"])


def test_the_bundle_pipeline_times_every_stage_and_writes_the_mask(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHMARK_LAUNCH", "0")
    ct = np.full((80, 70, 40), -900, np.int16)
    ct[20:60, 15:55, 5:35] = 40
    image = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(ct, np.diag([1.5, 1.5, 2.5, 1.0])), str(image))
    timings = run_pipeline("bundle", [str(image)], str(tmp_path / "out"), str(tmp_path / "t.json"))
    (case,) = timings["cases"]
    assert {"read", "preprocess", "sliding_window", "post", "invert", "write", "overlay", "total"} <= set(case)
    assert case["total"] == pytest.approx(sum(v for k, v in case.items() if k not in ("input", "total")), abs=0.01)
    assert json.loads((tmp_path / "t.json").read_text()) == timings
    written = nib.load(str(tmp_path / "out" / "ct_seg.nii.gz"))
    assert written.shape == ct.shape and np.allclose(written.affine, np.diag([1.5, 1.5, 2.5, 1.0]))
    assert (tmp_path / "out" / "ct_seg_overlay.png").is_file()
    with pytest.raises(KeyError, match="known: bundle"):
        run_pipeline("nnunet", [str(image)], str(tmp_path / "x"), str(tmp_path / "x.json"))


def test_time_to_accuracy_reads_the_validation_curves(tmp_path):
    def run(name, values, seconds):
        folder = tmp_path / "runs" / "cpu" / name
        folder.mkdir(parents=True)
        curve = [{"iteration": 100 * (i + 1), "val_mean_dice": v} for i, v in enumerate(values)]
        (folder / "scores.json").write_text(json.dumps({"validation_curve": curve, "train_seconds": seconds}))

    run("baseline_seed0", [0.5, 0.7, 0.8], 300)
    run("baseline_seed1", [0.6, 0.8, 0.82], 300)
    run("dualssl_seed0", [0.4, 0.79, 0.81], 600)
    run("dualssl_seed1", [0.3, 0.5, 0.6], 600)
    result = _time_to_accuracy(tmp_path)
    assert result["target_val_dice"] == pytest.approx(0.81)  # median of the baselines' final values
    # within 0.01 of 0.81: baseline seed 0 at iteration 300 of 300, seed 1 at 200 of 300
    assert result["variants"]["baseline"] == {"median_s": 250.0, "runs_reaching": "2/2"}
    # dualssl: seed 0 at 200 of 300 (400 s), seed 1 never: half the runs do not make a median
    assert result["variants"]["dualssl"] == {"median_s": None, "runs_reaching": "1/2"}
