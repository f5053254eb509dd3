"""
Run the inference evaluator case by case, so that one bad case is reported instead of stopping the batch.

``BatchInference.run`` runs the config's ``evaluator`` once per case of its dataset. Whatever fails for a
case (loading, the input checks, inference, post-processing, writing) is caught, logged with the file and
the reason, and recorded; the other cases go on. Per case it also writes the overlay picture and measures
the pancreas volume. At the end it writes the run summary (``summary.csv``, ``summary.json``) and raises
``BatchInferenceError`` if any case failed, so that ``python -m monai.bundle run`` exits non-zero.

Never overwritten without ``overwrite``: a case whose mask exists is skipped (``skipped-existing``); a case
whose mask is missing but another of its outputs exists fails without touching it. A failed case leaves no
output file of its own (anything it wrote is removed), so a later run retries it.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import nibabel as nib
import numpy as np
from monai.config import PathLike
from monai.data import DataLoader, Dataset
from monai.engines import Evaluator
from torch.utils.data import Subset

from scripts.inputs import case_name, output_path, pending_cases
from scripts.overlay import save_overlay
from scripts.validation import InputError
from scripts.writers import atomic_path

__all__ = ["BatchInference", "BatchInferenceError", "CaseRecord", "mask_volume_ml", "write_summary"]

logger = logging.getLogger(__name__)

STATUS_OK, STATUS_SKIPPED, STATUS_FAILED = "ok", "skipped-existing", "failed"
SUMMARY_FIELDS = ("case", "input", "status", "error", "pancreas_volume_ml", "runtime_s", "outputs")


@dataclass
class CaseRecord:
    """One row of the run summary; ``outputs`` are the case's output files that exist after the run."""

    case: str
    input: str
    status: str
    error: str = ""
    pancreas_volume_ml: float | None = None
    runtime_s: float = 0.0
    outputs: list[str] = field(default_factory=list)


class BatchInferenceError(RuntimeError):
    """Some cases failed; ``records`` holds the whole run's summary rows."""

    def __init__(self, records: Sequence[CaseRecord], summary: PathLike) -> None:
        self.records = list(records)
        failed = [r for r in self.records if r.status == STATUS_FAILED]
        lines = "\n".join(f"  {r.case}: {r.error}" for r in failed)
        super().__init__(f"{len(failed)} of {len(self.records)} cases failed (summary: {summary}):\n{lines}")


def mask_volume_ml(mask_file: PathLike) -> float:
    """Volume of the voxels > 0 of a NIfTI mask, in mL: voxel count x |det(affine[:3, :3])| mm^3 / 1000."""
    mask = nib.load(str(mask_file))
    voxels = int(np.count_nonzero(np.asarray(mask.dataobj)))
    return voxels * abs(float(np.linalg.det(mask.affine[:3, :3]))) / 1000.0


def _root_cause(error: BaseException) -> BaseException:
    """
    The error to report: MONAI wraps transform errors (``RuntimeError: applying transform ...``), so take the
    outermost ``InputError`` of the ``__cause__`` chain (it names the file), else the innermost error.
    """
    chain = [error]
    while chain[-1].__cause__ is not None:
        chain.append(chain[-1].__cause__)
    return next((e for e in chain if isinstance(e, InputError)), chain[-1])


def _describe(error: BaseException) -> str:
    root = _root_cause(error)
    return f"{type(root).__name__}: {root}".strip()


