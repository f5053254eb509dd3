"""
Inference inputs (NIfTI, NRRD, DICOM series incl. JPEG 2000 / JPEG-LS) and clinical outputs (mask, probability,
entropy, DICOM SEG, overlay, run summary, fault tolerance), on tiny synthetic data built here.

The batch tests run the real ``configs/inference.yaml`` with one override: ``network_def`` is a 1x1x1
convolution whose weights (written here) call "pancreas" every voxel above ``BLOB_HU``, so each expected
mask is known exactly and a case takes well under a second.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from monai.handlers import CheckpointLoader
from monai.transforms import LoadImage
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    SegmentationStorage,
    generate_uid,
)

from scripts.bundle import bundle_parser
from scripts.data.datalists import resolve_images
from scripts.data.dicom import read_series
from scripts.data.errors import InputError
from scripts.data.readers import load_input
from scripts.inference.batch import BatchInferenceError, mask_volume_ml
from scripts.transforms import predictive_entropy
from tests.bundle_cli import BUNDLE_ROOT

BLOB_HU = 100.0
TINY_NET = {"_target_": "torch.nn.Conv3d", "in_channels": 1, "out_channels": 2, "kernel_size": 1}


# ---------------------------------------------------------------- synthetic data
def _ct_volume(shape, blobs=((slice(4, 10), slice(5, 12), slice(2, 6)),)) -> np.ndarray:
    """Air (-1000 HU) around a 40 HU body, with 150 HU blobs (the tiny model's "pancreas")."""
    volume = np.full(shape, -1000.0, dtype=np.float32)
    volume[2:-2, 2:-2, :] = 40.0
    for blob in blobs:
        volume[blob] = 150.0
    return volume


def _nifti(path, volume, affine=None):
    nib.save(
        nib.Nifti1Image(volume.astype(np.int16), np.diag([2.0, 2.0, 2.0, 1.0]) if affine is None else affine), str(path)
    )
    return path


def _write_series(
    folder,
    volume,
    pixel_spacing=(2.0, 2.0),
    slice_spacing=2.0,
    orientation=(1, 0, 0, 0, 1, 0),
    origin=(-20.0, -30.0, 40.0),
    series_uid=None,
    transfer_syntax=ExplicitVRLittleEndian,
    reverse_numbers=False,
):
    """
    Write ``volume`` (columns, rows, slices), in HU, as a CT series: slice k at origin + k * slice_spacing * normal.

    Stored as uint16 with RescaleIntercept -1024; file names are shuffled against the slice order, and
    ``reverse_numbers`` numbers the slices against their positions.
    """
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid, frame_uid = generate_uid(), generate_uid()
    row_dir, col_dir = np.array(orientation[:3], float), np.array(orientation[3:], float)
    normal = np.cross(row_dir, col_dir)
    n = volume.shape[2]
    names = np.random.default_rng(0).permutation(n)
    for k in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^Phantom", "TEST01", "", "O"
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = (
            "20240101",
            "120000",
            "1",
            "",
            "",
        )
        ds.Modality, ds.SeriesNumber, ds.Manufacturer = "CT", 3, "test"
        ds.InstanceNumber = n - k if reverse_numbers else k + 1
        ds.ImagePositionPatient = [float(v) for v in np.asarray(origin) + k * slice_spacing * normal]
        ds.ImageOrientationPatient = [float(v) for v in orientation]
        ds.PixelSpacing = [float(v) for v in pixel_spacing]
        ds.SliceThickness = slice_spacing
        ds.Rows, ds.Columns = volume.shape[1], volume.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = (volume[:, :, k].T + 1024).astype(np.uint16).tobytes()
        if transfer_syntax != ExplicitVRLittleEndian:
            ds.compress(transfer_syntax)
        ds.save_as(folder / f"IM{names[k]:04d}.dcm", enforce_file_format=True)
    return folder


def _expected_affine(volume_shape, pixel_spacing, slice_spacing, orientation, origin):
    """RAS affine of the array (columns, rows, slices): DICOM geometry, LPS -> RAS."""
    row_dir, col_dir = np.array(orientation[:3], float), np.array(orientation[3:], float)
    lps = np.eye(4)
    lps[:3, 0] = row_dir * pixel_spacing[1]  # along a row = increasing column index
    lps[:3, 1] = col_dir * pixel_spacing[0]  # along a column = increasing row index
    lps[:3, 2] = np.cross(row_dir, col_dir) * slice_spacing
    lps[:3, 3] = origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


# ---------------------------------------------------------------- DICOM reading
OBLIQUE = (0.0, 0.8, -0.6, 0.0, 0.6, 0.8)  # rows along (0, .8, -.6), columns along (0, .6, .8): sagittal, tilted


@pytest.mark.parametrize("orientation", [(1, 0, 0, 0, 1, 0), OBLIQUE])
def test_dicom_series_geometry_and_values(tmp_path, orientation):
    volume = np.random.default_rng(1).integers(-1000, 1000, size=(7, 5, 4)).astype(np.float32)
    spacing, thickness, origin = (0.7, 0.5), 2.5, (10.0, -20.0, 30.0)
    folder = _write_series(tmp_path / "s", volume, spacing, thickness, orientation, origin)
    image = load_input(folder)
    assert image.shape == (1, 7, 5, 4) and image.dtype == torch.float32
    np.testing.assert_allclose(
        image.affine.numpy(), _expected_affine(volume.shape, spacing, thickness, orientation, origin), atol=1e-6
    )
    np.testing.assert_array_equal(image[0].numpy(), volume)  # rescale applied, slices in position order
    assert image.meta["filename_or_obj"] == str(folder)


def test_dicom_reader_orders_by_position_and_matches_monai(tmp_path):
    volume = np.random.default_rng(2).integers(-1000, 1000, size=(6, 6, 5)).astype(np.float32)
    folder = _write_series(tmp_path / "s", volume, reverse_numbers=True)
    ours = load_input(folder)
    monai = LoadImage(reader="PydicomReader", ensure_channel_first=True)(str(folder))
    np.testing.assert_allclose(ours.affine.numpy(), monai.affine.numpy(), atol=1e-6)
    np.testing.assert_array_equal(ours.numpy(), monai.numpy())
    # numbered against position: the first slice is the highest one (InstanceNumber 1), still geometry-consistent
    assert ours.affine[2, 2] == pytest.approx(-2.0)
    np.testing.assert_array_equal(ours[0].numpy(), volume[:, :, ::-1])


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, JPEGLSLossless])
def test_compressed_series_decode_losslessly(tmp_path, syntax):
    volume = (
        np.random.default_rng(3).integers(-1000, 2000, size=(40, 36, 3)).astype(np.float32)
    )  # OpenJPEG needs >= 32 px
    folder = _write_series(tmp_path / "s", volume, transfer_syntax=syntax)
    assert pydicom.dcmread(next(folder.iterdir())).file_meta.TransferSyntaxUID == syntax
    np.testing.assert_array_equal(load_input(folder)[0].numpy(), volume)


