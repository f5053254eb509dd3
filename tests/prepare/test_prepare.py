"""Data preparation CLIs: datalists of MSD, NIH (DICOM) and plain folders, validated before they are written."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.data import load_decathlon_datalist
from monai.transforms import LoadImage
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from scripts.bundle import bundle_parser
from scripts.data.errors import DatalistError
from scripts.prepare import assign_folds, folder, msd, nih, split_cases
from scripts.prepare.__main__ import main
from tests.bundle_cli import BUNDLE_ROOT as REPO

SHAPE = (16, 16, 16)


def ct_array(shape=SHAPE) -> np.ndarray:
    """Tiny CT in HU: air (-1000) in the first quarter of the first axis, soft tissue elsewhere, a bright spot."""
    image = np.full(shape, 40, dtype=np.int16)
    image[: shape[0] // 4] = -1000
    image[-2:, -2:, -2:] = 300
    return image


def label_array(shape=SHAPE, tumour=False) -> np.ndarray:
    label = np.zeros(shape, dtype=np.uint8)
    label[shape[0] // 2 :, 4:8, 2:6] = 1
    if tumour:
        label[-2:, 4:6, 2:4] = 2
    return label


def save(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), path)


def write_msd(root: Path, names=("pancreas_001", "pancreas_002", "pancreas_003"), test=("pancreas_100",)) -> Path:
    """MSD Task07 layout: labels with pancreas (1) and tumour (2) except in the first case, one imagesTs case."""
    for i, name in enumerate(names):
        save(root / "imagesTr" / f"{name}.nii.gz", ct_array())
        save(root / "labelsTr" / f"{name}.nii.gz", label_array(tumour=i > 0))
    for name in test:
        save(root / "imagesTs" / f"{name}.nii.gz", ct_array())
    meta = {
        "name": "Pancreas",
        "labels": {"0": "background", "1": "pancreas", "2": "cancer"},
        "training": [{"image": f"./imagesTr/{n}.nii.gz", "label": f"./labelsTr/{n}.nii.gz"} for n in names],
        "test": [f"./imagesTs/{n}.nii.gz" for n in test],
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def read(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def config_data_split(datalist: Path, data_split: str | None = None) -> list[list[dict]]:
    """What configs/train.yaml trains and validates on with ``--datalist_file <datalist>``."""
    parser = bundle_parser(["train.yaml"])
    parser["bundle_root"] = str(REPO)
    parser["datalist_file"] = str(datalist)
    if data_split is not None:
        parser["data_split"] = data_split
    return parser.get_parsed_content("data_split")


def test_msd_datalist_is_read_by_train_config(tmp_path):
    root = write_msd(tmp_path / "Task07_Pancreas", names=[f"pancreas_{i:03d}" for i in range(5)])
    output = tmp_path / "lists" / "datalist.json"
    assert msd(str(root), str(output), val_fraction=0.2, folds=2) == str(output)
    content = read(output)
    assert (content["numTraining"], content["numValidation"], content["numTest"]) == (4, 1, 1)
    assert content["test"] == [{"image": "../Task07_Pancreas/imagesTs/pancreas_100.nii.gz"}]
    assert content["training"][0]["image"].startswith("../Task07_Pancreas/imagesTr/pancreas_")
    assert sorted(e["fold"] for e in content["training"]) == [0, 0, 1, 1]
    assert content["labels"] == {"0": "background", "1": "pancreas", "2": "cancer"}
    train, val = config_data_split(output)
    assert len(train) + len(val) == 4
    for item in train + val:
        assert Path(item["image"]).is_file() and Path(item["label"]).is_file()
        assert Path(item["image"]).name == Path(item["label"]).name
    validation = load_decathlon_datalist(str(output), True, "validation")
    assert [Path(v["image"]).parent for v in validation] == [root / "imagesTr"]
    # the overrides docs/data_preparation.md gives: fold 1 as validation, the written validation split
    train, val = config_data_split(
        output,
        "$[[d for d in @checked_datalist if d['fold'] != 1], [d for d in @checked_datalist if d['fold'] == 1]]",
    )
    assert (len(train), len(val)) == (2, 2) and {d["fold"] for d in val} == {1}
    load = f"monai.data.load_decathlon_datalist('{output}', True"
    train, val = config_data_split(output, f"$[{load}, 'training'), {load}, 'validation')]")
    assert (len(train), val) == (4, validation)


def test_msd_reports_every_bad_case_together(tmp_path):
    root = write_msd(tmp_path / "Task07_Pancreas")
    (root / "labelsTr" / "pancreas_002.nii.gz").unlink()
    shifted = np.eye(4)
    shifted[:3, 3] = 5.0
    save(root / "labelsTr" / "pancreas_003.nii.gz", label_array(), shifted)
    output = tmp_path / "datalist.json"
    with pytest.raises(DatalistError) as info:
        msd(str(root), str(output))
    message = str(info.value)
    assert message.startswith("2 of 4 cases are invalid:")
    assert f"{root / 'labelsTr' / 'pancreas_002.nii.gz'}: file not found" in message
    assert f"{root / 'labelsTr' / 'pancreas_003.nii.gz'}: label affine differs from the image affine" in message
    assert not output.exists()

    assert msd(str(root), str(output), skip_invalid=True) == str(output)
    assert [e["image"] for e in read(output)["training"]] == ["Task07_Pancreas/imagesTr/pancreas_001.nii.gz"]
    excluded = read(tmp_path / "datalist.excluded.json")
    assert (excluded["num_cases"], excluded["num_excluded"]) == (4, 2)
    assert [e["case"] for e in excluded["excluded"]] == ["pancreas_002", "pancreas_003"]


def test_msd_merge_labels_writes_relabelled_files(tmp_path):
    root = write_msd(tmp_path / "Task07_Pancreas")
    output = tmp_path / "tumour.json"
    # tumour only: pancreas_001 has no tumour and is left with an empty label
    with pytest.raises(DatalistError, match=r"1 of 4 cases are invalid:\n.*pancreas_001.nii.gz: empty label after"):
        msd(str(root), str(output), merge_labels={1: 0, 2: 1})
    msd(str(root), str(output), merge_labels={1: 0, 2: 1}, skip_invalid=True, overwrite=True)
    content = read(output)
    assert content["labels"] == {"0": "background+pancreas", "1": "cancer"}
    assert [e["label"] for e in content["training"]] == [f"labelsTr_merged/pancreas_00{i}.nii.gz" for i in (2, 3)]
    merged = nib.load(tmp_path / "labelsTr_merged" / "pancreas_002.nii.gz")
    np.testing.assert_array_equal(np.asarray(merged.dataobj), (label_array(tumour=True) == 2).astype(np.uint8))
    np.testing.assert_array_equal(merged.affine, np.eye(4))
    with pytest.raises(FileExistsError, match="relabelled file"):
        msd(str(root), str(tmp_path / "again.json"), merge_labels={1: 0, 2: 1}, skip_invalid=True)


def test_cli_refuses_a_misspelt_option_before_writing_anything(tmp_path, monkeypatch):
    root = write_msd(tmp_path / "Task07_Pancreas")
    output = tmp_path / "datalist.json"
    argv = ["prepare", "msd", "--root", str(root), "--output", str(output), "--val_fration", "0.2"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == "error: unknown option 'val_fration' (did you mean 'val_fraction' or 'test_fraction'?)"
    assert not output.exists()
    monkeypatch.setattr(sys, "argv", [a.replace("fration", "fraction") for a in argv])
    main()
    assert read(output)["split"]["val_fraction"] == 0.2


def test_cli_refuses_a_bool_option_fire_would_pass_on_as_a_string(tmp_path, monkeypatch):
    # "--overwrite false" reaches the command as the string "false", which counts as true: it would overwrite
    root = write_msd(tmp_path / "Task07_Pancreas")
    output = tmp_path / "datalist.json"
    output.write_text("{}")
    argv = ["prepare", "msd", "--root", str(root), "--output", str(output), "--overwrite", "false"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as info:
        main()
    message = "error: option(s) of the wrong type: --overwrite 'false': expected True or False"
    assert str(info.value.code).startswith(message)
    assert output.read_text() == "{}"


def test_cli_refuses_to_overwrite(tmp_path, monkeypatch, capsys):
    root = write_msd(tmp_path / "Task07_Pancreas")
    output = tmp_path / "datalist.json"
    output.write_text("{}")
    monkeypatch.setattr(sys, "argv", ["prepare", "msd", "--root", str(root), "--output", str(output)])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == f"error: {output} exists from an earlier run; pass --overwrite to replace it"
    assert output.read_text() == "{}"
    monkeypatch.setattr(sys, "argv", sys.argv + ["--overwrite", "--test_fraction", "0.34"])
    main()
    content = read(output)
    assert (content["numTraining"], content["numTest"]) == (2, 2)
    assert sum("label" in e for e in content["test"]) == 1


def test_split_is_deterministic_and_folds_cover_every_case_once():
    names = [f"case_{i:02d}" for i in range(20)]
    split = split_cases(names, val_fraction=0.2, test_fraction=0.1, seed=3)
    assert [len(split[k]) for k in ("training", "validation", "test")] == [14, 4, 2]
    assert sorted(split["training"] + split["validation"] + split["test"]) == names
    assert split_cases(reversed(names), val_fraction=0.2, test_fraction=0.1, seed=3) == split
    assert split_cases(names, val_fraction=0.2, test_fraction=0.1, seed=4) != split
    folds = assign_folds(names, 3, seed=3)
    assert sorted(folds) == names and sorted(np.bincount(list(folds.values()))) == [6, 7, 7]
    assert assign_folds(names, 3, seed=3) == folds and assign_folds(names, 3, seed=4) != folds
    with pytest.raises(ValueError, match="no training case left"):
        split_cases(names[:2], val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError, match="folds must be between 2 and"):
        assign_folds(names[:2], 3)


# ---- NIH Pancreas-CT: DICOM series + NIfTI labels
SPACING, THICKNESS, ORIGIN = 0.8, 2.5, np.array([-6.0, -20.0, 100.0])  # mm, DICOM patient (LPS) coordinates
SERIES_SHAPE = (16, 16, 6)  # columns, rows, slices


def write_series(folder: Path, hu: np.ndarray) -> None:
    """CT series of ``hu`` (slices, rows, columns), axial slices in LPS, stored as int16 + 1024 with intercept -1024."""
    folder.mkdir(parents=True)
    study, series = generate_uid(), generate_uid()
    for k, pixels in enumerate(hu):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.Modality, ds.PatientID, ds.InstanceNumber = "CT", folder.parts[-3], k + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [float(v) for v in ORIGIN + (0.0, 0.0, k * THICKNESS)]
        ds.PixelSpacing, ds.SliceThickness = [SPACING, SPACING], THICKNESS
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = (pixels + 1024).astype(np.int16).tobytes()
        ds.save_as(folder / f"1-{k + 1:03d}.dcm", enforce_file_format=True)


def series_hu() -> np.ndarray:
    """(slices, rows, columns) HU values, none two voxels alike along any axis so orientation errors show."""
    k, r, c = np.meshgrid(*(np.arange(n) for n in SERIES_SHAPE[::-1]), indexing="ij")
    hu = 10 * c + 200 * r + k
    hu[:, :4] = -1000
    return hu.astype(np.int16)


def label_affine(shift_mm: float = 0.0) -> np.ndarray:
    """NIfTI affine (RAS) of the series grid with axes (column, row, slice), as DICOM converters store it."""
    affine = np.diag([-SPACING, -SPACING, THICKNESS, 1.0])
    affine[:3, 3] = ORIGIN * (-1, -1, 1) + (0.0, 0.0, shift_mm)
    return affine


def nih_label() -> np.ndarray:
    label = np.zeros(SERIES_SHAPE, np.uint8)
    label[4:9, 8:12, 1:4] = 1
    return label


def write_nih(root: Path) -> tuple[Path, Path]:
    """Patients 1 (good), 2 (no label), 3 (label 7.5 mm off), label 4 (no patient)."""
    data, labels = root / "NIH" / "Pancreas-CT", root / "TCIA_pancreas_labels"
    for number in (1, 2, 3):
        write_series(data / f"PANCREAS_{number:04d}" / "1.2.3.study" / "1.2.3.series", series_hu())
    save(labels / "label0001.nii.gz", nih_label(), label_affine())
    save(labels / "label0003.nii.gz", nih_label(), label_affine(shift_mm=7.5))
    save(labels / "label0004.nii.gz", nih_label(), label_affine())
    return root / "NIH", labels


def test_nih_reports_missing_label_and_geometry_mismatch_together(tmp_path):
    root, labels = write_nih(tmp_path)
    output = tmp_path / "nih.json"
    with pytest.raises(DatalistError) as info:
        nih(str(root), str(labels), str(output))
    message = str(info.value)
    series = root / "Pancreas-CT" / "PANCREAS_0002" / "1.2.3.study" / "1.2.3.series"
    assert message.startswith("3 of 4 cases are invalid:")
    assert f"{series}: no label found for case PANCREAS_0002" in message
    assert f"{labels / 'label0003.nii.gz'}: label affine differs from the image affine by up to 7.5 mm" in message
    assert f"{labels / 'label0004.nii.gz'}: no image found for case PANCREAS_0004" in message
    assert not output.exists()

    nih(str(root), str(labels), str(output), skip_invalid=True)
    [entry] = read(output)["training"]
    assert entry == {
        "image": "NIH/Pancreas-CT/PANCREAS_0001/1.2.3.study/1.2.3.series",
        "label": "TCIA_pancreas_labels/label0001.nii.gz",
    }
    image = LoadImage(image_only=True, ensure_channel_first=True)(tmp_path / entry["image"])
    assert image.shape == (1, *SERIES_SHAPE)


def test_nih_converts_series_to_nifti_on_the_label_grid(tmp_path):
    root, labels = write_nih(tmp_path)
    output, converted = tmp_path / "nih.json", tmp_path / "nifti"
    nih(str(root), str(labels), str(output), convert_to=str(converted), skip_invalid=True)
    [entry] = read(output)["training"]
    assert entry["image"] == "nifti/PANCREAS_0001.nii.gz"
    nifti = nib.load(converted / "PANCREAS_0001.nii.gz")
    assert nifti.get_data_dtype() == np.int16
    np.testing.assert_allclose(nifti.affine, label_affine(), atol=1e-4)
    np.testing.assert_array_equal(np.asarray(nifti.dataobj), series_hu().transpose(2, 1, 0))
    assert sorted(p.name for p in converted.iterdir()) == ["PANCREAS_0001.nii.gz", "PANCREAS_0003.nii.gz"]


# ---- any folder
def test_folder_pairs_by_name_and_reports_unpaired_files(tmp_path):
    for name in ("a", "b", "c"):
        save(tmp_path / "ct" / f"case_{name}_0000.nii.gz", ct_array())
    for name in ("a", "b", "d"):
        save(tmp_path / "seg" / f"case_{name}.nii.gz", label_array())
    output = tmp_path / "out" / "folder.json"
    images, labels = str(tmp_path / "ct" / "*.nii.gz"), str(tmp_path / "seg" / "*.nii.gz")
    with pytest.raises(DatalistError) as info:
        folder(images, str(output), labels, image_postfix="_0000")
    message = str(info.value)
    assert message.startswith("2 of 4 cases are invalid:")
    assert f"{tmp_path / 'ct' / 'case_c_0000.nii.gz'}: no label found for case case_c" in message
    assert f"{tmp_path / 'seg' / 'case_d.nii.gz'}: no image found for case case_d" in message

    folder(images, str(output), labels, match=r"case_(?P<case>[ab])", skip_invalid=True)
    content = read(output)
    assert [e["image"] for e in content["training"]] == [f"../ct/case_{n}_0000.nii.gz" for n in "ab"]
    assert [e["label"] for e in content["training"]] == [f"../seg/case_{n}.nii.gz" for n in "ab"]
    excluded = read(tmp_path / "out" / "folder.excluded.json")["excluded"]
    assert sorted(e["reason"] for e in excluded) == ["name does not match --match 'case_(?P<case>[ab])'"] * 2

    unlabelled = tmp_path / "out" / "test.json"
    folder(images, str(unlabelled), skip_invalid=True)
    assert read(unlabelled)["numTest"] == 3


def test_a_broken_msd_dataset_json_is_named_with_its_line(tmp_path, monkeypatch):
    root = write_msd(tmp_path / "Task07_Pancreas")
    (root / "dataset.json").write_text('{"training": [\n')
    output = tmp_path / "datalist.json"
    monkeypatch.setattr(sys, "argv", ["prepare", "msd", "--root", str(root), "--output", str(output)])
    with pytest.raises(SystemExit) as info:
        main()
    assert str(info.value.code).startswith(f"error: {root / 'dataset.json'}: not valid JSON: Expecting value at line 2")
    assert not output.exists()


def test_a_separate_validation_datalist_trains_on_every_case_of_the_datalist(tmp_path):
    train_root = write_msd(tmp_path / "train", names=[f"pancreas_{i:03d}" for i in range(3)])
    val_root = write_msd(tmp_path / "val", names=["pancreas_050", "pancreas_051"])
    parser = bundle_parser(["train.yaml"])
    parser["datalist_file"] = str(train_root / "dataset.json")
    parser["val_datalist_file"] = str(val_root / "dataset.json")
    train, val = parser.get_parsed_content("data_split")
    assert sorted(Path(d["image"]).name for d in train) == [f"pancreas_{i:03d}.nii.gz" for i in range(3)]
    assert sorted(Path(d["image"]).name for d in val) == ["pancreas_050.nii.gz", "pancreas_051.nii.gz"]
    assert all(Path(d["label"]).is_file() for d in val)