class BatchInference:
    """
    Run ``evaluator`` on each case of ``dataset`` separately and write a summary of the run.

    Args:
        evaluator: a MONAI ``Evaluator`` whose post-processing writes ``<case>_<postfix>.nii.gz`` for
            each of ``postfixes`` (e.g. ``SaveImaged`` with ``scripts.inputs.CaseFolderLayout``) and, for
            DICOM series inputs when ``dicom_seg``, ``<case>_<dicom_seg_postfix>.dcm``.
        dataset: the cases (a MONAI ``Dataset`` of ``{"image": path}`` items with its preprocessing);
            each case is loaded through a one-case ``DataLoader``.
        output_dir: the folder of every output and of the summary.
        postfixes: the NIfTI outputs per case; the first is the mask, whose existence marks a case done.
        dicom_seg: whether the post-processing writes a DICOM SEG object for DICOM series inputs.
        dicom_seg_postfix: its postfix (``<case>_<postfix>.dcm``).
        overlay: write ``<case>_<mask postfix>_overlay.png`` (``scripts.overlay.save_overlay``).
        overlay_window: the CT window (HU) of the overlay.
        overwrite: replace existing outputs instead of skipping the case.
    """

    def __init__(
        self,
        evaluator: Evaluator,
        dataset: Dataset,
        output_dir: PathLike,
        postfixes: Sequence[str] = ("seg",),
        dicom_seg: bool = False,
        dicom_seg_postfix: str = "seg",
        overlay: bool = True,
        overlay_window: Sequence[float] = (-100.0, 240.0),
        overwrite: bool = False,
    ) -> None:
        if not postfixes:
            raise ValueError("postfixes must name at least the mask output")
        self.evaluator = evaluator
        # one complete run per case; ignite's interrupt/resume generator would survive a failed run and make the
        # next run return at once (ignite documents this switch for the pre-0.4.10 behaviour)
        self.evaluator.interrupt_resume_enabled = False
        self.dataset = dataset
        self.output_dir = Path(output_dir)
        self.postfixes = list(postfixes)
        self.dicom_seg = dicom_seg
        self.dicom_seg_postfix = dicom_seg_postfix
        self.overlay = overlay
        self.overlay_window = tuple(overlay_window)
        self.overwrite = overwrite

    def mask_path(self, image: PathLike) -> Path:
        return output_path(image, self.output_dir, self.postfixes[0])

    def overlay_path(self, image: PathLike) -> Path:
        return output_path(image, self.output_dir, f"{self.postfixes[0]}_overlay", ext=".png")

    def evaluator_outputs(self, image: PathLike) -> list[Path]:
        """The files the evaluator writes for the case ``image``, the mask first."""
        outputs = [output_path(image, self.output_dir, postfix) for postfix in self.postfixes]
        if self.dicom_seg and os.path.isdir(image):
            outputs.append(output_path(image, self.output_dir, self.dicom_seg_postfix, ext=".dcm"))
        return outputs

    def case_outputs(self, image: PathLike) -> list[Path]:
        """Every output file of the case ``image``: ``evaluator_outputs`` and the overlay."""
        return self.evaluator_outputs(image) + ([self.overlay_path(image)] if self.overlay else [])

    def run(self) -> list[CaseRecord]:
        """
        Process every case, write the summary, and return its rows.

        Raises:
            ValueError: before any work, when two inputs would write the same output file.
            BatchInferenceError: after the summary is written, when any case failed.
        """
        started = datetime.now(UTC)
        items = list(self.dataset.data)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        pending = {item["image"] for item in pending_cases(items, self.output_dir, self.postfixes[0], self.overwrite)}
        records = []
        for index, item in enumerate(items):
            image = item["image"]
            if image in pending:
                records.append(self._run_case(index, image))
            else:
                existing = [str(p) for p in self.case_outputs(image) if p.exists()]
                records.append(CaseRecord(case_name(image), str(image), STATUS_SKIPPED, outputs=existing))
        summary = write_summary(records, self.output_dir, started)
        counts = {s: sum(r.status == s for r in records) for s in (STATUS_OK, STATUS_SKIPPED, STATUS_FAILED)}
        logger.info(f"{len(records)} cases: {counts}; summary: {summary}")
        if counts[STATUS_FAILED]:
            raise BatchInferenceError(records, summary)
        return records

    def _run_case(self, index: int, image: str) -> CaseRecord:
        start = time.perf_counter()
        record = CaseRecord(case_name(image), str(image), STATUS_OK)
        outputs = self.case_outputs(image)
        existing = [str(p) for p in outputs if p.exists()]
        if existing and not self.overwrite:
            record.status = STATUS_FAILED
            record.error = (
                f"output file(s) from an earlier run exist: {existing}; set overwrite to true to replace them"
            )
            logger.error(f"case {record.case} ({image}) failed: {record.error}")
            return record
        try:
            self._infer(index)
            missing = [str(p) for p in self.evaluator_outputs(image) if not p.exists()]
            if missing:
                raise RuntimeError(f"the evaluator did not write {missing}")
            mask = self.mask_path(image)
            record.pancreas_volume_ml = round(mask_volume_ml(mask), 3)
            if self.overlay:
                save_overlay(image, mask, self.overlay_path(image), window=self.overlay_window)
        except Exception as error:  # one case must not stop the batch: record it and go on
            record.status = STATUS_FAILED
            record.error = _describe(error)
            logger.error(
                f"case {record.case} ({image}) failed: {record.error}", exc_info=logger.isEnabledFor(logging.DEBUG)
            )
            for path in outputs:
                path.unlink(missing_ok=True)
        record.runtime_s = round(time.perf_counter() - start, 2)
        record.outputs = [str(p) for p in outputs if p.exists()]
        return record

    def _infer(self, index: int) -> None:
        """One evaluator run on the case ``index`` alone (a fresh one-case loader, epoch length 1)."""
        loader = DataLoader(Subset(self.dataset, [index]), batch_size=1, num_workers=0)
        self.evaluator.data_loader = loader
        self.evaluator.set_data(loader)
        self.evaluator.state.epoch_length = len(loader)
        self.evaluator.run()
        if self.evaluator.state.iteration != len(loader):
            raise RuntimeError(
                f"the evaluator ran {self.evaluator.state.iteration} iterations instead of {len(loader)}"
            )


def write_summary(records: Sequence[CaseRecord], output_dir: PathLike, started: datetime) -> Path:
    """
    Write the run summary as CSV and JSON, each atomically; return the path of the CSV.

    Files: ``summary_<started, UTC, YYYYmmddTHHMMSSZ>.csv/.json``, never overwritten (a ``_2``, ``_3``
    ... suffix is added when two runs start within a second), and ``summary.csv``/``summary.json``, the
    same content, replaced by every run: the latest run's summary under a fixed name, the earlier ones
    kept under their timestamps. CSV columns: ``SUMMARY_FIELDS`` (``outputs`` joined by ``;``); JSON: the
    run's start and end times, the counts per status and the rows.
    """
    output_dir = Path(output_dir)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    name, n = f"summary_{stamp}", 1
    while (output_dir / f"{name}.csv").exists() or (output_dir / f"{name}.json").exists():
        n += 1
        name = f"summary_{stamp}_{n}"
    rows = [asdict(r) for r in records]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=SUMMARY_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                **row,
                "outputs": ";".join(row["outputs"]),
                "pancreas_volume_ml": "" if row["pancreas_volume_ml"] is None else row["pancreas_volume_ml"],
            }
        )
    report = {
        "started": started.isoformat(),
        "finished": datetime.now(UTC).isoformat(),
        "counts": {s: sum(r.status == s for r in records) for s in (STATUS_OK, STATUS_SKIPPED, STATUS_FAILED)},
        "cases": rows,
    }
    contents = {".csv": text.getvalue(), ".json": json.dumps(report, indent=2) + "\n"}
    for stem in (name, "summary"):
        for ext, content in contents.items():
            with atomic_path(output_dir / f"{stem}{ext}") as partial:
                partial.write_text(content)
    return output_dir / "summary.csv"
