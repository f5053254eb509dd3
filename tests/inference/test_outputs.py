"""Output names of a batch: existing outputs skipped, clashing names refused; the overlay picture."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from scripts.data.naming import output_path
from scripts.inference.batch import check_output_names
from scripts.inference.overlay import save_overlay


def _nifti(path, shape=(12, 10, 8), affine=None, value=0):
    data = np.full(shape, value, dtype=np.int16)
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path

def test_two_inputs_with_one_case_name_are_refused_before_any_work(tmp_path):
    assert output_path("/in/a.nii.gz", tmp_path, "seg") == tmp_path / "a_seg.nii.gz"
    check_output_names([{"image": "/in/a.nii.gz"}, {"image": "/in/b.nii.gz"}], tmp_path, "seg")
    with pytest.raises(ValueError, match="same output"):
        check_output_names([{"image": "/x/a.nii.gz"}, {"image": "/y/a.nii"}], tmp_path, "seg")


def test_overlay_png_is_written(tmp_path):
    image = _nifti(tmp_path / "ct.nii.gz", shape=(20, 20, 10), value=40)
    mask_data = np.zeros((20, 20, 10), np.uint8)
    mask_data[8:12, 8:12, 4:6] = 1
    nib.save(nib.Nifti1Image(mask_data, np.eye(4)), str(tmp_path / "ct_seg.nii.gz"))
    png = save_overlay(image, tmp_path / "ct_seg.nii.gz", tmp_path / "ct_overlay.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="shape"):
        save_overlay(_nifti(tmp_path / "other.nii.gz", shape=(5, 5, 5)), tmp_path / "ct_seg.nii.gz", tmp_path / "x.png")


def _reference_views(image_file, mask_file):
    """The overlay's planes from whole volumes: both reoriented with nib.as_closest_canonical, sliced at the centre."""
    from scripts.data.readers import load_input

    loaded = load_input(image_file)
    affine = loaded.affine.numpy()
    ct = np.asarray(nib.as_closest_canonical(nib.Nifti1Image(loaded[0].numpy(), affine)).dataobj, dtype=np.float32)
    canonical = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(nib.load(str(mask_file)).dataobj), affine))
    seg = np.asarray(canonical.dataobj) > 0
    centre = np.argwhere(seg).mean(0).round().astype(int) if seg.any() else np.array(ct.shape) // 2
    zooms = canonical.header.get_zooms()
    return {
        "axial": (ct[:, :, centre[2]], seg[:, :, centre[2]], zooms[1] / zooms[0]),
        "coronal": (ct[:, centre[1], :], seg[:, centre[1], :], zooms[2] / zooms[0]),
    }


@pytest.mark.parametrize(
    "affine",
    [
        np.diag([1.5, 1.5, 2.0, 1.0]),
        np.array([[-0.8, 0, 0, 100], [0, -0.8, 0, 80], [0, 0, 3.0, -40], [0, 0, 0, 1]]),  # LPS
        np.array([[0, 0, 2.0, 0], [-1.2, 0, 0, 50], [0, -1.0, 0, 20], [0, 0, 0, 1]]),  # axes permuted and flipped
    ],
    ids=["RAS", "LPS", "permuted"],
)
def test_overlay_views_read_two_planes_equal_to_whole_volume_ones(tmp_path, affine):
    from scripts.inference.overlay import overlay_views

    rng = np.random.default_rng(0)
    ct = rng.integers(-1000, 1000, size=(21, 17, 13)).astype(np.int16)
    image = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(ct, affine), str(image))
    mask = np.zeros(ct.shape, np.uint8)
    mask[5:12, 3:9, 4:10] = 1
    mask[15:17, 12:14, 1:3] = 1
    nib.save(nib.Nifti1Image(mask, affine), str(tmp_path / "m.nii.gz"))
    views, reference = overlay_views(image, tmp_path / "m.nii.gz"), _reference_views(image, tmp_path / "m.nii.gz")
    for name in ("axial", "coronal"):
        np.testing.assert_array_equal(views[name][0], reference[name][0], err_msg=name)
        np.testing.assert_array_equal(views[name][1], reference[name][1], err_msg=name)
        assert views[name][2] == pytest.approx(reference[name][2])


