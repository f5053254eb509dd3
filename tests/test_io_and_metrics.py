"""Inference input resolution, safe outputs, overlay pictures and millimetre surface metrics."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.metrics import HausdorffDistanceMetric, SurfaceDiceMetric

from scripts.data.datalists import resolve_images
from scripts.data.naming import output_path
from scripts.inference.batch import pending_cases
from scripts.metrics import PhysicalSpacingMetric
from scripts.inference.overlay import save_overlay
from scripts.data.writers import AtomicNibabelWriter


def _nifti(path, shape=(12, 10, 8), affine=None, value=0):
    data = np.full(shape, value, dtype=np.int16)
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def test_resolve_one_file_a_folder_and_a_datalist(tmp_path):
    a, b = _nifti(tmp_path / "a.nii.gz"), _nifti(tmp_path / "b.nii")
    (tmp_path / "notes.txt").write_text("not an image")
    assert resolve_images(a) == [{"image": str(a)}]
    assert resolve_images(tmp_path) == [{"image": str(a)}, {"image": str(b)}]
    datalist = tmp_path / "list.json"
    datalist.write_text(json.dumps([{"image": "a.nii.gz"}, "b.nii"]))
    assert resolve_images(datalist) == [{"image": str(a)}, {"image": str(b)}]


def test_resolve_an_msd_folder_reads_training_and_test(tmp_path):
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "imagesTs").mkdir()
    tr, ts = _nifti(tmp_path / "imagesTr" / "x.nii.gz"), _nifti(tmp_path / "imagesTs" / "y.nii.gz")
    msd = {"training": [{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}], "test": ["./imagesTs/y.nii.gz"]}
    (tmp_path / "dataset.json").write_text(json.dumps(msd))
    assert resolve_images(tmp_path) == [{"image": str(tr)}, {"image": str(ts)}]


def test_resolve_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        resolve_images(tmp_path / "nothing_here.nii.gz")
    with pytest.raises(ValueError, match="no NIfTI"):
        resolve_images(tmp_path)
    (tmp_path / "list.json").write_text(json.dumps([{"image": "gone.nii.gz"}]))
    with pytest.raises(FileNotFoundError, match="gone.nii.gz"):
        resolve_images(tmp_path / "list.json")


def test_pending_cases_skips_existing_outputs_and_refuses_clashes(tmp_path):
    items = [{"image": "/in/a.nii.gz"}, {"image": "/in/b.nii.gz"}]
    assert output_path("/in/a.nii.gz", tmp_path, "seg") == tmp_path / "a_seg.nii.gz"
    (tmp_path / "a_seg.nii.gz").write_bytes(b"x")
    assert pending_cases(items, tmp_path, "seg") == [items[1]]
    assert pending_cases(items, tmp_path, "seg", overwrite=True) == items
    with pytest.raises(ValueError, match="same output"):
        pending_cases([{"image": "/x/a.nii.gz"}, {"image": "/y/a.nii"}], tmp_path, "seg")


def test_atomic_writer_leaves_only_the_final_file(tmp_path):
    writer = AtomicNibabelWriter()
    writer.set_data_array(torch.ones(1, 4, 4, 4), channel_dim=0)
    writer.set_metadata({"affine": np.diag([2.0, 2.0, 3.0, 1.0])}, resample=False)
    writer.write(tmp_path / "mask.nii.gz")
    assert [p.name for p in tmp_path.iterdir()] == ["mask.nii.gz"]
    np.testing.assert_allclose(nib.load(str(tmp_path / "mask.nii.gz")).affine, np.diag([2.0, 2.0, 3.0, 1.0]))


def test_overlay_png_is_written(tmp_path):
    image = _nifti(tmp_path / "ct.nii.gz", shape=(20, 20, 10), value=40)
    mask_data = np.zeros((20, 20, 10), np.uint8)
    mask_data[8:12, 8:12, 4:6] = 1
    nib.save(nib.Nifti1Image(mask_data, np.eye(4)), str(tmp_path / "ct_seg.nii.gz"))
    png = save_overlay(image, tmp_path / "ct_seg.nii.gz", tmp_path / "ct_overlay.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="shape"):
        save_overlay(_nifti(tmp_path / "other.nii.gz", shape=(5, 5, 5)), tmp_path / "ct_seg.nii.gz", tmp_path / "x.png")


def _one_hot(foreground: torch.Tensor) -> torch.Tensor:
    return torch.stack([1 - foreground, foreground])


def test_surface_metrics_are_in_millimetres_of_each_case():
    label = torch.zeros(20, 20, 20)
    label[5:10, 5:10, 5:10] = 1
    shifted = torch.roll(label, 1, dims=2)  # one voxel along z
    anisotropic = np.diag([1.0, 1.0, 5.0, 1.0])
    isotropic = np.diag([2.0, 2.0, 2.0, 1.0])
    hd = PhysicalSpacingMetric(HausdorffDistanceMetric(percentile=95))
    preds = [MetaTensor(_one_hot(shifted), affine=anisotropic), MetaTensor(_one_hot(shifted), affine=isotropic)]
    labels = [MetaTensor(_one_hot(label), affine=anisotropic), MetaTensor(_one_hot(label), affine=isotropic)]
    values = hd(preds, labels)
    torch.testing.assert_close(values.flatten(), torch.tensor([5.0, 2.0]))
    dice = PhysicalSpacingMetric(SurfaceDiceMetric(class_thresholds=[3.0]))
    dice(preds, labels)
    per_case = dice.get_buffer().flatten()
    assert per_case[0] < 1.0 and per_case[1] == pytest.approx(1.0)


def test_surface_metric_falls_back_to_default_spacing_for_plain_tensors():
    label = torch.zeros(1, 2, 12, 12, 12)
    label[0, 1, 3:6, 3:6, 3:6] = 1
    label[0, 0] = 1 - label[0, 1]
    pred = torch.roll(label, 1, dims=4)
    hd = PhysicalSpacingMetric(HausdorffDistanceMetric(percentile=95), default_spacing=[1.0, 1.0, 3.0])
    torch.testing.assert_close(hd(pred, label).flatten(), torch.tensor([3.0]))


@pytest.mark.parametrize(
    "content, message",
    [
        ('[{"image": "a.nii.gz"},\n oops]', r"not valid JSON: Expecting value at line 2, column 2"),
        ('[{"label": "a.nii.gz"}]', r"entry 0 has no 'image' key"),
        ("[123]", r"entry 0 must be an image path or an object with 'image', got 123"),
        ('{"training": [{"image": 5}]}', r"training\[0\]: 'image' must be a non-empty path string, got 5"),
        ('{"training": {"image": "a"}}', r"section 'training' must be a list of cases"),
        ('"a.nii.gz"', r"expected a JSON list of cases or an MSD dataset.json object, got str"),
    ],
)
def test_a_bad_datalist_is_refused_naming_the_file_and_the_entry(tmp_path, content, message):
    from scripts.data.datalists import read_datalist
    from scripts.data.errors import InputError

    path = tmp_path / "list.json"
    path.write_text(content)
    with pytest.raises(InputError, match=f"^{path}: {message}"):
        read_datalist(path)


def test_datalist_paths_are_resolved_against_its_folder_and_other_keys_kept(tmp_path):
    from scripts.data.datalists import read_datalist

    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "dataset.json"
    path.write_text('{"training": [{"image": "a.nii.gz", "label": "../b.nii.gz", "fold": 1}], "test": ["c.nii"]}')
    assert read_datalist(path, sections=("training", "test")) == [
        {"image": str(tmp_path / "sub" / "a.nii.gz"), "label": str(tmp_path / "b.nii.gz"), "fold": 1},
        {"image": str(tmp_path / "sub" / "c.nii")},
    ]


def test_a_misspelt_option_names_the_closest_ones():
    from scripts.bundle import check_options

    check_options(["val_fraction"], ["val_fraction", "test_fraction"])
    with pytest.raises(ValueError, match=r"unknown option 'val_fration' \(did you mean 'val_fraction' or 'test_fraction'\?\)"):
        check_options(["val_fration"], ["val_fraction", "test_fraction", "seed"])