def test_bad_series_are_refused_naming_the_folder_and_reason(tmp_path):
    volume = _ct_volume((8, 8, 6))
    mixed = _write_series(tmp_path / "mixed", volume)
    _write_series(tmp_path / "other", volume[:, :, :2], origin=(0.0, 0.0, 100.0))
    for f in (tmp_path / "other").iterdir():
        f.rename(mixed / f"other_{f.name}")
    gap = _write_series(tmp_path / "gap", volume)
    sorted(gap.iterdir(), key=lambda f: pydicom.dcmread(f).InstanceNumber)[2].unlink()
    garbage = _write_series(tmp_path / "garbage", volume)
    (garbage / "broken.dcm").write_bytes(b"this is not DICOM" * 20)
    duplicate = _write_series(tmp_path / "duplicate", volume)
    first = next(duplicate.iterdir())
    (duplicate / "copy.dcm").write_bytes(first.read_bytes())
    expected = {
        mixed: "mixes 2 DICOM series",
        gap: "missing slice",
        garbage: "broken.dcm is not a readable DICOM file",
        duplicate: "duplicate slice position",
    }
    for folder, reason in expected.items():
        with pytest.raises(InputError, match=reason) as error:
            load_input(folder)
        assert error.value.path == str(folder)


def test_series_without_a_decoder_is_refused_before_decoding(tmp_path):
    if pydicom.pixels.get_decoder(JPEGLosslessSV1).is_available:
        pytest.skip("a JPEG Lossless decoder is installed here")
    folder = _write_series(tmp_path / "s", _ct_volume((8, 8, 3)))
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
        ds.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8\xff\xd9"])
        ds.save_as(f, enforce_file_format=True)
    with pytest.raises(InputError, match="no installed pixel data decoder for transfer syntax JPEG Lossless.*install"):
        read_series(folder)