def test_overlay_views_of_a_dicom_series_decode_one_slice_at_a_time(tmp_path):
    from scripts.inference.overlay import overlay_views
    from tests.bundle_cli import REAL_CT

    series = REAL_CT / "totalseg_b_dicom"
    if not series.is_dir():
        pytest.skip(f"{series} is absent")
    from scripts.data.readers import load_input

    loaded = load_input(series)
    mask = np.zeros(loaded.shape[1:], np.uint8)
    mask[200:260, 300:340, 5:12] = 1
    nib.save(nib.Nifti1Image(mask, loaded.affine.numpy()), str(tmp_path / "m.nii.gz"))
    views, reference = overlay_views(series, tmp_path / "m.nii.gz"), _reference_views(series, tmp_path / "m.nii.gz")
    for name in ("axial", "coronal"):
        np.testing.assert_array_equal(views[name][0], reference[name][0], err_msg=name)
        np.testing.assert_array_equal(views[name][1], reference[name][1], err_msg=name)


def test_inference_imports_highdicom_only_when_it_writes_a_seg():
    import subprocess
    import sys

    code = "import sys, scripts.inference.batch, scripts.data.dicom_seg; print('highdicom' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.stdout.strip() == "False", result.stderr[-2000:]


@pytest.mark.parametrize("kind", ["nifti", "dicom"])
def test_overlay_from_the_copy_kept_in_memory_equals_the_one_read_from_files(tmp_path, kind):
    """Inference keeps the CT as read (KeepInputCopyd, int16 when exact) and draws the overlay without reading it."""
    import torch

    from scripts.bundle import bundle_parser
    from scripts.inference.overlay import overlay_views
    from tests.bundle_cli import REAL_CT

    if kind == "dicom":
        image = REAL_CT / "totalseg_b_dicom"
        if not image.is_dir():
            pytest.skip(f"{image} is absent")
    else:
        rng = np.random.default_rng(1)
        image = tmp_path / "ct.nii.gz"
        affine = np.array([[-0.8, 0, 0, 100], [0, -0.8, 0, 80], [0, 0, 3.0, -40], [0, 0, 0, 1]])
        nib.save(nib.Nifti1Image(rng.integers(-1000, 1000, size=(40, 36, 20)).astype(np.int16), affine), str(image))
    preprocessing = bundle_parser(["inference.yaml"]).get_parsed_content("preprocessing")
    data = preprocessing({"image": str(image)})
    kept = data["input_image"]
    assert kept.dtype == torch.int16 and not hasattr(kept, "meta")
    affine = np.asarray(data["image"].meta["original_affine"], dtype=np.float64)
    mask = np.zeros(kept.shape[1:], np.uint8)
    mask[tuple(slice(n // 3, n // 2) for n in mask.shape)] = 1
    nib.save(nib.Nifti1Image(mask, affine), str(tmp_path / "m.nii.gz"))
    from_files = overlay_views(image, tmp_path / "m.nii.gz")
    in_memory = overlay_views(image, "unused", image=kept[0].numpy(), mask=mask, affine=affine)
    for name in ("axial", "coronal"):
        np.testing.assert_array_equal(in_memory[name][0], from_files[name][0], err_msg=name)
        np.testing.assert_array_equal(in_memory[name][1], from_files[name][1], err_msg=name)


def test_batch_inference_draws_the_overlay_without_reading_the_ct_again(tmp_path, monkeypatch):
    import scripts.inference.overlay as overlay
    from scripts.bundle import bundle_parser

    ct = np.full((60, 50, 30), -900, np.int16)
    ct[15:45, 12:40, 5:25] = 40
    image = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(ct, np.diag([1.5, 1.5, 2.5, 1.0])), str(image))
    monkeypatch.setattr(overlay, "_source", lambda *args: pytest.fail("the CT was read again for the overlay"))
    parser = bundle_parser(["inference.yaml"], {"dataset_dir": str(image), "output_dir": str(tmp_path / "out")})
    (record,) = parser.get_parsed_content("batch_inference").run()
    assert record.status == "ok", record.error
    assert (tmp_path / "out" / "ct_seg_overlay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
