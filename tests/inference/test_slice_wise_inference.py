"""A 2D network slice by slice through configs/inference.yaml + configs/inference_2d.yaml: the input's shape and
affine for RAS and LPS inputs, the mask on the right voxels, every output of the 3D model (summary, overlay, SEG)."""

from __future__ import annotations

import numpy as np
import nibabel as nib
import pydicom
import pytest
import torch

from scripts.bundle import bundle_parser
from scripts.networks import ResidualUNet, SliceWiseNetwork
from tests.bundle_cli import BUNDLE_ROOT
from tests.inference.test_inference_io import BLOB_HU, _ct_volume, _nifti, _summary, _write_series

# a 1x1 convolution: logit(pancreas) - logit(background) = 100 (x - t), x = HU scaled by the config
TINY_NET_2D = {"_target_": "torch.nn.Conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": 1}
BLOB = (slice(4, 9), slice(5, 10), slice(2, 6))


@pytest.fixture(scope="module")
def threshold_model_2d(tmp_path_factory):
    parser = bundle_parser(["inference.yaml"])
    low, high = parser["hu_window"]
    t = (BLOB_HU - low) / (high - low)
    state = {"weight": torch.tensor([-50.0, 50.0]).reshape(2, 1, 1, 1), "bias": torch.tensor([50.0 * t, -50.0 * t])}
    path = tmp_path_factory.mktemp("model2d") / "threshold_2d.pt"
    torch.save(state, path)
    return path


def _run(model, input_path, output_dir, **overrides):
    parser = bundle_parser(["inference.yaml", "inference_2d.yaml"])
    parser.update(
        {
            "bundle_root": str(BUNDLE_ROOT),
            "input_path": str(input_path),
            "output_dir": str(output_dir),
            "checkpoint": str(model),
            "network_def": TINY_NET_2D,
            "slice_size": [16, 16],
            **overrides,
        }
    )
    network = parser.get_parsed_content("inference_network")
    assert isinstance(network, SliceWiseNetwork)
    return parser.get_parsed_content("batch_inference").run()


def test_the_wrapper_equals_the_2d_network_on_every_axial_slice():
    torch.manual_seed(0)
    network = ResidualUNet(spatial_dims=2, channels=(4, 8, 16), num_res_units=1).eval()
    volume = torch.rand(2, 1, 16, 12, 5)
    with torch.no_grad():
        out = SliceWiseNetwork(network, slice_batch_size=3)(volume)
        expected = torch.stack([network(volume[..., k]) for k in range(5)], dim=-1)
    assert out.shape == (2, 2, 16, 12, 5)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="B, C, X, Y, Z"):
        SliceWiseNetwork(network)(volume[..., 0])


@pytest.mark.parametrize(
    "orientation, affine",
    [
        ("RAS", np.diag([2.0, 2.0, 2.0, 1.0])),
        ("LPS", np.array([[-2.0, 0, 0, 30], [0, -2.0, 0, 20], [0, 0, 2.0, -10], [0, 0, 0, 1]])),
    ],
)
def test_the_mask_has_the_input_shape_and_affine_and_lands_on_the_blob(tmp_path, threshold_model_2d, orientation, affine):
    volume = _ct_volume((20, 18, 9), blobs=[BLOB])
    image = _nifti(tmp_path / "ct.nii.gz", volume, affine)
    out = tmp_path / "out"
    records = _run(threshold_model_2d, image, out)
    assert [r.status for r in records] == ["ok"]
    seg = nib.load(str(out / "ct_seg.nii.gz"))
    assert seg.shape == volume.shape
    np.testing.assert_allclose(seg.affine, affine, atol=1e-5)
    expected = np.zeros(volume.shape, np.uint8)
    expected[BLOB] = 1
    np.testing.assert_array_equal(np.asarray(seg.dataobj), expected)
    rows, report = _summary(out)
    assert rows["ct"]["status"] == "ok" and float(rows["ct"]["pancreas_volume_ml"]) == pytest.approx(expected.sum() * 0.008)
    assert (out / "ct_seg_overlay.png").read_bytes()[:4] == b"\x89PNG"


def test_a_dicom_series_gives_a_seg_referencing_it(tmp_path, threshold_model_2d):
    volume = _ct_volume((20, 18, 9), blobs=[BLOB])
    series = _write_series(tmp_path / "series", volume)
    out = tmp_path / "out"
    records = _run(threshold_model_2d, series, out, save_dicom_seg=True)
    assert [r.status for r in records] == ["ok"]
    seg = pydicom.dcmread(next(out.glob("*_seg.dcm")))
    source_uid = pydicom.dcmread(next(series.glob("*.dcm"))).SeriesInstanceUID
    assert seg.Modality == "SEG" and seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source_uid
    frames = seg.pixel_array.reshape(int(seg.NumberOfFrames), -1)
    assert int(frames.sum()) == 5 * 5 * 4, "the blob's voxels"
    assert int((frames.sum(axis=1) > 0).sum()) == 4, "on the blob's 4 slices"