def test_nrrd_reads_with_its_geometry(tmp_path):
    nrrd = pytest.importorskip("nrrd")
    data = np.arange(4 * 5 * 3, dtype=np.int16).reshape(4, 5, 3) - 1000
    header = {
        "space": "left-posterior-superior",
        "space directions": np.diag([0.8, 0.9, 2.5]),
        "space origin": np.array([1.0, 2.0, 3.0]),
    }
    nrrd.write(str(tmp_path / "ct.nrrd"), data, header)
    image = load_input(tmp_path / "ct.nrrd")
    np.testing.assert_array_equal(image[0].numpy(), data)
    np.testing.assert_allclose(
        image.affine.numpy(), [[-0.8, 0, 0, -1.0], [0, -0.9, 0, -2.0], [0, 0, 2.5, 3.0], [0, 0, 0, 1]], atol=1e-6
    )


def test_unsupported_or_unreadable_files_name_the_file(tmp_path):
    (tmp_path / "ct.nii.gz").write_bytes(b"garbage, not gzip")
    with pytest.raises(InputError, match="ct.nii.gz: cannot be read"):
        load_input(tmp_path / "ct.nii.gz")
    (tmp_path / "ct.png").write_bytes(b"not a CT")
    with pytest.raises(InputError, match="ct.png: unsupported file type"):
        load_input(tmp_path / "ct.png")


# ---------------------------------------------------------------- resolving inputs
def test_resolve_mixed_folders(tmp_path):
    _nifti(tmp_path / "a.nii.gz", _ct_volume((8, 8, 4)))
    _write_series(tmp_path / "b_series.1", _ct_volume((8, 8, 3)))
    (tmp_path / "c_notes").mkdir()
    (tmp_path / "c_notes" / "readme.txt").write_text("not DICOM")
    (tmp_path / "d.txt").write_text("not an image")
    cases = resolve_images(tmp_path)
    assert cases == [{"image": str(tmp_path / "a.nii.gz")}, {"image": str(tmp_path / "b_series.1")}]
    assert resolve_images(tmp_path / "b_series.1") == [{"image": str(tmp_path / "b_series.1")}]
    (tmp_path / "list.json").write_text(json.dumps([{"image": "b_series.1"}]))
    assert resolve_images(tmp_path / "list.json") == [{"image": str(tmp_path / "b_series.1")}]
    with pytest.raises(ValueError, match="one DICOM file: pass the folder"):
        resolve_images(next((tmp_path / "b_series.1").iterdir()))
    _nifti(tmp_path / "b_series.1" / "stray.nii.gz", _ct_volume((8, 8, 4)))
    with pytest.raises(ValueError, match="holds DICOM files and image files"):
        resolve_images(tmp_path / "b_series.1")


# ---------------------------------------------------------------- post-processing
def test_predictive_entropy_range_and_binary_form():
    p = torch.tensor([0.0, 0.5, 1.0, 0.2]).reshape(1, 4, 1, 1)
    h = predictive_entropy(p, dim=0, normalize=False)  # one channel: the foreground probability, in nats
    assert h.shape == (1, 4, 1, 1)
    np.testing.assert_allclose(
        h.flatten().numpy(), [0.0, np.log(2), 0.0, -(0.2 * np.log(0.2) + 0.8 * np.log(0.8))], atol=1e-6
    )
    torch.testing.assert_close(predictive_entropy(torch.cat([1 - p, p]), dim=0, normalize=False), h)
    torch.testing.assert_close(predictive_entropy(p, dim=0), h / np.log(2))


def test_mask_volume_in_millilitres(tmp_path):
    mask = np.zeros((10, 10, 10), np.uint8)
    mask[:5, :4, :2] = 1  # 40 voxels of 0.5 x 2 x 3 mm = 3 mm^3
    nib.save(nib.Nifti1Image(mask, np.diag([-0.5, 2.0, 3.0, 1.0])), str(tmp_path / "m.nii.gz"))
    assert mask_volume_ml(tmp_path / "m.nii.gz") == pytest.approx(40 * 3.0 / 1000)


