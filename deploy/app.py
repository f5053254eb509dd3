"""
MONAI Deploy App SDK application of the pancreas_ct_dualssl bundle: a DICOM CT series in, the pancreas mask out as
a DICOM SEG (referencing the series) and a NIfTI file.

    python deploy/app.py -i <DICOM folder> -o <output folder> [-m models/model.ts]

Operators: ``DICOMDataLoaderOperator`` (an empty ``SeriesNumber`` read as absent) ->
``DICOMSeriesSelectorOperator`` (the first CT series) -> ``DICOMSeriesToVolumeOperator`` ->
``MonaiBundleInferenceOperator`` (``configs/inference.yaml`` read with ``configs/deploy.yaml`` over it, both
embedded in the TorchScript model) -> ``BundleSegWriterOperator`` (the SDK's ``DICOMSegmentationWriterOperator``,
written atomically as ``<case>_seg.dcm``) and ``NiftiMaskWriterOperator`` (``<case>_seg.nii.gz``, the input's grid
and RAS affine). ``<case>`` is the input folder's name, as in the bundle's own outputs. Both files hold the mask
``python -m monai.bundle run --config_file configs/inference.yaml --save_dicom_seg True`` writes for the same
series (voxel for voxel, tests/deploy).

``-m`` (or ``HOLOSCAN_MODEL_PATH``) is the TorchScript model, ``models/model.ts`` of this bundle when not given; the
bundle folder itself is accepted too and stands for its ``models/model.ts`` (the SDK alone would load a folder
as a model without a predictor). The transforms come from the ``scripts`` package beside this file.

A series a DICOM SEG cannot reference (study, series or frame-of-reference UID emptied by an anonymiser;
``scripts.data.dicom_seg.reference_problems``) gets its NIfTI mask and no SEG, with a warning that says why, as in
the bundle. The app exits non-zero when it writes no mask (no CT series in the input, a failed operator).

docs/README.md ("MONAI Deploy") gives the installation (``deploy/venv.py``, ``deploy/requirements.txt``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

BUNDLE_ROOT = Path(__file__).resolve().parents[1]
if str(BUNDLE_ROOT) not in sys.path:  # the configs' transforms: scripts.* of this bundle, whatever the working directory
    sys.path.insert(0, str(BUNDLE_ROOT))

from monai.deploy.conditions import CountCondition  # noqa: E402
from monai.deploy.core import AppContext, Application, Fragment, Image, IOType, Operator  # noqa: E402
from monai.deploy.operators.dicom_data_loader_operator import DICOMDataLoaderOperator  # noqa: E402
from monai.deploy.operators.dicom_seg_writer_operator import (  # noqa: E402
    DICOMSegmentationWriterOperator,
    SegmentDescription,
)
from monai.deploy.operators.dicom_series_selector_operator import DICOMSeriesSelectorOperator  # noqa: E402
from monai.deploy.operators.dicom_series_to_volume_operator import DICOMSeriesToVolumeOperator  # noqa: E402
from monai.deploy.operators.dicom_utils import ModelInfo  # noqa: E402
from monai.deploy.operators.monai_bundle_inference_operator import (  # noqa: E402
    BundleConfigNames,
    IOMapping,
    MonaiBundleInferenceOperator,
)

__all__ = [
    "BUNDLE_CONFIG_NAMES",
    "BundleDICOMDataLoaderOperator",
    "BundleSegWriterOperator",
    "NiftiMaskWriterOperator",
    "PancreasSegApp",
    "case_outputs",
    "model_file",
    "read_model_extra",
    "unloadable_reason",
]

logger = logging.getLogger("pancreas_ct_dualssl.deploy")

BUNDLE_CONFIG_NAMES = BundleConfigNames(
    config_names=["inference", "deploy"],
    preproc_name="deploy_preprocessing",
    postproc_name="deploy_postprocessing",
)
"""The configs the operator reads from the model (deploy over inference) and the transforms it runs."""

CT_SERIES_RULES = json.dumps({"selections": [{"name": "CT series", "conditions": {"Modality": "(?i)CT"}}]})
"""``DICOMSeriesSelectorOperator`` rules: the first series whose Modality is CT."""

MASK_POSTFIX = "seg"
"""Output names ``<case>_seg.dcm`` and ``<case>_seg.nii.gz``: the bundle's ``output_postfix``."""


