"""Datalists: inference inputs resolved to cases, datalist JSON read with errors that name the file and the entry."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from scripts.data.datalists import extend_split, read_datalist, resolve_images
from scripts.data.errors import InputError


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
    path = tmp_path / "list.json"
    path.write_text(content)
    with pytest.raises(InputError, match=f"^{path}: {message}"):
        read_datalist(path)

def test_datalist_paths_are_resolved_against_its_folder_and_other_keys_kept(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "dataset.json"
    path.write_text(
        '{"training": [{"image": "a.nii.gz", "label": "../b.nii.gz", "organs": "o/a.nii.gz", "fold": 1}], '
        '"test": ["c.nii"]}'
    )
    assert read_datalist(path, sections=("training", "test")) == [
        {
            "image": str(tmp_path / "sub" / "a.nii.gz"),
            "label": str(tmp_path / "b.nii.gz"),
            "organs": str(tmp_path / "sub" / "o" / "a.nii.gz"),
            "fold": 1,
        },
        {"image": str(tmp_path / "sub" / "c.nii")},
    ]


def test_a_split_without_validation_cases_is_refused():
    from scripts.data.datalists import split_datalist

    cases = [{"image": f"{i}.nii.gz"} for i in range(5)]
    training, validation = split_datalist(cases, 0.2, seed=0)
    assert len(training) == 4 and len(validation) == 1
    assert sorted(c["image"] for c in training + validation) == sorted(c["image"] for c in cases)
    assert split_datalist(cases, 0.2, seed=0) == [training, validation], "seeded"
    with pytest.raises(ValueError, match=r"val_fraction 0.2 of 2 case\(s\) leaves no validation case"):
        split_datalist(cases[:2], 0.2)
    with pytest.raises(ValueError, match=r"val_fraction must be in \(0, 1\)"):
        split_datalist(cases, 0.0)


def test_training_reads_its_datalist_as_monai_does_and_refuses_a_bad_entry_by_name(tmp_path):
    from monai.data import load_decathlon_datalist

    from scripts.bundle import bundle_parser

    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({"training": [{"image": "a.nii.gz", "label": "a_seg.nii.gz", "fold": 0}]}))
    parser = bundle_parser(["train.yaml"], {"datalist_file": str(path)})
    assert parser.get_parsed_content("datalist") == load_decathlon_datalist(str(path), True, "training")
    path.write_text(json.dumps({"training": [{"label": "a_seg.nii.gz"}]}))
    parser = bundle_parser(["train.yaml"], {"datalist_file": str(path)})
    with pytest.raises(RuntimeError) as error:
        parser.get_parsed_content("datalist")
    assert str(error.value.__cause__) == f"{path}: training[0] has no 'image' key: {{'label': 'a_seg.nii.gz'}}"


def test_split_labelled_keeps_the_stated_fraction_of_labels_and_drops_the_others():
    from scripts.data.datalists import split_labelled

    cases = [{"image": f"/d/{i}.nii.gz", "label": f"/d/{i}_seg.nii.gz"} for i in range(10)]
    labelled, unlabelled = split_labelled(cases, 0.2, seed=3)
    assert len(labelled) == 2 and len(unlabelled) == 8
    assert all("label" in c for c in labelled) and all(set(c) == {"image"} for c in unlabelled)
    assert sorted(c["image"] for c in labelled + unlabelled) == sorted(c["image"] for c in cases)
    assert split_labelled(cases, 0.2, seed=3) == [labelled, unlabelled]  # seeded
    assert len(split_labelled(cases, 0.01)[0]) == 1  # at least one labelled case
    with pytest.raises(ValueError, match="labelled_fraction"):
        split_labelled(cases, 0.0)


def test_extend_split_adds_the_last_cases_of_another_datalist_to_validation_in_order():
    split = [[{"image": "a"}, {"image": "b"}], [{"image": "c"}]]
    extra = [{"image": f"w{i}"} for i in range(4)]
    training, validation = extend_split(split, extra, val_cases=1)
    assert [e["image"] for e in training] == ["a", "b", "w0", "w1", "w2"]
    assert [e["image"] for e in validation] == ["c", "w3"]
    assert [e["image"] for e in split[0]] == ["a", "b"], "the given split is not changed"
    assert extend_split(split, extra, val_cases=0)[1] == split[1]


@pytest.mark.parametrize("val_cases", [-1, 4])
def test_extend_split_refuses_a_validation_count_that_leaves_no_training_case(val_cases):
    with pytest.raises(ValueError, match=r"val_cases must be in \[0, 4\)"):
        extend_split([[], []], [{"image": str(i)} for i in range(4)], val_cases)


def test_extend_split_refuses_a_split_that_is_not_training_and_validation():
    with pytest.raises(ValueError, match="training, validation"):
        extend_split([[{"image": "a"}]], [{"image": "b"}], 0)
