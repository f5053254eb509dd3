"""SAM box-prompt refinement: boxes from the right slice in SAM's axis order, masks back on the right voxels, the
off switch, SAM 2's frame plumbing (stand-in predictor) and the real SAM 2 architecture with random weights."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from scripts.networks import Sam2BoxPredictor, build_sam2_video_predictor
from scripts.transforms import SamBoxRefined, slice_boxes
from tests.sam2_stand_in import StandInVideoPredictor


def _l_shape(shape=(10, 12, 5), z=3) -> np.ndarray:
    """An L in slice z: rows (x) 2..6 at columns (y) 3..4, and row 6 out to column 8."""
    mask = np.zeros(shape, bool)
    mask[2:7, 3:5, z] = True
    mask[6, 3:9, z] = True
    return mask


def test_slice_boxes_are_column_row_in_sams_order_and_clipped():
    mask = _l_shape()
    mask[0, 11, 1] = True  # one pixel at the corner (x 0, y 11) of slice 1
    boxes = slice_boxes(mask)
    assert sorted(boxes) == [1, 3]
    # (x0, y0, x1, y1) = (first column y, first row x, last column, last row)
    np.testing.assert_array_equal(boxes[3], [3, 2, 8, 6])
    np.testing.assert_array_equal(boxes[1], [11, 0, 11, 0])
    np.testing.assert_array_equal(slice_boxes(mask, margin=2)[1], [9, 0, 11, 2])
    assert sorted(slice_boxes(mask, min_pixels=2)) == [3]
    with pytest.raises(ValueError, match="X, Y, Z"):
        slice_boxes(mask[..., 0])


class RecordingBoxPredictor:
    """Records the slices and boxes it is given and answers each box filled."""

    def __init__(self):
        self.calls = []

    def __call__(self, slices, boxes):
        self.calls.append((np.array(slices), {k: np.array(v) for k, v in boxes.items()}))
        out = {}
        for k, (x0, y0, x1, y1) in boxes.items():
            mask = np.zeros(slices.shape[1:], bool)
            mask[int(y0) : int(y1) + 1, int(x0) : int(x1) + 1] = True
            out[k] = mask
        return out


def test_the_refined_mask_replaces_the_prompted_slice_only():
    coarse = torch.as_tensor(_l_shape(), dtype=torch.float32)[None] * 0.9
    coarse[0, 5, 5, 0] = 0.9  # a one-pixel slice: below min_pixels, left as it is
    image = torch.rand(1, 10, 12, 5)
    predictor = RecordingBoxPredictor()
    out = SamBoxRefined("pred", predictor=predictor, min_pixels=2)({"pred": coarse, "image": image})["pred"]
    (slices, boxes), = predictor.calls
    assert slices.shape == (5, 10, 12), "(Z, X, Y): axial slices of X rows and Y columns"
    np.testing.assert_array_equal(slices[3], image[0, :, :, 3].numpy())
    assert sorted(boxes) == [3]
    np.testing.assert_array_equal(boxes[3], [3, 2, 8, 6])
    expected = coarse.clone()
    expected[0, :, :, 3] = 0
    expected[0, 2:7, 3:9, 3] = 1  # the box, rows x 2..6, columns y 3..8
    torch.testing.assert_close(out, expected)


def test_without_a_predictor_refinement_is_off_and_says_why(caplog):
    with caplog.at_level(logging.WARNING):
        transform = SamBoxRefined("pred", predictor=None, off_reason="no sam_checkpoint")
    assert "SAM refinement is off: no sam_checkpoint" in caplog.text
    data = {"pred": torch.rand(1, 4, 4, 2), "image": torch.rand(1, 4, 4, 2)}
    assert transform(data)["pred"] is data["pred"]


def test_sam2_box_predictor_writes_only_the_boxed_slices_in_order():
    stand_in = StandInVideoPredictor()
    slices = np.stack([np.full((10, 12), v, np.float32) for v in (0.1, 0.3, 0.5, 0.7)])
    masks = Sam2BoxPredictor(stand_in)(slices, {3: [1, 2, 4, 5], 1: [0, 0, 11, 9]})
    assert [round(float(f.mean()), 2) for f in stand_in.frames] == [0.3, 0.7], "frames: slices 1 and 3, in order"
    assert [frame for frame, _ in stand_in.boxes] == [0, 1]
    assert sorted(masks) == [1, 3] and masks[3].shape == (10, 12)
    assert masks[1].all() and masks[3].sum() == 4 * 4 and masks[3][2:6, 1:5].all()
    with pytest.raises(ValueError, match="x0 <= x1"):
        Sam2BoxPredictor(stand_in)(slices, {0: [5, 0, 4, 1]})


def test_no_checkpoint_is_refused_saying_why():
    with pytest.raises(ValueError, match="SAM 2 is off: no sam_checkpoint.*25 MB"):
        build_sam2_video_predictor("tiny", None)


@pytest.mark.slow
def test_the_real_sam2_architecture_with_random_weights():
    """SAM 2.1 Hiera-T (the smallest) with random weights, frames resized to 256: the prompt, resizing and
    coordinate plumbing end to end (the masks' content is meaningless without weights)."""
    pytest.importorskip("sam2", reason="the sam2 package is optional (requirements-dev.txt)")
    torch.manual_seed(0)
    predictor = build_sam2_video_predictor("tiny", None, "cpu", image_size=256, random_weights=True)
    assert predictor.image_size == 256 and type(predictor).__name__ == "SAM2VideoPredictor"
    slices = np.random.default_rng(0).random((3, 40, 50)).astype(np.float32)
    coarse = np.zeros((1, 40, 50, 3), np.float32)
    coarse[0, 10:20, 5:30, [0, 2]] = 1
    out = SamBoxRefined("pred", predictor=Sam2BoxPredictor(predictor))(
        {"pred": torch.as_tensor(coarse), "image": torch.as_tensor(np.moveaxis(slices, 0, -1))[None]}
    )["pred"]
    assert out.shape == (1, 40, 50, 3) and set(torch.unique(out).tolist()) <= {0.0, 1.0}
    assert out[0, :, :, 1].sum() == 0, "the slice without a coarse mask is not prompted"
