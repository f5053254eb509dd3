"""Evaluation scores exactly the masks that inference writes, against the label files themselves."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from scripts.bundle import bundle_parser
from scripts.evaluation import CaseEvaluator
from scripts.phantom import write_dataset
from tests.bundle_cli import BUNDLE_ROOT


def test_evaluate_runs_the_inferer_and_post_processing_of_inference():
    evaluate, inference = bundle_parser(["train.yaml", "evaluate.yaml"]), bundle_parser(["inference.yaml"])
    inferer = evaluate.get_parsed_content("validate#inferer")
    reference = inference.get_parsed_content("inferer")
    assert (inferer.roi_size, inferer.sw_batch_size, inferer.overlap, inferer.mode) == (
        reference.roi_size, reference.sw_batch_size, reference.overlap, reference.mode
    )
    names = lambda parser, key: [type(t).__name__ for t in parser.get_parsed_content(key).transforms]  # noqa: E731
    shared = [
        "Activationsd",
        "ForegroundProbabilityd",
        "PredictionQualityd",
        "ResampleToInputd",
        "AsDiscreted",
        "KeepLargestComponentd",
    ]
    assert names(evaluate, "validate#postprocessing")[: len(shared)] == shared
    assert [n for n in names(inference, "postprocessing") if n in shared] == shared
    for key in (
        "keep_largest_component",
        "sw_batch_size",
        "sw_overlap",
        "resample_slab_voxels",
        "quality_boundary_voxels",
        "quality_volume_range_ml",
        "quality_max_uncertainty",
    ):
        assert evaluate[key] == inference[key], key


@pytest.mark.parametrize("domain", ["target_lowdose", "target_noncontrast"])
def test_the_evaluated_prediction_is_the_written_mask_voxel_for_voxel(tmp_path, domain):
    """LPS storage at 1.25 x 1.25 x 3 mm, and 5 mm slices: grids the 2 mm model resamples from and back to."""
    data = write_dataset(tmp_path / domain, domain, cases=1, seed=1000)
    entry = json.loads((data / "dataset.json").read_text())["training"][0]
    item = {key: str(data / entry[key]) for key in ("image", "label")}
    out = tmp_path / "masks"
    parser = bundle_parser(["inference.yaml"], {"dataset_dir": item["image"], "output_dir": str(out), "save_overlay": False})
    (record,) = parser.get_parsed_content("batch_inference").run()
    written = nib.load(str(out / f"{record.case}_seg.nii.gz"))
    evaluator = CaseEvaluator(BUNDLE_ROOT / "models" / "model.pt")
    metrics = evaluator(item)
    evaluated = evaluator.evaluator.state.output[0]["pred"]  # one-hot, RAS axis order, the label file's grid
    canonical = nib.as_closest_canonical(written)
    np.testing.assert_array_equal(evaluated[1].numpy().astype(np.uint8), np.asarray(canonical.dataobj))
    np.testing.assert_allclose(evaluated.affine.numpy(), canonical.affine, atol=1e-4)
    # and its Dice is that of the written mask against the label file
    mask, label = np.asarray(written.dataobj) > 0, np.asarray(nib.load(item["label"]).dataobj) > 0.5
    assert metrics["val_mean_dice"] == pytest.approx(2 * (mask & label).sum() / (mask.sum() + label.sum()), abs=1e-6)
    assert torch.isfinite(torch.tensor(metrics["val_hd95_mm"]))