def model_file(model_path: str | os.PathLike | None = None) -> Path:
    """
    The TorchScript file for ``-m``: the file itself; for a folder its ``model.ts`` (a MAP's model folder) or
    ``models/model.ts`` (a bundle folder); this bundle's ``models/model.ts`` when ``model_path`` is None.

    Raises:
        FileNotFoundError: naming the path, when no such file exists.
        ValueError: naming the file, when it lacks the configs this app reads (an export made without
            ``configs/deploy.yaml``).
    """
    path = Path(model_path) if model_path else BUNDLE_ROOT / "models" / "model.ts"
    if path.is_dir():
        found = next((p for p in (path / "model.ts", path / "models" / "model.ts") if p.is_file()), None)
        if found is None:
            raise FileNotFoundError(f"{path} holds neither model.ts nor models/model.ts (-m: the model or the bundle)")
        path = found
    if not path.is_file():
        raise FileNotFoundError(f"no TorchScript model at {path} (-m: models/model.ts or the bundle folder)")
    extra = read_model_extra(path)
    missing = [f"{name}.json" for name in ["metadata", *BUNDLE_CONFIG_NAMES.config_names] if f"{name}.json" not in extra]
    if missing:
        raise ValueError(
            f"{path} embeds no {', '.join(missing)}: re-export it with configs/inference.yaml and configs/deploy.yaml "
            "(docs/README.md, Commands)"
        )
    return path.resolve()


def read_model_extra(path: str | os.PathLike) -> dict[str, str]:
    """The JSON files a bundle export embeds in a TorchScript file (``<name>/extra/*.json``), by file name."""
    with zipfile.ZipFile(path) as archive:
        return {
            Path(name).name: archive.read(name).decode()
            for name in archive.namelist()
            if Path(name).parent.name == "extra" and name.endswith(".json")
        }


def unloadable_reason(input_path: str | os.PathLike) -> str | None:
    """
    Why ``DICOMDataLoaderOperator`` would load no series from ``input_path``, or None when it loads one.

    The SDK's loader drops every file without a ``StudyInstanceUID`` and a ``SeriesInstanceUID`` value (an
    anonymiser may empty them: ``totalseg_b_dicom`` of the real CT samples has neither); the app would then fail
    with "No study loaded". A series of non-square pixels is refused too: ``DICOMSeriesToVolumeOperator`` swaps
    their row and column spacing in the affine. This names the cause and the way out before the app starts
    (headers only, every file under the folder, up to the first loadable one).
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    read, problems = 0, {}
    for path in sorted(p for p in Path(input_path).rglob("*") if p.is_file()):
        try:
            dataset = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError):
            continue
        read += 1
        found = [f"no {tag}" for tag in ("StudyInstanceUID", "SeriesInstanceUID") if not str(dataset.get(tag, "") or "")]
        spacing = [float(v) for v in dataset.get("PixelSpacing", None) or []]
        if len(spacing) == 2 and abs(spacing[0] - spacing[1]) > 1e-6 * max(spacing):
            # DICOMSeriesToVolumeOperator scales the row direction by PixelSpacing[0] (the spacing between rows)
            # and the column direction by PixelSpacing[1]: the wrong way round, so a wrong affine, unless square
            return (
                f"{path} has pixels of {spacing[0]} x {spacing[1]} mm, and the SDK's DICOMSeriesToVolumeOperator gives "
                "non-square pixels a wrong affine (row and column spacing swapped): segment it with the bundle itself "
                "(python -m monai.bundle run --config_file configs/inference.yaml --dataset_dir <folder> "
                "--save_dicom_seg True)"
            )
        if not found:
            return None
        for problem in found:
            problems[problem] = problems.get(problem, 0) + 1
    if read == 0:
        return f"{input_path} holds no DICOM file"
    listed = ", ".join(f"{count} {problem}" for problem, count in problems.items())
    return (
        f"the SDK's DICOMDataLoaderOperator loads no series from the {read} DICOM files in {input_path} ({listed}; "
        "emptied by an anonymiser?): fill them in, or segment the series with the bundle itself (python -m "
        "monai.bundle run --config_file configs/inference.yaml --dataset_dir <folder>: the NIfTI mask; no DICOM SEG "
        "can reference a series without them)"
    )


def case_outputs(input_path: str | os.PathLike, output_path: str | os.PathLike) -> dict[str, Path]:
    """The app's output files for the input folder: ``{"seg": <case>_seg.dcm, "nifti": <case>_seg.nii.gz}``."""
    from scripts.data.naming import output_path as bundle_output_path

    return {
        "seg": bundle_output_path(input_path, output_path, MASK_POSTFIX, ext=".dcm"),
        "nifti": bundle_output_path(input_path, output_path, MASK_POSTFIX, ext=".nii.gz"),
    }


