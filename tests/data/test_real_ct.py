"""
Real scanner DICOM (../shared/data/real_ct, see its README.md): reading geometry and the shipped model's output
geometry. Skipped when the folder is absent (a fresh clone has no ../shared).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest

from scripts.bundle import bundle_parser
from scripts.data.dicom import read_series
from scripts.data.dicom_seg import dicom_seg_frames, reference_problems, write_dicom_seg
from scripts.data.readers import load_input
from tests.bundle_cli import BUNDLE_ROOT, REAL_CT

TOTALSEG_B = REAL_CT / "totalseg_b_dicom"
IRCAD = REAL_CT / "ircad_1.1" / "PATIENT_DICOM"

pytestmark = [
    pytest.mark.real_ct,
    pytest.mark.skipif(not REAL_CT.is_dir(), reason=f"{REAL_CT} is absent"),
]


def _header_affine(folder) -> tuple[np.ndarray, int]:
    """RAS affine of (columns, rows, slices) from the headers alone, slices in InstanceNumber order."""
    headers = sorted(
        (pydicom.dcmread(f, stop_before_pixels=True) for f in folder.iterdir()), key=lambda d: int(d.InstanceNumber)
    )
    first, last = headers[0], headers[-1]
    orientation = np.asarray(first.ImageOrientationPatient, dtype=float)
    row_spacing, column_spacing = (float(v) for v in first.PixelSpacing)
    lps = np.eye(4)
    lps[:3, 0] = orientation[:3] * column_spacing
    lps[:3, 1] = orientation[3:] * row_spacing
    lps[:3, 2] = (np.asarray(last.ImagePositionPatient, float) - np.asarray(first.ImagePositionPatient, float)) / (
        len(headers) - 1
    )
    lps[:3, 3] = np.asarray(first.ImagePositionPatient, float)
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps, len(headers)


@pytest.mark.parametrize(
    "folder, shape, spacing",
    [(TOTALSEG_B, (512, 512, 20), (0.977, 0.977, 2.0)), (IRCAD, (512, 512, 129), (0.57, 0.57, 1.6))],
    ids=["totalseg_b_jpeg2000", "ircad_1.1"],
)
def test_real_series_geometry(folder, shape, spacing):
    image = load_input(folder)
    assert tuple(image.shape) == (1, *shape)  # README: shape
    np.testing.assert_allclose(
        np.linalg.norm(image.affine.numpy()[:3, :3], axis=0), spacing, atol=1e-3
    )  # README: spacing
    expected, slices = _header_affine(folder)
    assert slices == shape[2]
    np.testing.assert_allclose(image.affine.numpy(), expected, atol=1e-4)
    assert image.min() == -1024.0 and image.max() > 1000.0  # rescaled to HU: air and bone


def test_totalseg_organ_map_lies_on_soft_tissue():
    """Read with our geometry, the CT under TotalSegmentator's spleen, liver and pancreas is soft tissue; any axis flip breaks this."""
    image = load_input(TOTALSEG_B)
    ct = nib.as_closest_canonical(nib.Nifti1Image(image[0].numpy(), image.affine.numpy()))
    organs = nib.as_closest_canonical(nib.load(str(REAL_CT / "totalseg_b_seg.nii.gz")))
    assert ct.shape == organs.shape
    np.testing.assert_allclose(ct.affine, organs.affine, atol=1e-3)
    hu, labels = np.asarray(ct.dataobj), np.asarray(organs.dataobj)
    for label in (1, 5, 7):  # spleen, liver, pancreas
        values = hu[labels == label]
        assert values.size > 1000 and ((values > -50) & (values < 300)).mean() > 0.99, label