# ---------------------------------------------------------------- batch inference with a known "model"
@pytest.fixture(scope="module")
def threshold_model(tmp_path_factory):
    """1x1x1 conv state dict: logit(pancreas) - logit(background) = 100 (x - t), x = HU scaled by the config."""
    parser = bundle_parser(["inference.yaml"])
    low, high = parser["hu_window"]
    t = (BLOB_HU - low) / (high - low)
    state = {"weight": torch.tensor([-50.0, 50.0]).reshape(2, 1, 1, 1, 1), "bias": torch.tensor([50.0 * t, -50.0 * t])}
    path = tmp_path_factory.mktemp("model") / "threshold.pt"
    torch.save(state, path)
    return path


def _run_batch(model, input_path, output_dir, **overrides):
    parser = bundle_parser(["inference.yaml"])
    parser.update(
        {
            "bundle_root": str(BUNDLE_ROOT),
            "input_path": str(input_path),
            "output_dir": str(output_dir),
            "checkpoint": str(model),
            "network_def": TINY_NET,
            "roi_size": [16, 16, 16],
            **overrides,
        }
    )
    return parser.get_parsed_content("batch_inference").run()


def _summary(output_dir):
    with open(output_dir / "summary.csv") as f:
        rows = {row["case"]: row for row in csv.DictReader(f)}
    return rows, json.loads((output_dir / "summary.json").read_text())


def test_outputs_keep_the_input_geometry_with_valid_maps(tmp_path, threshold_model):
    volume = _ct_volume(
        (20, 18, 9), blobs=[(slice(4, 9), slice(5, 10), slice(2, 6)), (slice(13, 15), slice(12, 14), slice(6, 7))]
    )
    # 2 mm (the model's spacing: no resampling, so the expected mask is exact), stored with x and y swapped and flipped
    affine = np.array([[0, -2.0, 0, 10], [-2.0, 0, 0, 20], [0, 0, 2.0, -30], [0, 0, 0, 1]])
    image = _nifti(tmp_path / "ct.nii.gz", volume, affine)
    out = tmp_path / "out"
    records = _run_batch(threshold_model, image, out, save_probability=True, save_entropy=True)
    assert [r.status for r in records] == ["ok"]
    seg, prob, entropy = (nib.load(str(out / f"ct_{p}.nii.gz")) for p in ("seg", "prob", "entropy"))
    for output in (seg, prob, entropy):
        assert output.shape == volume.shape
        np.testing.assert_allclose(output.affine, affine, atol=1e-5)
    assert (
        seg.get_data_dtype() == np.uint8
        and prob.get_data_dtype() == np.float32
        and entropy.get_data_dtype() == np.float32
    )
    p, h, m = prob.get_fdata(), entropy.get_fdata(), np.asarray(seg.dataobj)
    assert 0.0 <= p.min() and p.max() <= 1.0 and p.max() > 0.99
    assert 0.0 <= h.min() and h.max() <= np.log(2) + 1e-6
    np.testing.assert_allclose(
        h,
        -(
            np.where(p > 0, p * np.log(np.maximum(p, 1e-30)), 0)
            + np.where(p < 1, (1 - p) * np.log(np.maximum(1 - p, 1e-30)), 0)
        ),
        atol=1e-4,
    )
    # largest component only (on by default): the big blob, not the small one
    expected = np.zeros(volume.shape, np.uint8)
    expected[4:9, 5:10, 2:6] = 1
    np.testing.assert_array_equal(m, expected)
    assert (p[13:15, 12:14, 6] > 0.5).all(), "the probability map keeps the removed component"
    rows, report = _summary(out)
    assert rows["ct"]["status"] == "ok" and rows["ct"]["error"] == ""
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000
    assert float(rows["ct"]["pancreas_volume_ml"]) == pytest.approx(expected.sum() * voxel_ml, abs=1e-3)
    # the quality estimate: a number in [0, 1], and a flag naming why (this tiny blob is far below an adult pancreas)
    assert 0.0 <= float(rows["ct"]["uncertainty"]) <= 1.0
    assert "outside [20, 200] mL" in rows["ct"]["flag"]
    manifest = json.loads((out / "ct_seg_manifest.json").read_text())
    assert manifest["uncertainty"] == float(rows["ct"]["uncertainty"]) and manifest["flag"] == rows["ct"]["flag"]
    assert rows["ct"]["outputs"].split(";") == [
        str(out / f"ct_{s}") for s in ("seg.nii.gz", "prob.nii.gz", "entropy.nii.gz", "seg_overlay.png")
    ]
    assert report["counts"] == {"ok": 1, "skipped-existing": 0, "failed": 0, "interrupted": 0, "not-run": 0}
    assert (out / "ct_seg_overlay.png").read_bytes()[:4] == b"\x89PNG"


