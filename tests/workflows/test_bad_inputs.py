"""Bad input end to end: training refuses to start with a report of every bad case; odd but valid cases train."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.bundle_cli import BUNDLE_ROOT, run_bundle

pytestmark = pytest.mark.slow


def _save(array: np.ndarray, affine: np.ndarray, path: Path) -> str:
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path.name


def _write_bad_training_set(root: Path) -> tuple[Path, dict[str, str]]:
    """
    An MSD-style folder with 2 good phantom cases, 1 small one (smaller than the ROI: valid) and one case per
    kind of bad input; returns the folder and, per bad kind, the file the report must name.
    """
    from scripts.phantom import write_dataset

    data = write_dataset(root / "data", domain="source", cases=2, seed=0)
    spec = json.loads((data / "dataset.json").read_text())
    good_image = nib.load(str(data / spec["training"][0]["image"]))
    good_label = nib.load(str(data / spec["training"][0]["label"]))
    ct, seg, affine = np.asarray(good_image.dataobj), np.asarray(good_label.dataobj), good_image.affine
    images, labels = data / "imagesTr", data / "labelsTr"
    cases = {
        # kind: (image array, label array, label affine)
        "small": (ct[70:94, 78:102, 24:40], seg[70:94, 78:102, 24:40], affine),
        "two_d": (ct[:, :, 30], seg[:, :, 30], affine),
        "four_d": (np.stack([ct, ct], axis=-1), seg, affine),
        "nan": (np.where(seg > 0, np.nan, ct).astype(np.float32), seg, affine),
        "mr_like": ((ct.astype(np.float32) + 1024.0) * 0.5, seg, affine),
        "shape_mismatch": (ct, seg[:-4], affine),
        "affine_mismatch": (ct, seg, affine + np.pad([[5.0], [0.0], [0.0]], ((0, 1), (3, 0)))),
        "empty_label": (ct, np.zeros_like(seg), affine),
        "label_values": (ct, np.where(seg > 0, 7, 0).astype(np.uint8), affine),
    }
    expected = {}
    for kind, (image, label, label_affine) in cases.items():
        image_name = _save(image, affine, images / f"{kind}.nii.gz")
        label_name = _save(label, label_affine, labels / f"{kind}.nii.gz")
        spec["training"].append({"image": f"./imagesTr/{image_name}", "label": f"./labelsTr/{label_name}"})
        image_side = kind in ("two_d", "four_d", "nan", "mr_like")
        expected[kind] = str((images if image_side else labels) / f"{kind}.nii.gz")
    truncated = (data / spec["training"][1]["image"]).read_bytes()
    (images / "truncated.nii.gz").write_bytes(truncated[: len(truncated) // 3])
    _save(seg, affine, labels / "truncated.nii.gz")
    spec["training"].append({"image": "./imagesTr/truncated.nii.gz", "label": "./labelsTr/truncated.nii.gz"})
    expected["truncated"] = str(images / "truncated.nii.gz")
    spec["training"].append({"image": "./imagesTr/missing.nii.gz", "label": "./labelsTr/missing.nii.gz"})
    expected["missing"] = str(images / "missing.nii.gz")
    expected.pop("small")
    (data / "dataset.json").write_text(json.dumps(spec))
    return data, expected


REASONS = {
    "two_d": "not a 3D image",
    "four_d": "2 channels",
    "nan": "NaN",
    "mr_like": "MR-like",
    "shape_mismatch": "label shape",
    "affine_mismatch": "affine",
    "empty_label": "empty label",
    "label_values": "unexpected label values 7",
    "truncated": "truncated",
    "missing": "file not found",
}


def test_training_refuses_to_start_and_reports_every_bad_case(tmp_path):
    data, expected = _write_bad_training_set(tmp_path)
    args = ["train.yaml"]
    configs = json.dumps([str(BUNDLE_ROOT / "configs" / name) for name in args])
    result = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "--config_file", configs, "--dataset_dir", str(data),
         "--output_dir", str(tmp_path / "run"), "--num_workers", "0"],
        cwd=BUNDLE_ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode != 0
    report = result.stderr[result.stderr.index("DatalistError: ") :]
    assert f"{len(expected)} of {len(expected) + 3} cases are invalid" in report
    lines = report.splitlines()
    for kind, path in expected.items():
        line = next((line for line in lines if line.strip().startswith(f"{path}:")), None)
        assert line is not None, f"{kind}: {path} not reported in\n{report}"
        assert REASONS[kind] in line.split(f"{path}: ")[1], f"{kind}: reason missing in {line!r}"
    assert not any("small.nii.gz:" in line or "source_00" in line for line in lines), "a valid case was refused"
    assert not (tmp_path / "run").exists(), "training started despite bad cases"


def test_a_volume_smaller_than_the_patch_trains(tmp_path):
    data, _ = _write_bad_training_set(tmp_path)
    spec = json.loads((data / "dataset.json").read_text())
    spec["training"] = [item for item in spec["training"] if "source_" in item["image"] or "small" in item["image"]]
    (data / "dataset.json").write_text(json.dumps(spec))
    run_bundle(
        "run",
        ["train.yaml"],
        dataset_dir=str(data),
        output_dir=str(tmp_path / "run"),
        num_workers=0,
        max_epochs=1,
        val_interval=1,
        val_fraction=0.34,
        split_seed=1,
        roi_size=[32, 32, 32],
        **{"network_def#channels": [8, 16, 32]},
    )
    assert (tmp_path / "run" / "models" / "checkpoint_final.pt").is_file()


def _bundle_command(config: str, *flags: str, cwd=BUNDLE_ROOT) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "monai.bundle", "run", "--config_file", config, *flags]
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(
    "config, flags, message",
    [
        ("inference.yaml", ["--roi_sise", "[32,32,32]"], "unknown config key 'roi_sise' (did you mean 'roi_size'?)"),
        ("train.yaml", ["--max_epoch", "1"], "unknown config key 'max_epoch' (did you mean 'max_epochs'?)"),
        ("inference.yaml", ["--sw_batch_size", "abc"], "--sw_batch_size 'abc': expected an integer (the config's value is 4)"),
        # fire passes "false" on as a string, which would count as true: the overlay would still be written
        ("inference.yaml", ["--save_overlay", "false"], "--save_overlay 'false': expected True or False ('false' would be"),
    ],
    ids=["inference-typo", "train-typo", "wrong-type", "lowercase-bool"],
)
def test_a_misspelt_or_mistyped_override_is_refused_before_anything_runs(tmp_path, config, flags, message):
    out = tmp_path / "out"
    result = _bundle_command(str(BUNDLE_ROOT / "configs" / config), *flags, "--output_dir", str(out))
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-2000:]
    assert not out.exists(), "nothing is written before the refusal"


@pytest.mark.parametrize(
    "content, message",
    [
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n", "a Git LFS pointer, not the weights"),
        (None, "a TorchScript module, not a state dict"),
    ],
    ids=["lfs-pointer", "torchscript"],
)
def test_a_checkpoint_that_is_no_state_dict_is_named_and_never_loaded_unsafely(tmp_path, content, message):
    checkpoint = BUNDLE_ROOT / "models" / "model.ts" if content is None else tmp_path / "model.pt"
    if content is not None:
        checkpoint.write_bytes(content)
    result = _bundle_command(
        str(BUNDLE_ROOT / "configs" / "inference.yaml"), "--checkpoint", str(checkpoint), "--output_dir", str(tmp_path / "o")
    )
    assert result.returncode != 0
    assert f"InputError: {checkpoint}: {message}" in result.stderr, result.stderr[-2000:]
    assert "weights_only=False" not in result.stderr


def test_training_without_a_validation_case_is_refused_before_it_trains(tmp_path):
    """Two valid cases and val_fraction 0.2: no validation case, so no model.pt would ever be written."""
    from scripts.phantom import write_dataset

    data = write_dataset(tmp_path / "two", "source", cases=2, seed=3)
    out = tmp_path / "run"
    result = _bundle_command(
        str(BUNDLE_ROOT / "configs" / "train.yaml"), "--dataset_dir", str(data), "--output_dir", str(out),
        "--num_workers", "0",
    )
    assert result.returncode != 0
    assert "val_fraction 0.2 of 2 case(s) leaves no validation case" in result.stderr, result.stderr[-2000:]
    assert not (out / "models").exists()