class BundleDICOMDataLoaderOperator(DICOMDataLoaderOperator):
    """
    ``DICOMDataLoaderOperator`` that reads an empty ``SeriesNumber`` as an absent one.

    ``SeriesNumber`` is a type 2 attribute (present, possibly empty; anonymisers empty it: ``ircad_1.1`` and
    ``totalseg_b_dicom`` of the real CT samples). The SDK's ``populate_series_attributes`` calls ``int()`` on the
    empty value, the ``TypeError`` is caught per file and logged as "Error parsing SOP Instance", and the series is
    never added to its study. Here the empty element is set aside for that call and put back: the dataset stays as
    read, and the series has no ``SeriesNumber``, as when the element is absent.
    """

    def populate_series_attributes(self, series, sop_instance) -> None:
        element = sop_instance["SeriesNumber"] if "SeriesNumber" in sop_instance else None  # the DataElement
        if element is None or element.value not in (None, ""):
            super().populate_series_attributes(series, sop_instance)
            return
        del sop_instance["SeriesNumber"]
        try:
            super().populate_series_attributes(series, sop_instance)
        finally:
            sop_instance["SeriesNumber"] = element


class BundleSegWriterOperator(DICOMSegmentationWriterOperator):
    """
    ``DICOMSegmentationWriterOperator`` that writes ``filename`` atomically and only for a referenceable series.

    The SDK writer names its file after the new SEG's SOP instance UID and writes it in place; this one lets it
    write into a staging folder inside the output folder and renames the file to ``filename`` when complete. A
    series that lacks a UID a SEG must reference (``scripts.data.dicom_seg.reference_problems``) gets no SEG and a
    warning naming the UIDs; SOP class and instance UIDs that an anonymiser emptied are taken from the file meta
    header first, as the bundle does (``scripts.data.dicom_seg.referenceable_source``).

    Args:
        fragment: the application.
        filename: the SEG file to write (``<case>_seg.dcm``).
        args, kwargs: those of ``DICOMSegmentationWriterOperator``.
    """

    def __init__(self, fragment: Fragment, *args, filename: Path, **kwargs) -> None:
        self.filename = Path(filename)
        self.skipped_reason: str | None = None
        super().__init__(fragment, *args, **kwargs)

    def create_dicom_seg(self, image, dicom_series, output_dir: Path) -> None:
        from scripts.data.dicom_seg import reference_problems, referenceable_source
        from scripts.data.writers import PARTIAL_MARK

        instances = dicom_series.get_sop_instances()
        datasets = [instance.get_native_sop_instance() for instance in instances]
        problems = reference_problems(datasets)
        if problems:
            self.skipped_reason = "; ".join(problems)
            logger.warning(f"no DICOM SEG: the series cannot be referenced ({self.skipped_reason})")
            return
        for dataset, completed in zip(datasets, referenceable_source(datasets)):
            if completed is not dataset:  # UIDs from the file meta header, on the in-memory copy the SDK read
                dataset.SOPClassUID, dataset.SOPInstanceUID = completed.SOPClassUID, completed.SOPInstanceUID
        self.filename.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{PARTIAL_MARK}-seg-", dir=self.filename.parent))
        try:
            super().create_dicom_seg(image, dicom_series, staging)
            written = sorted(staging.glob("*.dcm"))
            if len(written) != 1:
                raise RuntimeError(f"the SEG writer wrote {len(written)} files into {staging}, expected one")
            os.replace(written[0], self.filename)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        logger.info(f"wrote {self.filename}")


class NiftiMaskWriterOperator(Operator):
    """
    Write the ``seg_image`` input (an SDK ``Image``, ``(slices, rows, columns)``) as a uint8 NIfTI file, atomically.

    The array is put back into the bundle's ``(columns, rows, slices)`` order and written with the RAS affine of
    the series as read (``meta["original_affine"]`` of the operator's image, ``DICOMSeriesToVolumeOperator``'s
    NIfTI affine): the grid and affine of the bundle's ``<case>_seg.nii.gz``.

    Args:
        fragment: the application.
        filename: the NIfTI file to write (``<case>_seg.nii.gz``).

    Raises (on compute):
        ValueError: when the image has no ``original_affine`` or its shape is not the ``spatial_shape`` it carries.
    """

    def __init__(self, fragment: Fragment, *args, filename: Path, **kwargs) -> None:
        self.filename = Path(filename)
        self.input_name_seg = "seg_image"
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec) -> None:
        spec.input(self.input_name_seg)

    def compute(self, op_input, op_output, context) -> None:
        import numpy as np

        from scripts.data.writers import AtomicNibabelWriter

        image = op_input.receive(self.input_name_seg)
        if not isinstance(image, Image):
            raise TypeError(f"{self.name} needs an Image for {self.input_name_seg!r}, got {type(image).__name__}")
        meta = image.metadata()
        if meta.get("original_affine") is None:
            raise ValueError(f"{self.name}: the mask carries no original_affine, so no NIfTI affine for {self.filename}")
        mask = np.ascontiguousarray(np.swapaxes(image.asnumpy(), 0, 2)).astype(np.uint8)
        expected = tuple(int(s) for s in np.asarray(meta.get("spatial_shape", mask.shape)).tolist())
        if mask.shape != expected:
            raise ValueError(f"{self.name}: the mask's shape {mask.shape} is not its image's {expected}")
        affine = np.asarray(meta["original_affine"], dtype=np.float64)
        self.filename.parent.mkdir(parents=True, exist_ok=True)
        writer = AtomicNibabelWriter(output_dtype=np.uint8)
        writer.set_data_array(mask, channel_dim=None)
        writer.set_metadata({"affine": affine, "original_affine": affine}, resample=False)
        writer.write(self.filename)
        logger.info(f"wrote {self.filename}")


