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
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import nibabel as nib
import numpy as np
from ignite.engine import Events
from monai.config import PathLike
from monai.data import DataLoader, Dataset
from monai.engines import Evaluator
from monai.handlers import CheckpointLoader
from monai.transforms import Compose
from torch.utils.data import Subset

from scripts.data.dicom_seg import SaveDicomSegd
from scripts.data.errors import describe_error
from scripts.data.naming import case_name, output_path
from scripts.data.writers import atomic_path, refuse_existing
from scripts.engines.single_case import run_single_case
from scripts.inference.overlay import save_overlay
from scripts.transforms import SaveCaseImaged

__all__ = ["BatchInference", "BatchInferenceError", "CaseRecord", "mask_volume_ml", "pending_cases", "write_summary"]

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


def pending_cases(
    datalist: Sequence[Mapping[str, str]], output_dir: PathLike, postfix: str, overwrite: bool = False
) -> list[dict[str, str]]:
    """
    Drop the cases whose output ``<case>_<postfix>.nii.gz`` already exists, unless ``overwrite``; each skipped
    case is logged.

    Raises:
        ValueError: when two inputs have the same case name, so would write one file: refused up front instead
            of one output silently replacing the other.
    """
    outputs = [output_path(item["image"], output_dir, postfix) for item in datalist]
    clashes = sorted({str(o) for o in outputs if outputs.count(o) > 1})
    if clashes:
        raise ValueError(f"several inputs would write the same output file(s): {clashes}")
    pending = []
    for item, out in zip(datalist, outputs):
        if out.exists() and not overwrite:
            logger.warning(f"skipping {item['image']}: {out} exists (set overwrite to true to replace it)")
            continue
        pending.append(dict(item))
    return pending


class BatchInference:
    """
    Run ``evaluator`` on each case of ``dataset`` separately and write a summary of the run.

    The files a case gets are those the evaluator's ``postprocessing`` writes: every
    ``scripts.transforms.SaveCaseImaged`` (``<case>_<postfix>.nii.gz``; the one of ``mask_key`` is the mask)
    and, for DICOM series inputs, a ``scripts.data.dicom_seg.SaveDicomSegd`` (``<case>_<postfix>.dcm``).
    The evaluator's ``CheckpointLoader`` handlers load the weights once, before the first case, instead of at
    the start of every per-case run.

    Args:
        evaluator: a MONAI ``Evaluator`` with ``postprocessing`` as its post-processing.
        dataset: the cases (a MONAI ``Dataset`` of ``{"image": path}`` items with its preprocessing);
            each case is loaded through a one-case ``DataLoader``.
        postprocessing: the evaluator's post-processing (a ``Compose``), read for the outputs it writes.
        output_dir: the folder of every output and of the summary.
        mask_key: the key of the mask among the saved keys.
        overlay: write ``<case>_<mask postfix>_overlay.png`` (``scripts.inference.overlay.save_overlay``).
        overlay_window: the CT window (HU) of the overlay.
        overwrite: replace existing outputs instead of skipping the case.

    Raises:
        ValueError: when ``postprocessing`` saves no ``mask_key`` with ``SaveCaseImaged``.
    """

    def __init__(
        self,
        evaluator: Evaluator,
        dataset: Dataset,
        postprocessing: Compose,
        output_dir: PathLike,
        mask_key: str = "pred",
        overlay: bool = True,
        overlay_window: Sequence[float] = (-100.0, 240.0),
        overwrite: bool = False,
    ) -> None:
        savers = [t for t in postprocessing.flatten().transforms if isinstance(t, SaveCaseImaged)]
        masks = [t for t in savers if mask_key in t.keys]
        if not masks:
            raise ValueError(f"the post-processing saves no {mask_key!r} mask with scripts.transforms.SaveCaseImaged")
        self.evaluator = evaluator
        self.dataset = dataset
        self.output_dir = Path(output_dir)
        self.postfixes = [masks[0].postfix] + [t.postfix for t in savers if t is not masks[0]]
        self.output_ext = masks[0].output_ext
        dicom_seg = [t for t in postprocessing.flatten().transforms if isinstance(t, SaveDicomSegd)]
        self.dicom_seg_postfix = dicom_seg[0].output_postfix if dicom_seg else None
        self.overlay = overlay
        self.overlay_window = tuple(overlay_window)
        self.overwrite = overwrite
        self._weights_loaded = False

    def _load_weights_once(self) -> None:
        """Run the evaluator's ``CheckpointLoader`` handlers now and detach them from its per-run start event."""
        if self._weights_loaded:
            return
        for handler, *_ in list(self.evaluator._event_handlers[Events.STARTED]):
            if isinstance(handler, CheckpointLoader):
                handler(self.evaluator)
                self.evaluator.remove_event_handler(handler, Events.STARTED)
        self._weights_loaded = True

    def mask_path(self, image: PathLike) -> Path:
        return output_path(image, self.output_dir, self.postfixes[0], self.output_ext)

    def overlay_path(self, image: PathLike) -> Path:
        return output_path(image, self.output_dir, f"{self.postfixes[0]}_overlay", ext=".png")

    def evaluator_outputs(self, image: PathLike) -> list[Path]:
        """The files the evaluator writes for the case ``image``, the mask first."""
        outputs = [output_path(image, self.output_dir, postfix, self.output_ext) for postfix in self.postfixes]
        if self.dicom_seg_postfix is not None and os.path.isdir(image):
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
        self._load_weights_once()
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
        try:
            if not self.overwrite:
                refuse_existing(outputs)
        except FileExistsError as error:
            record.status, record.error = STATUS_FAILED, str(error)
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
            record.error = describe_error(error)
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
        run_single_case(self.evaluator, DataLoader(Subset(self.dataset, [index]), batch_size=1, num_workers=0))


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