def test_without_largest_component_both_blobs_stay(tmp_path, threshold_model):
    volume = _ct_volume(
        (20, 18, 9), blobs=[(slice(4, 9), slice(5, 10), slice(2, 6)), (slice(13, 15), slice(12, 14), slice(6, 7))]
    )
    _run_batch(
        threshold_model,
        _nifti(tmp_path / "ct.nii.gz", volume),
        tmp_path / "out",
        keep_largest_component=False,
        save_overlay=False,
    )
    assert (
        np.count_nonzero(np.asarray(nib.load(str(tmp_path / "out" / "ct_seg.nii.gz")).dataobj)) == 5 * 5 * 4 + 2 * 2 * 1
    )


def test_dicom_input_gives_nifti_in_its_geometry_and_a_seg_referencing_it(tmp_path, threshold_model):
    volume = _ct_volume((16, 14, 8))
    series_uid = generate_uid()
    folder = _write_series(tmp_path / "series.7", volume, series_uid=series_uid, reverse_numbers=True)
    out = tmp_path / "out"
    _run_batch(threshold_model, folder, out, save_dicom_seg=True)
    seg = nib.load(str(out / "series.7_seg.nii.gz"))  # the case keeps its whole folder name
    image = load_input(folder)
    assert seg.shape == tuple(image.shape[1:])
    np.testing.assert_allclose(seg.affine, image.affine.numpy(), atol=1e-5)
    mask = np.asarray(seg.dataobj)
    np.testing.assert_array_equal(mask, (image[0].numpy() > BLOB_HU).astype(np.uint8))
    dcm = pydicom.dcmread(out / "series.7_seg.dcm")
    assert dcm.Modality == "SEG" and dcm.SOPClassUID == SegmentationStorage
    assert dcm.StudyInstanceUID == pydicom.dcmread(next(folder.iterdir())).StudyInstanceUID
    assert dcm.ReferencedSeriesSequence[0].SeriesInstanceUID == series_uid
    sources, _ = read_series(folder, stop_before_pixels=True)
    slice_of = {ds.SOPInstanceUID: k for k, ds in enumerate(sources)}
    frames = dcm.pixel_array.reshape(-1, dcm.Rows, dcm.Columns)
    for frame, group in zip(frames, dcm.PerFrameFunctionalGroupsSequence):
        k = slice_of[group.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID]
        np.testing.assert_array_equal(frame, mask[:, :, k].T)  # SEG frame (rows, columns) of source slice k
    assert frames.sum() == mask.sum() > 0


