"""SAM 2 slice propagation: frames in slice order, the annotation prompted on its slice, masks back on the right
voxels of the input's geometry (stand-in predictor), the refusal without weights, and the real SAM 2 architecture
with random weights through configs/propagate_sam2.yaml."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from scripts.bundle import bundle_parser
from scripts.inference.sam2_propagation import Sam2Propagation, annotated_slice, propagate_from_slice
from tests.bundle_cli import run_bundle
from tests.sam2_stand_in import StandInVideoPredictor

LPS = np.array([[-2.0, 0, 0, 30], [0, -2.0, 0, 20], [0, 0, 3.0, -10], [0, 0, 0, 1]])


def _case(folder, shape=(10, 12, 6), z=2, affine=LPS):
    """A CT whose slice k is k * 50 - 100 HU, and a label with a rectangle on axial slice z only."""
    ct = np.broadcast_to(np.arange(shape[2]) * 50.0 - 100.0, shape).astype(np.int16)
    label = np.zeros(shape, np.uint8)
    label[2:5, 3:8, z] = 1
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(ct, affine), str(folder / "ct.nii.gz"))
    nib.save(nib.Nifti1Image(label, affine), str(folder / "one_slice.nii.gz"))
    return folder / "ct.nii.gz", folder / "one_slice.nii.gz", label


def test_propagation_follows_the_predictor_both_ways_and_keeps_the_annotation():
    stand_in = StandInVideoPredictor(shift=1)
    slices = np.stack([np.full((10, 12), k / 5, np.float32) for k in range(6)])
    annotation = np.zeros((10, 12), bool)
    annotation[2:5, 3:8] = True
    result = propagate_from_slice(stand_in, slices, 2, annotation)
    assert [round(float(f.mean()), 2) for f in stand_in.frames] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0], "frame k = slice k"
    (frame, prompt), = stand_in.mask_prompts
    assert frame == 2 and np.array_equal(prompt, annotation)
    for k in range(6):
        np.testing.assert_array_equal(result[k], np.roll(annotation, abs(k - 2), axis=0))
    with pytest.raises(ValueError, match="empty"):
        propagate_from_slice(stand_in, slices, 2, np.zeros((10, 12), bool))


def test_the_annotated_slice_is_found_or_refused():
    label = np.zeros((4, 4, 5))
    label[1, 1, 3] = 1
    assert annotated_slice(label) == 3
    label[1, 1, 0] = 1
    with pytest.raises(ValueError, match="one annotated axial slice is expected.*2"):
        annotated_slice(label)
    assert annotated_slice(label, 0) == 0
    with pytest.raises(ValueError, match="no label voxels"):
        annotated_slice(label, 1)


def test_the_mask_lands_on_the_input_voxels_of_an_lps_case(tmp_path):
    image, label, annotation = _case(tmp_path / "in")
    preprocessing = bundle_parser(["propagate_sam2.yaml"]).get_parsed_content("preprocessing")
    stand_in = StandInVideoPredictor(shift=1)
    written = Sam2Propagation(stand_in, preprocessing, tmp_path / "out").run(image, label)
    assert written == tmp_path / "out" / "ct_sam2.nii.gz"
    out = nib.load(str(written))
    assert out.shape == annotation.shape and out.get_data_dtype() == np.uint8
    np.testing.assert_allclose(out.affine, LPS, atol=1e-6)
    # RAS frames flip the file's x and y: the stand-in's +1 row per slice (RAS x) is -1 along the file's x
    mask = np.asarray(out.dataobj)
    for k in range(annotation.shape[2]):
        np.testing.assert_array_equal(mask[:, :, k], np.roll(annotation[:, :, 2], -abs(k - 2), axis=0))
    # the frames show the CT window: slice k is k * 50 - 100 HU in [-160, 240] HU
    np.testing.assert_allclose([f.mean() for f in stand_in.frames], [(k * 50 + 60) / 400 for k in range(6)], atol=3e-3)


def test_the_config_stops_without_weights_saying_why(tmp_path):
    image, label, _ = _case(tmp_path)
    with pytest.raises(AssertionError, match="SAM 2 is off: no sam_checkpoint"):
        run_bundle("run", ["propagate_sam2.yaml"], image=str(image), label=str(label), output_dir=str(tmp_path / "o"))


@pytest.mark.slow
def test_the_real_sam2_architecture_through_the_config(tmp_path):
    """SAM 2.1 Hiera-T (the smallest) with random weights saved as a checkpoint, frames resized to 256: the config,
    the checkpoint loading, the video predictor's prompt, resizing and propagation end to end."""
    pytest.importorskip("sam2", reason="the sam2 package is optional (requirements-dev.txt)")
    from scripts.networks import build_sam2_video_predictor

    torch.manual_seed(0)
    model = build_sam2_video_predictor("tiny", None, "cpu", image_size=256, random_weights=True)
    checkpoint = tmp_path / "random_hiera_t.pt"
    torch.save({"model": model.state_dict()}, checkpoint)
    image, label, annotation = _case(tmp_path / "in", shape=(40, 36, 4), z=1)
    out_dir = tmp_path / "out"
    run_bundle("run", ["propagate_sam2.yaml"], image=str(image), label=str(label), output_dir=str(out_dir),
               sam_checkpoint=str(checkpoint), sam_image_size=256, device="cpu")
    out = nib.load(str(out_dir / "ct_sam2.nii.gz"))
    assert out.shape == annotation.shape
    np.testing.assert_allclose(out.affine, LPS, atol=1e-6)
    mask = np.asarray(out.dataobj)
    np.testing.assert_array_equal(mask[:, :, 1], annotation[:, :, 1])
    assert set(np.unique(mask)) <= {0, 1}
