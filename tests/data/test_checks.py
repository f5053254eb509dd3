"""Input validation: a bad image or image/label pair is refused with its file and reason; odd but valid cases pass."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from scripts.data.checks import check_case, image_problems, label_problems, validate_datalist
from scripts.data.errors import DatalistError, InputError
from scripts.phantom import DOMAINS, case_seed, generate_case
from scripts.transforms import CheckImaged
from tests.bundle_cli import REAL_CT

SHAPE = (16, 16, 16)


def ct_array(shape=SHAPE) -> np.ndarray:
    """A tiny CT-like volume in HU: air (-1000) in the first quarter of the first axis, soft tissue (40) elsewhere."""
    image = np.full(shape, 40, dtype=np.int16)
    image[: max(1, shape[0] // 4)] = -1000
    return image


def label_array(shape=SHAPE, value=1) -> np.ndarray:
    label = np.zeros(shape, dtype=np.uint8)
    label[shape[0] // 2 :, 4:8, 4:8] = value
    return label


def save(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> str:
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), path)
    return str(path)


def good_case(tmp_path: Path, name: str, affine: np.ndarray | None = None) -> dict[str, str]:
    return {
        "image": save(tmp_path / f"{name}_ct.nii.gz", ct_array(), affine),
        "label": save(tmp_path / f"{name}_seg.nii.gz", label_array(), affine),
    }


def only_error(errors: list[InputError], path: str) -> InputError:
    assert len(errors) == 1, errors
    assert errors[0].path == path
    assert str(errors[0]) == f"{path}: {errors[0].reason}"
    return errors[0]


def test_good_case_passes(tmp_path):
    assert check_case(good_case(tmp_path, "good")) == []


def test_truncated_nifti(tmp_path):
    item = good_case(tmp_path, "cut")
    data = Path(item["image"]).read_bytes()
    Path(item["image"]).write_bytes(data[: len(data) // 2])
    error = only_error(check_case(item), item["image"])
    assert "truncated" in error.reason


def test_garbage_with_nifti_name(tmp_path):
    item = good_case(tmp_path, "garbage")
    Path(item["image"]).write_bytes(b"this is not a NIfTI file" * 20)
    error = only_error(check_case(item), item["image"])
    assert "cannot be read" in error.reason and "not a gzip file" in error.reason


def test_missing_file(tmp_path):
    item = good_case(tmp_path, "gone")
    Path(item["label"]).unlink()
    assert only_error(check_case(item), item["label"]).reason == "file not found"


def test_unreadable_dicom_series(tmp_path):
    series = tmp_path / "series"
    series.mkdir()
    for k in range(3):
        (series / f"1-{k:03d}.dcm").write_bytes(b"not DICOM" * 50)
    error = only_error(check_case({"image": str(series)}, label_key=None), str(series))
    assert error.reason.startswith("1-000.dcm is not a readable DICOM file")


def test_2d_image(tmp_path):
    path = save(tmp_path / "slice.nii.gz", ct_array((16, 16)))
    error = only_error(check_case({"image": path}, label_key=None), path)
    assert "not a 3D image: shape (1, 16, 16)" in error.reason


def test_single_slice_volume_is_2d(tmp_path):
    path = save(tmp_path / "slice.nii.gz", ct_array((16, 16, 1)))
    assert (
        "not a 3D image: shape (1, 16, 16, 1)" in only_error(check_case({"image": path}, label_key=None), path).reason
    )


def test_multichannel_image(tmp_path):
    path = save(tmp_path / "rgb.nii.gz", np.stack([ct_array()] * 3, axis=-1))
    error = only_error(check_case({"image": path}, label_key=None), path)
    assert error.reason == "3 channels (shape (3, 16, 16, 16)), expected a single-channel CT volume"


def test_label_with_other_shape(tmp_path):
    item = good_case(tmp_path, "shape")
    save(Path(item["label"]), label_array((16, 16, 12)))
    error = only_error(check_case(item), item["label"])
    assert "label shape (16, 16, 12) does not match image shape (16, 16, 16)" in error.reason
    assert item["image"] in error.reason


def test_multichannel_label(tmp_path):
    item = good_case(tmp_path, "channels")
    save(Path(item["label"]), np.stack([label_array()] * 2, axis=-1))
    assert only_error(check_case(item), item["label"]).reason.startswith("2 label channels (shape (2, 16, 16, 16))")


def test_label_with_other_affine(tmp_path):
    item = good_case(tmp_path, "affine")
    shifted = np.eye(4)
    shifted[:3, 3] = (0.0, 0.0, 2.5)
    save(Path(item["label"]), label_array(), shifted)
    error = only_error(check_case(item), item["label"])
    assert "label affine differs from the image affine by up to 2.5 mm" in error.reason


def test_affine_within_tolerance_passes(tmp_path):
    item = good_case(tmp_path, "close")
    nudged = np.eye(4)
    nudged[0, 3] = 2e-4
    save(Path(item["label"]), label_array(), nudged)
    assert check_case(item) == []


def test_all_zero_label(tmp_path):
    item = good_case(tmp_path, "empty")
    save(Path(item["label"]), np.zeros(SHAPE, np.uint8))
    assert only_error(check_case(item), item["label"]).reason.startswith("empty label: no foreground voxel")
    assert check_case(item, require_foreground=False) == []


@pytest.mark.parametrize("value, shown", [(7, "7"), (0.5, "0.5")])
def test_unexpected_label_value(tmp_path, value, shown):
    item = good_case(tmp_path, "values")
    save(Path(item["label"]), label_array(value=1).astype(np.float32) * value)
    error = only_error(check_case(item), item["label"])
    assert f"unexpected label values {shown} (allowed: 0, 1, 2)" in error.reason
    assert check_case(item, allowed_label_values=(0, value)) == []


def test_nan_and_inf_voxels(tmp_path):
    image = ct_array().astype(np.float32)
    image[10, 10, :3] = np.nan
    image[11, 11, 0] = np.inf
    path = save(tmp_path / "nan.nii.gz", image)
    error = only_error(check_case({"image": path}, label_key=None), path)
    assert error.reason == "non-finite voxels: 3 NaN, 1 Inf of 4096"


def test_mr_like_intensities(tmp_path):
    path = save(tmp_path / "mr.nii.gz", np.linspace(0, 1500, 16**3, dtype=np.float32).reshape(SHAPE))
    error = only_error(check_case({"image": path}, label_key=None), path)
    assert "MR-like or unscaled intensities, range 0..1500" in error.reason


def test_blank_image():
    assert image_problems(torch.full((1, 8, 8, 8), -1024.0), path="blank")[0].startswith("blank image")


def test_small_volume_passes(tmp_path):
    shape = (8, 8, 8)
    item = {
        "image": save(tmp_path / "small.nii.gz", ct_array(shape)),
        "label": save(tmp_path / "s.nii.gz", label_array(shape)),
    }
    assert check_case(item) == []


def test_lps_and_anisotropic_case_passes(tmp_path):
    lps = np.diag([-0.7, -0.7, 5.0, 1.0])
    lps[:3, 3] = (120.0, 80.0, -300.0)
    assert check_case(good_case(tmp_path, "lps", lps)) == []


def test_label_stored_in_other_orientation_of_the_same_grid_passes(tmp_path):
    """The training pipeline reorients image and label to RAS: the same grid stored flipped is fine."""
    item = good_case(tmp_path, "flip")
    flipped = np.diag([-1.0, 1.0, 1.0, 1.0])
    flipped[0, 3] = SHAPE[0] - 1
    save(Path(item["label"]), label_array()[::-1].copy(), flipped)
    assert check_case(item) == []


def test_validate_datalist_lists_every_bad_case(tmp_path):
    good = [good_case(tmp_path, "good1"), good_case(tmp_path, "good2")]
    assert validate_datalist(good) is good
    missing = good_case(tmp_path, "missing")
    Path(missing["image"]).unlink()
    empty = good_case(tmp_path, "empty")
    save(Path(empty["label"]), np.zeros(SHAPE, np.uint8))
    mr = good_case(tmp_path, "mr")
    save(Path(mr["image"]), np.full(SHAPE, 300, np.int16))
    with pytest.raises(DatalistError) as info:
        validate_datalist([good[0], missing, empty, good[1], mr], num_workers=2)
    assert [e.path for e in info.value.errors] == [missing["image"], empty["label"], mr["image"]]
    message = str(info.value)
    assert message.startswith("3 of 5 cases are invalid:\n")
    assert len(message.splitlines()) == 4
    for error in info.value.errors:
        assert str(error) in message
    assert "good1" not in message and "good2" not in message


def test_check_imaged_names_the_file(tmp_path):
    good, bad = save(tmp_path / "ct.nii.gz", ct_array()), save(tmp_path / "mr.nii.gz", np.full(SHAPE, 300, np.int16))
    chain = Compose([LoadImaged("image", image_only=True), EnsureChannelFirstd("image"), CheckImaged("image")])
    assert chain({"image": good})["image"].shape == (1, *SHAPE)
    with pytest.raises(InputError) as info:
        CheckImaged("image")(Compose(chain.transforms[:2])({"image": bad}))
    assert info.value.path == bad
    assert "range 300..300" in info.value.reason


@pytest.mark.parametrize("domain", sorted(DOMAINS))
def test_phantom_domains_pass(domain):
    case = generate_case(domain, case_seed(0, domain, 0))
    affine = torch.as_tensor(case.affine)
    image = MetaTensor(torch.as_tensor(case.image.astype(np.int16))[None], affine=affine)
    label = MetaTensor(torch.as_tensor(case.label)[None], affine=affine)
    assert image_problems(image, path=domain) == []
    assert label_problems(label, image) == []


@pytest.mark.real_ct
@pytest.mark.skipif(not REAL_CT.is_dir(), reason="needs ../shared/data/real_ct")
def test_real_dicom_series_and_nifti_label_share_a_grid():
    """Real scanner data: JPEG 2000 DICOM series read by LoadImage, its label stored in another orientation."""
    item = {"image": str(REAL_CT / "totalseg_b_dicom"), "label": str(REAL_CT / "totalseg_b_seg.nii.gz")}
    assert check_case(item, allowed_label_values=None) == []
    errors = check_case(item)  # a multi-organ map (values up to 117) is no pancreas label
    assert len(errors) == 1 and "unexpected label values 5, 6, 7, 8, " in errors[0].reason