class PancreasSegApp(Application):
    """The pancreas segmentation app (see the module): one CT series of ``-i`` in, ``<case>_seg.*`` in ``-o``."""

    def compose(self) -> None:
        app_context: AppContext = Application.init_app_context(self.argv)
        input_path, output_path = Path(app_context.input_path), Path(app_context.output_path)
        # -m or HOLOSCAN_MODEL_PATH when given (the SDK's default, ./models, is the working directory's)
        model = model_file(app_context.args.get("model") or os.environ.get("HOLOSCAN_MODEL_PATH"))
        if not input_path.is_dir():
            raise NotADirectoryError(f"-i {input_path}: the input must be a folder of DICOM files")
        reason = unloadable_reason(input_path)
        if reason:
            raise ValueError(reason)
        if model != Path(app_context.model_path).resolve():
            app_context.update({"model": str(model)})  # the SDK's API: its model factory loads the TorchScript file
        metadata = json.loads(read_model_extra(model)["metadata.json"])
        version = str(metadata.get("version", "unknown"))
        outputs = case_outputs(input_path, output_path)
        self.outputs = outputs
        logger.info(f"input {input_path}, outputs {outputs['seg']} and {outputs['nifti']}, model {model} ({version})")

        from pydicom.sr.codedict import codes

        loader = BundleDICOMDataLoaderOperator(
            self, CountCondition(self, 1), input_folder=input_path, name="dicom_loader"
        )
        selector = DICOMSeriesSelectorOperator(self, rules=CT_SERIES_RULES, name="ct_series_selector")
        to_volume = DICOMSeriesToVolumeOperator(self, name="series_to_volume")
        inference = MonaiBundleInferenceOperator(
            self,
            app_context=app_context,
            input_mapping=[IOMapping("image", Image, IOType.IN_MEMORY)],
            output_mapping=[IOMapping("pred", Image, IOType.IN_MEMORY)],
            bundle_config_names=BUNDLE_CONFIG_NAMES,
            name="bundle_inference",
        )
        segment = SegmentDescription(
            segment_label="Pancreas",
            segmented_property_category=codes.SCT.Organ,
            segmented_property_type=codes.SCT.Pancreas,
            algorithm_name="pancreas_ct_dualssl",
            algorithm_version=version,
        )
        seg_writer = BundleSegWriterOperator(
            self,
            filename=outputs["seg"],
            segment_descriptions=[segment],
            output_folder=output_path,
            model_info=ModelInfo("pancreas_ct_dualssl developers", "pancreas_ct_dualssl", version),
            omit_empty_frames=False,  # one frame per source slice, as the bundle's SEG
            name="dicom_seg_writer",
        )
        nifti_writer = NiftiMaskWriterOperator(self, filename=outputs["nifti"], name="nifti_writer")

        self.add_flow(loader, selector, {("dicom_study_list", "dicom_study_list")})
        self.add_flow(selector, to_volume, {("study_selected_series_list", "study_selected_series_list")})
        self.add_flow(to_volume, inference, {("image", "image")})
        self.add_flow(inference, seg_writer, {("pred", "seg_image")})
        self.add_flow(selector, seg_writer, {("study_selected_series_list", "study_selected_series_list")})
        self.add_flow(inference, nifti_writer, {("pred", "seg_image")})


def main(argv: list[str] | None = None) -> int:
    """Run the app; 0 when the NIfTI mask was written (and the SEG, unless the series cannot be referenced)."""
    app = PancreasSegApp() if argv is None else PancreasSegApp(argv)
    app.run()
    outputs = getattr(app, "outputs", None)
    if not outputs or not outputs["nifti"].is_file():
        logger.error(f"no mask was written ({outputs['nifti'] if outputs else 'the app did not start'}): see the log above")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