def test_done_cases_are_skipped_unfinished_ones_redone_and_nothing_finished_is_lost(tmp_path, threshold_model):
    _nifti(tmp_path / "done.nii.gz", _ct_volume((12, 12, 6)))
    out = tmp_path / "out"
    assert [r.status for r in _run_batch(threshold_model, tmp_path, out)] == ["ok"]
    done_files = {p.name: p.read_bytes() for p in out.glob("done_*")}
    assert set(done_files) == {"done_seg.nii.gz", "done_seg_overlay.png", "done_seg_manifest.json"}
    manifest = json.loads((out / "done_seg_manifest.json").read_text())
    assert manifest["outputs"] == ["done_seg.nii.gz", "done_seg_overlay.png"]
    # a second case whose earlier run died after writing its overlay: no manifest, so not done
    _nifti(tmp_path / "stray.nii.gz", _ct_volume((12, 12, 6)))
    (out / "stray_seg_overlay.png").write_bytes(b"half an earlier run")
    records = _run_batch(threshold_model, tmp_path, out)
    assert [(r.case, r.status) for r in records] == [("done", "skipped-existing"), ("stray", "ok")]
    assert {p.name: p.read_bytes() for p in out.glob("done_*")} == done_files, "a done case is never touched"
    assert (out / "stray_seg_overlay.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "stray_seg_manifest.json").is_file() and (out / "stray_seg.nii.gz").is_file()
    rows, _ = _summary(out)
    assert "replaced the outputs of an unfinished earlier run: ['stray_seg_overlay.png']" in rows["stray"]["notes"]
    assert len(list(out.glob("summary_*.csv"))) == 2, "each run keeps its own timestamped summary"
    assert not list(out.glob("*.partial*")) and not list(out.glob(".partial*")), "no temporary file or folder left"
    records = _run_batch(threshold_model, tmp_path, out, overwrite=True)
    assert [r.status for r in records] == ["ok", "ok"]


def test_an_overwritten_case_loses_the_outputs_the_new_run_does_not_produce(tmp_path, threshold_model):
    image = _nifti(tmp_path / "ct.nii.gz", _ct_volume((12, 12, 6)))
    out = tmp_path / "out"
    _run_batch(threshold_model, image, out, save_probability=True, save_entropy=True)
    assert (out / "ct_prob.nii.gz").is_file() and (out / "ct_entropy.nii.gz").is_file()
    (record,) = _run_batch(threshold_model, image, out, overwrite=True, save_entropy=True)
    assert record.status == "ok"
    assert not (out / "ct_prob.nii.gz").exists(), "a probability map of the earlier mask would disagree with the new one"
    assert (out / "ct_entropy.nii.gz").is_file()
    assert record.notes == ["removed files of the earlier run that this run does not produce: ['ct_prob.nii.gz']"]
    assert sorted(Path(p).name for p in record.outputs) == ["ct_entropy.nii.gz", "ct_seg.nii.gz", "ct_seg_overlay.png"]


def test_a_second_run_into_a_busy_folder_refuses_before_any_work(tmp_path, threshold_model):
    from scripts.inference.batch import OutputFolderBusyError, output_lock

    image = _nifti(tmp_path / "ct.nii.gz", _ct_volume((12, 12, 6)))
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from scripts.inference.batch import output_lock\nimport time\n"
         f"with output_lock({str(out)!r}):\n    print('held', flush=True)\n    time.sleep(60)"],
        cwd=BUNDLE_ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputFolderBusyError, match=f"another inference run is writing into {out}"):
            _run_batch(threshold_model, image, out)
        assert sorted(p.name for p in out.iterdir()) == [".inference.lock"]
    finally:
        holder.kill()
        holder.wait()
    with output_lock(out):  # released when the holder died
        pass
    assert [r.status for r in _run_batch(threshold_model, image, out)] == ["ok"]


def test_a_broken_link_in_a_folder_is_a_failed_case_in_the_summary(tmp_path, threshold_model):
    cases = tmp_path / "cases"
    cases.mkdir()
    _nifti(cases / "good.nii.gz", _ct_volume((12, 12, 6)))
    (cases / "gone.nii.gz").symlink_to(tmp_path / "deleted.nii.gz")
    out = tmp_path / "out"
    with pytest.raises(BatchInferenceError, match="1 of 2 cases failed"):
        _run_batch(threshold_model, cases, out)
    rows, _ = _summary(out)
    assert rows["good"]["status"] == "ok"
    assert rows["gone"]["status"] == "failed" and "file not found" in rows["gone"]["error"]