def test_seg_of_an_anonymised_series_is_refused_clearly(tmp_path):
    sources, _ = read_series(TOTALSEG_B, stop_before_pixels=True)  # its UIDs were emptied by the anonymiser
    # SOP class and instance UIDs come back from the file meta header; the study and series UIDs cannot
    assert reference_problems(sources) == [
        "20 of 20 source slices have no StudyInstanceUID",
        "20 of 20 source slices have no SeriesInstanceUID",
    ]
    with pytest.raises(ValueError, match="a DICOM SEG cannot reference this series: 20 of 20 source slices have no St"):
        write_dicom_seg(np.zeros((20, 512, 512), np.uint8), sources, tmp_path / "seg.dcm")
    assert not list(tmp_path.iterdir())


@pytest.fixture(scope="module")
def totalseg_inference(tmp_path_factory):
    """The shipped model on the JPEG 2000 series through the inference config (about 20 s on 2 cores)."""
    out = tmp_path_factory.mktemp("totalseg_b")
    parser = bundle_parser(["inference.yaml"])
    parser.update(
        {"bundle_root": str(BUNDLE_ROOT), "input_path": str(TOTALSEG_B), "output_dir": str(out), "save_dicom_seg": True}
    )
    return parser.get_parsed_content("batch_inference").run(), out


def test_shipped_model_output_has_the_input_and_organ_map_geometry(totalseg_inference):
    records, out = totalseg_inference
    assert [(r.case, r.status) for r in records] == [("totalseg_b_dicom", "ok")]
    mask = nib.load(str(out / "totalseg_b_dicom_seg.nii.gz"))
    image = load_input(TOTALSEG_B)
    assert mask.shape == tuple(image.shape[1:]) and mask.get_data_dtype() == np.uint8
    np.testing.assert_allclose(mask.affine, image.affine.numpy(), atol=1e-4)
    organs = nib.as_closest_canonical(nib.load(str(REAL_CT / "totalseg_b_seg.nii.gz")))
    canonical = nib.as_closest_canonical(mask)
    assert canonical.shape == organs.shape
    np.testing.assert_allclose(canonical.affine, organs.affine, atol=1e-3)
    assert (out / "totalseg_b_dicom_seg_overlay.png").stat().st_size > 10_000
    # the series has no study and series UIDs: found before inference, no SEG, the NIfTI mask all the same
    assert not (out / "totalseg_b_dicom_seg.dcm").exists()
    assert records[0].notes == [
        "no DICOM SEG: the series cannot be referenced (20 of 20 source slices have no StudyInstanceUID; "
        "20 of 20 source slices have no SeriesInstanceUID)"
    ]


def test_seg_frames_read_back_equal_the_nifti_mask_on_the_jpeg2000_series(totalseg_inference, tmp_path):
    """The SEG of the shipped model's mask, on the series with its study and series UIDs filled in, read back."""
    import highdicom as hd
    from pydicom.uid import generate_uid

    _, out = totalseg_inference
    sources, _ = read_series(TOTALSEG_B, stop_before_pixels=True)
    study, series = generate_uid(), generate_uid()
    for ds in sources:
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    mask = nib.load(str(out / "totalseg_b_dicom_seg.nii.gz"))
    volume = np.asarray(mask.dataobj)
    assert volume.any(), "the check needs a non-empty mask"
    write_dicom_seg(dicom_seg_frames(volume, mask.affine, sources), sources, tmp_path / "seg.dcm")
    seg = hd.seg.segread(tmp_path / "seg.dcm")
    instance_of_slice = {str(ds.file_meta.MediaStorageSOPInstanceUID): k for k, ds in enumerate(sources)}
    frames = seg.pixel_array
    assert frames.shape == (20, 512, 512)
    for index, group in enumerate(seg.PerFrameFunctionalGroupsSequence):
        referenced = group.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        k = instance_of_slice[str(referenced)]
        # the NIfTI mask is (columns, rows, slices) of the reader; a SEG frame is (rows, columns) of its slice
        np.testing.assert_array_equal(frames[index], volume[:, :, k].T, err_msg=f"frame {index} (slice {k})")
