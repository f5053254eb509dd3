"""
deploy/app.py, the MONAI Deploy App SDK app, against the bundle's own inference: its DICOM SEG equals the one of
``python -m monai.bundle run --config_file configs/inference.yaml --save_dicom_seg True`` voxel for voxel, on a
phantom series written here and on the JPEG 2000 series of ../shared/data/real_ct (skipped without it).

The SDK runs in the environment ``deploy/venv.py`` makes (it would change the bundle environment's protobuf); the
tests skip, saying why, when it cannot be made (no package index). The app and the bundle run on the CPU here
(``CUDA_VISIBLE_DEVICES=""``): on a GPU the bundle uses mixed precision and the SDK operator does not.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from scripts.phantom.case import generate_case
from tests.bundle_cli import BUNDLE_ROOT, REAL_CT

pytestmark = pytest.mark.slow

APP = BUNDLE_ROOT / "deploy" / "app.py"
TOTALSEG_B = REAL_CT / "totalseg_b_dicom"
IRCAD = REAL_CT / "ircad_1.1" / "PATIENT_DICOM"
CPU_ONLY = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
VERSION = json.loads((BUNDLE_ROOT / "configs" / "metadata.json").read_text())["version"]


@pytest.fixture(scope="module")
def deploy_python() -> Path:
    """The interpreter with the App SDK (deploy/venv.py makes or reuses its environment: about 1 min the first time)."""
    result = subprocess.run(
        [sys.executable, str(BUNDLE_ROOT / "deploy" / "venv.py")], capture_output=True, text=True, timeout=1800
    )
    if result.returncode != 0:
        pytest.skip(f"no MONAI Deploy App SDK environment (python deploy/venv.py failed): {result.stderr.strip()[-800:]}")
    return Path(result.stdout.strip().splitlines()[-1])


def run_app(python: Path, series: Path, output: Path, model: Path, cwd: Path) -> subprocess.CompletedProcess:
    """``python deploy/app.py -i series -o output -m model`` from ``cwd`` (not the bundle: paths must not depend on it)."""
    args = [str(python), str(APP), "-i", str(series), "-o", str(output), "-m", str(model)]
    return subprocess.run(args, cwd=cwd, env=CPU_ONLY, capture_output=True, text=True, timeout=900)


def run_bundle(series: Path, output: Path, **overrides) -> None:
    """The bundle's own inference with a DICOM SEG (no overlay: the app writes none)."""
    args = [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.yaml"]
    args += ["--dataset_dir", str(series), "--output_dir", str(output), "--save_dicom_seg", "True"]
    args += ["--save_overlay", "False"]
    for key, value in overrides.items():
        args += [f"--{key}", str(value)]
    result = subprocess.run(args, cwd=BUNDLE_ROOT, env=CPU_ONLY, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-6000:]


def seg_frames(path: Path) -> dict[str, np.ndarray]:
    """The SEG's frames by the SOP instance UID of the source slice each covers."""
    seg = hd.seg.segread(path)
    pixels = seg.pixel_array.reshape((-1, int(seg.Rows), int(seg.Columns)))
    frames = {}
    for index, group in enumerate(seg.PerFrameFunctionalGroupsSequence):
        source = group.DerivationImageSequence[0].SourceImageSequence[0]
        frames[str(source.ReferencedSOPInstanceUID)] = pixels[index]
    assert len(frames) == len(pixels), f"{path}: two frames cover one slice"
    return frames


def source_instances(series: Path) -> set[str]:
    """The series' SOP instance UIDs (the file meta header's, which an anonymiser may have left alone)."""
    return {str(pydicom.dcmread(f, stop_before_pixels=True).file_meta.MediaStorageSOPInstanceUID) for f in series.iterdir()}


def assert_same_mask(app_out: Path, bundle_out: Path, case: str, series: Path) -> int:
    """The app's SEG and NIfTI mask equal the bundle's voxel for voxel; returns the mask's voxel count."""
    app_seg, bundle_seg = app_out / f"{case}_seg.dcm", bundle_out / f"{case}_seg.dcm"
    app_frames, bundle_frames = seg_frames(app_seg), seg_frames(bundle_seg)
    assert set(app_frames) == set(bundle_frames) == source_instances(series)  # one frame per source slice
    differing = sum(int(np.count_nonzero(app_frames[uid] != bundle_frames[uid])) for uid in app_frames)
    assert differing == 0, f"{differing} SEG voxels differ"
    voxels = sum(int(np.count_nonzero(f)) for f in app_frames.values())
    assert voxels >= 500, f"the comparison needs a mask, got {voxels} voxels"  # 0.7.0 on totalseg_b: 649
    # the NIfTI masks: the same voxels in space (the SDK stacks slices along the normal, the bundle in the
    # InstanceNumber direction: the slice axis of one may be the other's reversed, with the affine to match)
    app_nifti = nib.as_closest_canonical(nib.load(str(app_out / f"{case}_seg.nii.gz")))
    bundle_nifti = nib.as_closest_canonical(nib.load(str(bundle_out / f"{case}_seg.nii.gz")))
    assert app_nifti.get_data_dtype() == np.uint8 and app_nifti.shape == bundle_nifti.shape
    np.testing.assert_allclose(app_nifti.affine, bundle_nifti.affine, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(app_nifti.dataobj), np.asarray(bundle_nifti.dataobj))
    assert int(np.count_nonzero(np.asarray(app_nifti.dataobj))) == voxels
    # the app's SEG: the source study, the model's segment and version, written atomically (no leftovers)
    seg = pydicom.dcmread(app_seg, stop_before_pixels=True)
    source = pydicom.dcmread(next(series.iterdir()), stop_before_pixels=True)
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    segment = seg.SegmentSequence[0]
    assert segment.SegmentLabel == "Pancreas" and segment.SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Pancreas"
    algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("pancreas_ct_dualssl", VERSION)
    assert sorted(p.name for p in app_out.iterdir()) == [f"{case}_seg.dcm", f"{case}_seg.nii.gz"]
    return voxels


def write_series(folder: Path, hu: np.ndarray, origin, pixel_spacing=(2.0, 2.0), slice_spacing: float = 2.0) -> Path:
    """
    ``hu`` (columns, rows, slices) as a CT series in the usual DICOM orientation (rows along +x LPS, columns along
    +y LPS, slice k at ``origin`` + k * ``slice_spacing`` along +z), uint16 with RescaleIntercept -1024, one file
    per slice. ``pixel_spacing`` is DICOM's (between rows, between columns).
    """
    columns, rows, slices = hu.shape
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    folder.mkdir(parents=True)
    for k in range(slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Phantom^Deploy", "PH01", "", "O"
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = (
            "20260101",
            "120000",
            "1",
            "",
            "",
        )
        ds.Modality, ds.SeriesNumber, ds.Manufacturer, ds.InstanceNumber = "CT", 2, "phantom", k + 1
        ds.ImagePositionPatient = [float(v) for v in np.asarray(origin, float) + np.array([0.0, 0.0, slice_spacing * k])]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [float(v) for v in pixel_spacing]
        ds.SliceThickness = slice_spacing
        ds.Rows, ds.Columns = rows, columns
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = (hu[:, :, k].T + 1024).astype(np.uint16).tobytes()
        ds.save_as(folder / f"IM{k:04d}.dcm", enforce_file_format=True)
    return folder


def write_phantom_series(folder: Path, seed: int = 2000) -> Path:
    """A phantom case (source domain, 2 mm voxels) as a CT series (``write_series``)."""
    case = generate_case("source", seed=seed)
    hu = case.image[::-1, ::-1, :]  # RAS array axes -> columns toward the patient's left, rows toward posterior
    columns, rows, _ = hu.shape
    corner = case.affine @ np.array([columns - 1, rows - 1, 0, 1.0])
    spacing = np.linalg.norm(case.affine[:3, :3], axis=0)
    return write_series(folder, hu, corner[:3] * np.array([-1.0, -1.0, 1.0]), (spacing[1], spacing[0]), spacing[2])


def test_app_seg_equals_the_bundle_seg_on_a_phantom_series(deploy_python, tmp_path):
    series = write_phantom_series(tmp_path / "phantom_ct")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    # -m the bundle folder: the app takes its models/model.ts (the SDK alone would load a folder as no model)
    result = run_app(deploy_python, series, tmp_path / "app", BUNDLE_ROOT, cwd=elsewhere)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    assert not list(elsewhere.iterdir())  # nothing written into the working directory
    run_bundle(series, tmp_path / "bundle")  # the default backend (ONNX Runtime on CPU)
    assert assert_same_mask(tmp_path / "app", tmp_path / "bundle", "phantom_ct", series) > 5000


@pytest.mark.real_ct
@pytest.mark.skipif(not TOTALSEG_B.is_dir(), reason=f"{TOTALSEG_B} is absent")
def test_app_seg_equals_the_bundle_seg_on_the_jpeg2000_series(deploy_python, tmp_path):
    """
    The real JPEG 2000 series with the study and series UIDs that its anonymiser emptied filled in (the SDK's loader
    drops it otherwise, next test); its SOP instance UIDs and SeriesNumber stay empty: both take the UIDs from the
    file meta header, and the app's loader reads the empty SeriesNumber as absent. Pixel data are kept as they are.
    """
    series = tmp_path / "totalseg_b"
    series.mkdir()
    study, series_uid = generate_uid(), generate_uid()
    for path in sorted(TOTALSEG_B.iterdir()):
        ds = pydicom.dcmread(path)
        assert ds.SOPInstanceUID == "" and ds["SeriesNumber"].value is None
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series_uid
        ds.save_as(series / path.name)
    assert pydicom.dcmread(next(series.iterdir())).file_meta.TransferSyntaxUID == pydicom.uid.JPEG2000Lossless
    result = run_app(deploy_python, series, tmp_path / "app", BUNDLE_ROOT / "models" / "model.ts", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    # the SDK runs the TorchScript network: the bundle's PyTorch backend gives the same mask voxel for voxel
    run_bundle(series, tmp_path / "bundle_torch", inference_backend="torch")
    voxels = assert_same_mask(tmp_path / "app", tmp_path / "bundle_torch", "totalseg_b", series)
    # the bundle's default on CPU, ONNX Runtime (logits within 1e-4), differs in at most a few boundary voxels
    run_bundle(series, tmp_path / "bundle_onnx")
    app_frames, onnx_frames = seg_frames(tmp_path / "app" / "totalseg_b_seg.dcm"), seg_frames(
        tmp_path / "bundle_onnx" / "totalseg_b_seg.dcm"
    )
    differing = sum(int(np.count_nonzero(app_frames[uid] != onnx_frames[uid])) for uid in app_frames)
    # logits within 1e-4 flip only voxels at a foreground probability of about 0.5: a few (3 of 649 for 0.7.0)
    assert differing <= max(5, voxels // 1000), f"{differing} of {voxels} voxels differ from the ONNX Runtime mask"


@pytest.mark.real_ct
@pytest.mark.skipif(not TOTALSEG_B.is_dir(), reason=f"{TOTALSEG_B} is absent")
def test_app_refuses_the_anonymised_series_naming_what_the_sdk_loader_needs(deploy_python, tmp_path):
    result = run_app(deploy_python, TOTALSEG_B, tmp_path / "app", BUNDLE_ROOT / "models" / "model.ts", cwd=tmp_path)
    assert result.returncode != 0
    assert (
        "the SDK's DICOMDataLoaderOperator loads no series from the 20 DICOM files in "
        f"{TOTALSEG_B} (20 no StudyInstanceUID, 20 no SeriesInstanceUID; emptied by an anonymiser?)"
    ) in result.stderr
    assert not (tmp_path / "app").exists() or not list((tmp_path / "app").iterdir())


@pytest.mark.real_ct
@pytest.mark.skipif(not IRCAD.is_dir(), reason=f"{IRCAD} is absent")
def test_app_mask_equals_the_bundle_mask_on_the_full_size_series_without_a_seg(deploy_python, tmp_path):
    """IRCAD 1.1 (512 x 512 x 129): an empty SeriesNumber and no FrameOfReferenceUID, so a NIfTI mask and no SEG."""
    result = run_app(deploy_python, IRCAD, tmp_path / "app", BUNDLE_ROOT / "models" / "model.ts", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    reason = "the series cannot be referenced (129 of 129 source slices have no FrameOfReferenceUID)"
    assert f"no DICOM SEG: {reason}" in result.stderr
    run_bundle(IRCAD, tmp_path / "bundle", inference_backend="torch")
    assert json.loads((tmp_path / "bundle" / "summary.json").read_text())["cases"][0]["notes"] == [f"no DICOM SEG: {reason}"]
    assert sorted(p.name for p in (tmp_path / "app").iterdir()) == ["PATIENT_DICOM_seg.nii.gz"]
    app_nifti = nib.as_closest_canonical(nib.load(str(tmp_path / "app" / "PATIENT_DICOM_seg.nii.gz")))
    bundle_nifti = nib.as_closest_canonical(nib.load(str(tmp_path / "bundle" / "PATIENT_DICOM_seg.nii.gz")))
    assert app_nifti.shape == bundle_nifti.shape == (512, 512, 129)
    np.testing.assert_allclose(app_nifti.affine, bundle_nifti.affine, atol=1e-4)
    app_mask, bundle_mask = np.asarray(app_nifti.dataobj), np.asarray(bundle_nifti.dataobj)
    assert np.count_nonzero(app_mask) > 1000
    np.testing.assert_array_equal(app_mask, bundle_mask)


def test_app_refuses_a_model_without_the_deploy_config(deploy_python, tmp_path):
    """A TorchScript export of inference.yaml alone (as before 0.4.0's re-export) is named, before anything runs."""
    series = tmp_path / "series"
    series.mkdir()
    shutil.copy(BUNDLE_ROOT / "models" / "model.ts", tmp_path / "old.ts")
    code = (
        "import sys, zipfile; src, dst = sys.argv[1], sys.argv[2]\n"
        "with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, 'w') as b:\n"
        "    [b.writestr(i, a.read(i.filename)) for i in a.infolist() if not i.filename.endswith('extra/deploy.json')]\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "old.ts"), str(tmp_path / "model.ts")], check=True)
    result = run_app(deploy_python, series, tmp_path / "app", tmp_path / "model.ts", cwd=tmp_path)
    assert result.returncode != 0
    assert f"{tmp_path / 'model.ts'} embeds no deploy.json: re-export it" in result.stderr


def test_app_refuses_non_square_pixels_whose_affine_the_sdk_gets_wrong(deploy_python, tmp_path):
    hu = np.full((12, 10, 4), -1000.0)
    series = write_series(tmp_path / "series", hu, origin=(0.0, 0.0, 0.0), pixel_spacing=(0.7, 0.9))
    result = run_app(deploy_python, series, tmp_path / "app", BUNDLE_ROOT / "models" / "model.ts", cwd=tmp_path)
    assert result.returncode != 0
    assert "has pixels of 0.7 x 0.9 mm, and the SDK's DICOMSeriesToVolumeOperator gives non-square pixels a wrong" in (
        result.stderr
    )