def test_batch_goes_on_past_bad_cases_and_exits_non_zero(tmp_path, threshold_model):
    """Every kind of bad inference input among good ones: each is reported with its reason, no good case is lost."""
    cases = tmp_path / "cases"
    cases.mkdir()
    volume = _ct_volume((12, 12, 6))
    _nifti(cases / "good.nii.gz", volume)
    _write_series(cases / "good_series", _ct_volume((12, 10, 5)))
    # smaller than the 16^3 window in every dimension: valid, padded by the sliding window
    _nifti(cases / "small.nii.gz", _ct_volume((7, 7, 3), blobs=((slice(3, 5), slice(3, 5), slice(0, 2)),)))
    (cases / "broken.nii.gz").write_bytes(b"\x1f\x8b truncated")
    bad_series = _write_series(cases / "bad_series", _ct_volume((12, 10, 5)))
    (bad_series / "junk.dcm").write_bytes(b"junk" * 100)
    _nifti(cases / "mr.nii.gz", np.random.default_rng(0).uniform(0, 800, (12, 12, 6)))  # no air: not CT in HU
    _nifti(cases / "two_d.nii.gz", volume[:, :, 0])
    _nifti(cases / "four_d.nii.gz", np.stack([volume, volume], axis=-1))
    nan = volume.copy()
    nan[5, 5, 2], nan[6, 6, 3] = np.nan, np.inf
    nib.save(nib.Nifti1Image(nan, np.diag([2.0, 2.0, 2.0, 1.0])), str(cases / "nan.nii.gz"))
    gap_series = _write_series(cases / "gap_series", _ct_volume((12, 10, 6)))
    sorted(gap_series.iterdir(), key=lambda f: pydicom.dcmread(f).InstanceNumber)[2].unlink()
    mixed_series = _write_series(cases / "mixed_series", _ct_volume((12, 10, 5)))
    _write_series(tmp_path / "other", _ct_volume((12, 10, 2)), origin=(0.0, 0.0, 100.0))
    for f in (tmp_path / "other").iterdir():
        f.rename(mixed_series / f"other_{f.name}")
    out = tmp_path / "out"
    args = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        str(BUNDLE_ROOT / "configs" / "inference.yaml"),
    ]
    args += [
        "--input_path",
        str(cases),
        "--output_dir",
        str(out),
        "--checkpoint",
        str(threshold_model),
        "--roi_size",
        "[16,16,16]",
    ]
    args += ["--network_def", json.dumps(TINY_NET)]
    result = subprocess.run(args, check=False, cwd=BUNDLE_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "8 of 11 cases failed" in result.stdout + result.stderr
    rows, report = _summary(out)
    good = {"good", "good_series", "small"}
    assert {c: r["status"] for c, r in rows.items()} == {
        c: "ok" if c in good else "failed"
        for c in ("bad_series", "broken", "four_d", "gap_series", "good", "good_series", "mixed_series", "mr",
                  "nan", "small", "two_d")
    }
    assert (
        "junk.dcm is not a readable DICOM file" in rows["bad_series"]["error"]
        and str(bad_series) in rows["bad_series"]["error"]
    )
    assert "broken.nii.gz: cannot be read" in rows["broken"]["error"]
    assert "not CT in Hounsfield units" in rows["mr"]["error"]
    assert "two_d.nii.gz: not a 3D image" in rows["two_d"]["error"]
    assert "four_d.nii.gz: 2 channels" in rows["four_d"]["error"]
    assert "nan.nii.gz: non-finite voxels: 1 NaN, 1 Inf" in rows["nan"]["error"]
    assert f"{gap_series}: " in rows["gap_series"]["error"] and "missing slice" in rows["gap_series"]["error"]
    assert f"{mixed_series}: mixes 2 DICOM series" in rows["mixed_series"]["error"]
    assert float(rows["small"]["pancreas_volume_ml"]) > 0
    assert report["counts"] == {"ok": 3, "skipped-existing": 0, "failed": 8, "interrupted": 0, "not-run": 0}
    written = sorted(p.name for p in out.iterdir() if not p.name.startswith(("summary", ".inference.lock")))
    assert written == [
        "good_seg.nii.gz",
        "good_seg_manifest.json",
        "good_seg_overlay.png",
        "good_series_seg.nii.gz",
        "good_series_seg_manifest.json",
        "good_series_seg_overlay.png",
        "small_seg.nii.gz",
        "small_seg_manifest.json",
        "small_seg_overlay.png",
    ], "failed cases leave no file"


def test_dataset_dir_is_the_input_and_never_generates_the_demo(tmp_path, threshold_model, monkeypatch):
    """The model zoo's --dataset_dir segments the user's folder; the demo phantom appears only for the demo input."""
    cases = tmp_path / "cases"
    cases.mkdir()
    for name in ("a", "b"):
        _nifti(cases / f"{name}.nii.gz", _ct_volume((20, 18, 9)))
    demo = tmp_path / "demo"
    parser = bundle_parser(
        ["inference.yaml"],
        {"dataset_dir": str(cases), "demo_dir": str(demo), "output_dir": str(tmp_path / "out"),
         "checkpoint": str(threshold_model), "network_def": TINY_NET, "roi_size": [16, 16, 16]},
    )
    assert parser.get_parsed_content("datalist") == [{"image": str(cases / "a.nii.gz")}, {"image": str(cases / "b.nii.gz")}]
    loads = []
    load = CheckpointLoader.__call__
    monkeypatch.setattr(CheckpointLoader, "__call__", lambda self, engine: (loads.append(engine), load(self, engine)))
    records = parser.get_parsed_content("batch_inference").run()
    assert [r.status for r in records] == ["ok", "ok"]
    assert len(loads) == 1, "the weights are loaded once per run, not once per case"
    assert not demo.exists(), "a user's input must not generate the demo phantom"
    # the demo input (the default) is generated once, then reused
    demo_parser = bundle_parser(["inference.yaml"], {"demo_dir": str(demo), "phantom_cases": 1})
    assert len(demo_parser.get_parsed_content("datalist")) == 1 and (demo / "dataset.json").is_file()


def test_input_path_stays_an_alias_of_dataset_dir(tmp_path):
    image = _nifti(tmp_path / "x.nii.gz", _ct_volume((20, 18, 9)))
    parser = bundle_parser(["inference.yaml"], {"input_path": str(image), "demo_dir": str(tmp_path / "demo")})
    assert parser.get_parsed_content("datalist") == [{"image": str(image)}]
    assert not (tmp_path / "demo").exists()


def test_a_series_a_seg_cannot_reference_is_found_before_inference_and_keeps_its_nifti(tmp_path, threshold_model, monkeypatch):
    """IRCAD-like: no FrameOfReferenceUID. Overwriting a good case with save_dicom_seg must not lose its mask."""
    from scripts.data.dicom_seg import SaveDicomSegd
    from scripts.inference.batch import BatchInference

    folder = _write_series(tmp_path / "series", _ct_volume((12, 10, 5)))
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        del ds.FrameOfReferenceUID
        ds.save_as(f)
    out = tmp_path / "out"
    (first,) = _run_batch(threshold_model, folder, out)
    assert first.status == "ok"
    calls = []
    infer, check = BatchInference._infer, SaveDicomSegd.reference_problem
    monkeypatch.setattr(BatchInference, "_infer", lambda self, i: (calls.append("inference"), infer(self, i))[1])
    monkeypatch.setattr(SaveDicomSegd, "reference_problem", lambda self, f: (calls.append("seg check"), check(self, f))[1])
    (record,) = _run_batch(threshold_model, folder, out, overwrite=True, save_dicom_seg=True)
    assert calls == ["seg check", "inference"]
    assert record.status == "ok"
    assert record.notes == ["no DICOM SEG: the series cannot be referenced (5 of 5 source slices have no FrameOfReferenceUID)"]
    assert (out / "series_seg.nii.gz").is_file() and not (out / "series_seg.dcm").exists()
    rows, _ = _summary(out)
    assert "no FrameOfReferenceUID" in rows["series"]["notes"]


def test_seg_uids_emptied_in_the_dataset_come_from_the_file_meta(tmp_path):
    from scripts.data.dicom_seg import reference_problems, referenceable_source

    folder = _write_series(tmp_path / "series", _ct_volume((12, 10, 5)))
    sources, _ = read_series(folder, stop_before_pixels=True)
    for ds in sources:
        ds.SOPClassUID, ds.SOPInstanceUID = "", ""
    assert reference_problems(sources) == []
    completed = referenceable_source(sources)
    assert [str(ds.SOPInstanceUID) for ds in completed] == [str(ds.file_meta.MediaStorageSOPInstanceUID) for ds in sources]
    assert all(str(ds.SOPInstanceUID) == "" for ds in sources), "the given datasets are not changed"


@pytest.fixture
def small_filesystem(tmp_path):
    """A mount point factory: ``mount(size, read_only)`` -> a tmpfs folder (skipped where mounting is not allowed)."""
    mounted = []

    def mount(size: str, read_only: bool = False) -> Path:
        target = tmp_path / f"fs{len(mounted)}"
        target.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({result.stderr.decode().strip()})")
        mounted.append(target)
        return target

    yield mount
    for target in mounted:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def test_a_read_only_output_folder_is_refused_naming_it_before_any_work(tmp_path, threshold_model, small_filesystem):
    image = _nifti(tmp_path / "ct.nii.gz", _ct_volume((12, 12, 6)))
    out = small_filesystem("1m", read_only=True)
    with pytest.raises(OSError, match=f"cannot write into output_dir {out}: Read-only file system"):
        _run_batch(threshold_model, image, out)


def test_a_full_disk_fails_the_cases_and_says_where_without_half_written_files(tmp_path, threshold_model, small_filesystem):
    image = _nifti(tmp_path / "ct.nii.gz", _ct_volume((12, 12, 6)))
    out = small_filesystem("64k")
    filler = out / "filler.bin"
    with open(filler, "wb", buffering=0) as f:  # fill the disk to its last block
        try:
            while True:
                f.write(b"\0" * 1024)
        except OSError:
            pass
    with pytest.raises(OSError, match=f"cannot write the run summary into {out}: No space left on device"):
        _run_batch(threshold_model, image, out)
    assert sorted(p.name for p in out.iterdir()) == [".inference.lock", "filler.bin"], "no partial output left"
    filler.unlink()
    (record,) = _run_batch(threshold_model, image, out)
    assert record.status == "ok", "the rerun on a disk with space finishes the case"
