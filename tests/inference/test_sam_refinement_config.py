"""configs/sam_refinement.yaml over inference.yaml: off without a checkpoint (and says why), and with a predictor the
boxes of each network-grid slice, the refined mask on the input's voxels (an LPS case) through the usual outputs."""

from __future__ import annotations

import logging

import nibabel as nib
import numpy as np

from scripts.bundle import bundle_parser
from scripts.transforms import ForegroundProbabilityd, SamBoxRefined
from tests.bundle_cli import BUNDLE_ROOT
from tests.inference import test_inference_io
from tests.inference.test_inference_io import TINY_NET, _ct_volume, _nifti
from tests.transforms.test_sam_refinement import RecordingBoxPredictor

LPS = np.array([[-2.0, 0, 0, 30], [0, -2.0, 0, 20], [0, 0, 2.0, -10], [0, 0, 0, 1]])
threshold_model = test_inference_io.threshold_model  # the 3D threshold model fixture
# an L in slices 2..5: rows (x) 4..8 at columns (y) 5..9, and rows 4..5 out to column 13
L_SHAPE = [(slice(4, 9), slice(5, 10), slice(2, 6)), (slice(4, 6), slice(10, 14), slice(2, 6))]


def _parser(model, image, out, **overrides):
    parser = bundle_parser(["inference.yaml", "sam_refinement.yaml"])
    parser.update({"bundle_root": str(BUNDLE_ROOT), "input_path": str(image), "output_dir": str(out),
                   "checkpoint": str(model), "network_def": TINY_NET, "roi_size": [16, 16, 16],
                   "keep_largest_component": False, **overrides})
    return parser


def _refinement(parser) -> SamBoxRefined:
    step = parser.get_parsed_content("postprocessing").transforms[1]
    assert isinstance(step.transforms[0], ForegroundProbabilityd), "inference.yaml's step 1 is still the probability"
    return step.transforms[1]


def test_without_a_checkpoint_refinement_is_off_and_the_outputs_are_inference_yamls(tmp_path, threshold_model, caplog):
    image = _nifti(tmp_path / "ct.nii.gz", _ct_volume((20, 18, 9), blobs=L_SHAPE), LPS)
    with caplog.at_level(logging.WARNING):
        parser = _parser(threshold_model, image, tmp_path / "out")
        assert _refinement(parser).predictor is None
    assert "SAM refinement is off: no sam_checkpoint: SAM 2 weights are not shipped" in caplog.text
    parser.get_parsed_content("batch_inference").run()
    expected = np.zeros((20, 18, 9), np.uint8)
    for blob in L_SHAPE:
        expected[blob] = 1
    np.testing.assert_array_equal(np.asarray(nib.load(str(tmp_path / "out" / "ct_seg.nii.gz")).dataobj), expected)


def test_boxes_come_from_the_network_grid_slices_and_masks_land_on_the_input_voxels(tmp_path, threshold_model):
    volume = _ct_volume((20, 18, 9), blobs=L_SHAPE)
    image = _nifti(tmp_path / "ct.nii.gz", volume, LPS)
    parser = _parser(threshold_model, image, tmp_path / "out", sam_box_margin=0)
    predictor = RecordingBoxPredictor()
    _refinement(parser).predictor = predictor
    records = parser.get_parsed_content("batch_inference").run()
    assert [r.status for r in records] == ["ok"]
    (slices, boxes), = predictor.calls
    # network grid: RAS (the file's x and y flipped), the 2-voxel air border cropped: x' = 17 - x, y' = 15 - y
    assert slices.shape == (9, 16, 14) and sorted(boxes) == [2, 3, 4, 5]
    for z in boxes:
        np.testing.assert_array_equal(boxes[z], [15 - 13, 17 - 8, 15 - 5, 17 - 4])
        assert slices[z][17 - 8 : 17 - 4 + 1, 15 - 9 : 15 - 5 + 1].min() > 0.6, "the slice shown is the blob's"
    # the refined mask (the stand-in's filled box) on the input's voxels: rows 4..8, columns 5..13, slices 2..5
    out = nib.load(str(tmp_path / "out" / "ct_seg.nii.gz"))
    np.testing.assert_allclose(out.affine, LPS, atol=1e-6)
    expected = np.zeros(volume.shape, np.uint8)
    expected[4:9, 5:14, 2:6] = 1
    np.testing.assert_array_equal(np.asarray(out.dataobj), expected)
