"""
Run the inference evaluator case by case: one bad case is reported instead of stopping the batch, and a case's
outputs appear complete or not at all.

``BatchInference.run`` runs the config's ``evaluator`` once per case of its dataset. Whatever fails for a
case (loading, the input checks, inference, post-processing, writing) is caught, logged with the file and
the reason, and recorded; the other cases go on. At the end it writes the run summary (``summary.csv``,
``summary.json``) and raises ``BatchInferenceError`` if any case failed, so that ``python -m monai.bundle run``
exits non-zero.

A case is a unit of work:

- its files are written into a staging folder ``<output_dir>/.partial-<case>-<random>/`` (unique to the run),
  moved into place when every one of them is complete, and then ``<case>_<mask postfix>_manifest.json`` is
  written last, listing them: a case is done when its manifest exists and lists files that exist;
- a case without a valid manifest whose outputs exist was interrupted: it is redone and its files replaced;
- a done case is skipped (``skipped-existing``) unless ``overwrite``; an overwritten case's files that the new
  run does not produce (e.g. a probability map no longer asked for) are removed and named in the summary;
- SIGTERM and SIGINT end the run after the current case is marked ``interrupted`` (the rest ``not-run``) and
  the summary is written; the staging folder is removed and no finished result is touched;
- one run at a time writes into an ``output_dir`` (``.inference.lock``, released when the process ends): a
  second concurrent run refuses to start, naming the folder;
- a DICOM series that a DICOM SEG cannot reference (missing UIDs) is found before inference: the case gets
  its NIfTI outputs and the summary says why it has no SEG.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import nibabel as nib
import numpy as np
from ignite.engine import Events
from monai.config import PathLike
from monai.data import DataLoader, Dataset, MetaTensor
from monai.engines import Evaluator
from monai.handlers import CheckpointLoader
from monai.transforms import Compose
from monai.utils import CommonKeys
from torch.utils.data import Subset

from scripts.data.dicom_seg import SaveDicomSegd
from scripts.data.errors import describe_error
from scripts.data.naming import case_name, output_path
from scripts.data.weights import weights_error
from scripts.data.writers import PARTIAL_MARK, atomic_path
from scripts.engines.single_case import run_single_case
from scripts.inference.overlay import in_memory_arrays, save_overlay
from scripts.transforms import SaveCaseImaged

__all__ = [
    "BatchInference",
    "BatchInferenceError",
    "CaseRecord",
    "OutputFolderBusyError",
    "RunInterrupted",
    "check_output_names",
    "mask_volume_ml",
    "output_lock",
    "write_summary",
]

logger = logging.getLogger(__name__)

STATUS_OK, STATUS_SKIPPED, STATUS_FAILED = "ok", "skipped-existing", "failed"
STATUS_INTERRUPTED, STATUS_NOT_RUN = "interrupted", "not-run"
STATUSES = (STATUS_OK, STATUS_SKIPPED, STATUS_FAILED, STATUS_INTERRUPTED, STATUS_NOT_RUN)
SUMMARY_FIELDS = (
    "case",
    "input",
    "status",
    "error",
    "pancreas_volume_ml",
    "uncertainty",
    "flag",
    "runtime_s",
    "outputs",
    "notes",
)
LOCK_NAME = ".inference.lock"
STAGING_PREFIX = f"{PARTIAL_MARK}-"


@dataclass
class CaseRecord:
    """
    One row of the run summary; ``outputs`` are the case's output files that exist after the run, ``notes``
    what else the user should know (files replaced or removed, no DICOM SEG and why). ``uncertainty`` and
    ``flag`` are the quality estimate (``scripts.transforms.PredictionQualityd``): ``flag`` names why the mask
    is likely to be wrong, empty when nothing is suspicious.
    """

    case: str
    input: str
    status: str
    error: str = ""
    pancreas_volume_ml: float | None = None
    uncertainty: float | None = None
    flag: str = ""
    runtime_s: float = 0.0
    outputs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class BatchInferenceError(RuntimeError):
    """Some cases failed; ``records`` holds the whole run's summary rows."""

    def __init__(self, records: Sequence[CaseRecord], summary: PathLike) -> None:
        self.records = list(records)
        failed = [r for r in self.records if r.status == STATUS_FAILED]
        lines = "\n".join(f"  {r.case}: {r.error}" for r in failed)
        super().__init__(f"{len(failed)} of {len(self.records)} cases failed (summary: {summary}):\n{lines}")


class RunInterrupted(BaseException):
    """
    The run was ended by SIGTERM; the summary marks the interrupted and the not-run cases. A ``BaseException``,
    as ``KeyboardInterrupt`` is, so that no per-case ``except Exception`` swallows it.
    """


class OutputFolderBusyError(RuntimeError):
    """Another inference run holds the output folder's lock."""


def mask_volume_ml(mask_file: PathLike) -> float:
    """Volume of the voxels > 0 of a NIfTI mask, in mL: voxel count x |det(affine[:3, :3])| mm^3 / 1000."""
    mask = nib.load(str(mask_file))
    voxels = int(np.count_nonzero(np.asarray(mask.dataobj)))
    return voxels * abs(float(np.linalg.det(mask.affine[:3, :3]))) / 1000.0


def check_output_names(datalist: Sequence[Mapping[str, str]], output_dir: PathLike, postfix: str) -> None:
    """
    Raises:
        ValueError: when two inputs have the same case name, so would write one file: refused up front instead
            of one output silently replacing the other.
    """
    outputs = [output_path(item["image"], output_dir, postfix) for item in datalist]
    clashes = sorted({str(o) for o in outputs if outputs.count(o) > 1})
    if clashes:
        raise ValueError(f"several inputs would write the same output file(s): {clashes}")


@contextmanager
def output_lock(output_dir: PathLike) -> Iterator[Path]:
    """
    Hold ``<output_dir>/.inference.lock`` (an exclusive ``flock``, released by the kernel if the process dies).

    Raises:
        OutputFolderBusyError: naming the folder, when another run holds the lock.
    """
    path = Path(output_dir) / LOCK_NAME
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise OSError(error.errno, f"cannot write into output_dir {Path(output_dir)}: {error.strerror}") from None
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputFolderBusyError(
                f"another inference run is writing into {Path(output_dir)} (it holds {path}); wait for it to finish "
                "or choose another output_dir"
            ) from None
        try:  # the holder's process id, for a person looking at the folder (a full disk does not stop the run)
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass
        yield path
    finally:
        os.close(descriptor)


@contextmanager
def _terminate_as_exception() -> Iterator[None]:
    """Inside the block SIGTERM raises ``RunInterrupted`` (SIGINT already raises ``KeyboardInterrupt``)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise RunInterrupted(f"interrupted by {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class BatchInference:
    """
    Run ``evaluator`` on each case of ``dataset`` separately and write a summary of the run (see the module).

    The files a case gets are those the evaluator's ``postprocessing`` writes: every
    ``scripts.transforms.SaveCaseImaged`` (``<case>_<postfix>.nii.gz``; the one of ``mask_key`` is the mask)
    and, for DICOM series inputs, a ``scripts.data.dicom_seg.SaveDicomSegd`` (``<case>_<postfix>.dcm``), plus
    the overlay and the manifest. The evaluator's ``CheckpointLoader`` handlers load the weights once, before
    the first case, instead of at the start of every per-case run.

    Args:
        evaluator: a MONAI ``Evaluator`` with ``postprocessing`` as its post-processing.
        dataset: the cases (a MONAI ``Dataset`` of ``{"image": path}`` items with its preprocessing);
            each case is loaded through a one-case ``DataLoader``.
        postprocessing: the evaluator's post-processing (a ``Compose``), read for the outputs it writes.
        output_dir: the folder of every output and of the summary.
        mask_key: the key of the mask among the saved keys.
        overlay: write ``<case>_<mask postfix>_overlay.png`` (``scripts.inference.overlay.save_overlay``).
        overlay_window: the CT window (HU) of the overlay.
        overwrite: replace the outputs of done cases instead of skipping them.

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
        transforms = postprocessing.flatten().transforms
        savers = [t for t in transforms if isinstance(t, SaveCaseImaged)]
        masks = [t for t in savers if mask_key in t.keys]
        if not masks:
            raise ValueError(f"the post-processing saves no {mask_key!r} mask with scripts.transforms.SaveCaseImaged")
        self.evaluator = evaluator
        self.dataset = dataset
        self.output_dir = Path(output_dir)
        self.savers = [masks[0]] + [t for t in savers if t is not masks[0]]
        self.postfixes = [t.postfix for t in self.savers]
        self.output_ext = masks[0].output_ext
        dicom_seg = [t for t in transforms if isinstance(t, SaveDicomSegd)]
        self.dicom_seg = dicom_seg[0] if dicom_seg else None
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
                try:
                    handler(self.evaluator)
                except Exception as error:
                    raise weights_error(handler.load_path, error) from None
                self.evaluator.remove_event_handler(handler, Events.STARTED)
        self._weights_loaded = True

    # ------------------------------------------------------------------ the names of a case's files
    def mask_path(self, image: PathLike, folder: PathLike | None = None) -> Path:
        return output_path(image, folder or self.output_dir, self.postfixes[0], self.output_ext)

    def overlay_path(self, image: PathLike, folder: PathLike | None = None) -> Path:
        return output_path(image, folder or self.output_dir, f"{self.postfixes[0]}_overlay", ext=".png")

    def manifest_path(self, image: PathLike) -> Path:
        return output_path(image, self.output_dir, f"{self.postfixes[0]}_manifest", ext=".json")

    def evaluator_outputs(self, image: PathLike, folder: PathLike | None = None) -> list[Path]:
        """The files the evaluator writes for the case ``image`` into ``folder`` (default ``output_dir``), mask first."""
        folder = folder or self.output_dir
        outputs = [output_path(image, folder, postfix, self.output_ext) for postfix in self.postfixes]
        if self.dicom_seg is not None and os.path.isdir(image):
            outputs.append(output_path(image, folder, self.dicom_seg.output_postfix, ext=".dcm"))
        return outputs

    def case_outputs(self, image: PathLike) -> list[Path]:
        """Every output file this configuration gives the case ``image``: ``evaluator_outputs`` and the overlay."""
        return self.evaluator_outputs(image) + ([self.overlay_path(image)] if self.overlay else [])

    def recorded_outputs(self, image: PathLike) -> list[Path] | None:
        """The files the case's manifest lists, or None without a readable manifest."""
        try:
            manifest = json.loads(self.manifest_path(image).read_text())
            return [self.output_dir / name for name in manifest["outputs"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def is_done(self, image: PathLike) -> bool:
        """A readable manifest whose every listed file exists."""
        recorded = self.recorded_outputs(image)
        return recorded is not None and all(p.exists() for p in recorded)

    # ------------------------------------------------------------------ the run
    def run(self) -> list[CaseRecord]:
        """
        Process every case, write the summary, and return its rows.

        Raises:
            ValueError: before any work, when two inputs would write the same output file.
            OutputFolderBusyError: before any work, when another run writes into ``output_dir``.
            OSError: naming ``output_dir``, before any work when it cannot be written (read-only), or at the end
                when even the summary cannot be written (a full disk: the cases' errors say so too).
            InputError: before any case, naming the checkpoint when its weights cannot be loaded.
            BatchInferenceError: after the summary is written, when any case failed.
            RunInterrupted, KeyboardInterrupt: after the summary is written, on SIGTERM or SIGINT.
        """
        started = datetime.now(UTC)
        items = list(self.dataset.data)
        check_output_names(items, self.output_dir, self.postfixes[0])
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OSError(error.errno, f"cannot create output_dir {self.output_dir}: {error.strerror}") from None
        records: list[CaseRecord] = []
        interruption: BaseException | None = None
        reason = ""
        with output_lock(self.output_dir), _terminate_as_exception():
            self._remove_stale_staging()
            try:
                self._load_weights_once()
                for index, item in enumerate(items):
                    image = item["image"]
                    if self.is_done(image) and not self.overwrite:
                        logger.warning(f"skipping {image}: done earlier (set overwrite to true to replace its outputs)")
                        records.append(self._done_record(image, STATUS_SKIPPED))
                        continue
                    records.append(self._run_case(index, image))
            except (KeyboardInterrupt, RunInterrupted) as error:
                interruption = error
                reason = str(error) or "interrupted by SIGINT"
                self._remove_stale_staging()  # the interrupted case's clean-up may itself have been cut short
                pending = items[len(records):]
                if pending and self.is_done(pending[0]["image"]):  # the signal came after its manifest: it is done
                    records.append(self._done_record(pending.pop(0)["image"], STATUS_OK))
                for position, item in enumerate(pending):
                    status = STATUS_INTERRUPTED if position == 0 else STATUS_NOT_RUN
                    records.append(
                        CaseRecord(case_name(item["image"]), str(item["image"]), status, error=reason if position == 0 else "")
                    )
                logger.error(f"run interrupted ({reason}); the summary marks the cases that did not finish")
            summary = write_summary(records, self.output_dir, started, interrupted=reason if interruption else None)
        counts = {s: sum(r.status == s for r in records) for s in STATUSES}
        logger.info(f"{len(records)} cases: {counts}; summary: {summary}")
        if interruption is not None:
            raise interruption
        if counts[STATUS_FAILED]:
            raise BatchInferenceError(records, summary)
        return records

    def _done_record(self, image: str, status: str) -> CaseRecord:
        """The summary row of a case whose manifest lists its outputs (and its volume and quality estimate)."""
        outputs = [str(p) for p in self.recorded_outputs(image) or []]
        try:
            manifest = json.loads(self.manifest_path(image).read_text())
        except (OSError, ValueError):
            manifest = {}
        return CaseRecord(
            case_name(image),
            str(image),
            status,
            pancreas_volume_ml=manifest.get("pancreas_volume_ml"),
            uncertainty=manifest.get("uncertainty"),
            flag=manifest.get("flag", ""),
            outputs=outputs,
        )

    def _remove_stale_staging(self) -> None:
        """Staging folders of runs that died (this run holds the lock, so no other run is using them)."""
        for stale in self.output_dir.glob(f"{STAGING_PREFIX}*"):
            if stale.is_dir():
                logger.info(f"removing {stale}, left by an interrupted run")
                shutil.rmtree(stale, ignore_errors=True)

    @contextmanager
    def _writing_into(self, folder: Path) -> Iterator[None]:
        """Point the evaluator's savers at ``folder`` for one case."""
        previous = [saver.layout.output_dir for saver in self.savers]
        seg_previous = self.dicom_seg.output_dir if self.dicom_seg is not None else None
        for saver in self.savers:
            saver.layout.output_dir = folder
        if self.dicom_seg is not None:
            self.dicom_seg.output_dir = folder
        try:
            yield
        finally:
            for saver, old in zip(self.savers, previous):
                saver.layout.output_dir = old
            if self.dicom_seg is not None:
                self.dicom_seg.output_dir = seg_previous

    def _run_case(self, index: int, image: str) -> CaseRecord:
        start = time.perf_counter()
        record = CaseRecord(case_name(image), str(image), STATUS_OK)
        earlier = self.recorded_outputs(image) or []
        leftovers = [p for p in self.case_outputs(image) if p.exists()]
        if leftovers and not self.is_done(image):
            record.notes.append(f"replaced the outputs of an unfinished earlier run: {[p.name for p in leftovers]}")
        staging = None
        skip_seg = False
        try:
            staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{record.case}-", dir=self.output_dir))
            if self.dicom_seg is not None and os.path.isdir(image):
                problem = self.dicom_seg.reference_problem(image)
                if problem:
                    skip_seg = True
                    self.dicom_seg.skip_folders.add(str(image))
                    record.notes.append(f"no DICOM SEG: the series cannot be referenced ({problem})")
                    logger.warning(f"case {record.case}: no DICOM SEG, the series cannot be referenced ({problem})")
            with self._writing_into(staging):
                quality, volume, arrays = self._infer(index)
            if quality:
                record.uncertainty, record.flag = quality["uncertainty"], quality["flag_reasons"]
                if record.flag:
                    logger.warning(f"case {record.case}: the mask is likely to be wrong ({record.flag})")
            staged = self.evaluator_outputs(image, staging)
            if skip_seg:
                staged = [p for p in staged if p.suffix != ".dcm"]
            missing = [str(p.name) for p in staged if not p.exists()]
            if missing:
                raise RuntimeError(f"the evaluator did not write {missing}")
            mask = self.mask_path(image, staging)
            record.pancreas_volume_ml = round(mask_volume_ml(mask) if volume is None else volume, 3)
            if self.overlay:
                overlay = self.overlay_path(image, staging)
                staged.append(save_overlay(image, mask, overlay, window=self.overlay_window, **arrays))
                arrays = {}
            record.notes += self._commit(image, staged, earlier + leftovers, record)
        except Exception as error:  # one case must not stop the batch: record it and go on
            record.status = STATUS_FAILED
            record.error = describe_error(error)
            logger.error(
                f"case {record.case} ({image}) failed: {record.error}", exc_info=logger.isEnabledFor(logging.DEBUG)
            )
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            if self.dicom_seg is not None:
                self.dicom_seg.skip_folders.discard(str(image))
        record.runtime_s = round(time.perf_counter() - start, 2)
        recorded = self.recorded_outputs(image) if record.status == STATUS_OK else None
        record.outputs = [str(p) for p in recorded or [] if p.exists()]
        return record

    def _commit(self, image: str, staged: Sequence[Path], earlier: Sequence[Path], record: CaseRecord) -> list[str]:
        """
        Move the complete staged files into place, remove the earlier files the new run did not produce, then
        write the manifest last; return the notes for the summary.
        """
        manifest = self.manifest_path(image)
        manifest.unlink(missing_ok=True)  # from here until the new manifest the case counts as unfinished
        final = [self.output_dir / p.name for p in staged]
        for source, target in zip(staged, final):
            os.replace(source, target)
        stale = sorted({p for p in earlier if p not in final and p != manifest and p.exists()})
        for path in stale:
            path.unlink()
        content = {
            "case": case_name(image),
            "input": str(image),
            "finished": datetime.now(UTC).isoformat(),
            "outputs": [p.name for p in final],
            "pancreas_volume_ml": record.pancreas_volume_ml,
            "uncertainty": record.uncertainty,
            "flag": record.flag,
        }
        with atomic_path(manifest) as partial:
            partial.write_text(json.dumps(content, indent=2) + "\n")
        return [f"removed files of the earlier run that this run does not produce: {[p.name for p in stale]}"] if stale else []

    def _infer(self, index: int) -> tuple[dict | None, float | None, dict]:
        """
        One evaluator run on the case ``index`` alone (a fresh one-case loader, epoch length 1). Returns the case's
        quality estimate (``quality`` of the post-processed output, when the post-processing computes one), the
        mask's volume in mL from the written mask still in memory (``None`` when the output has no mask), and the
        arrays the overlay needs when they are in memory (``input_image`` of ``KeepInputCopyd`` and the mask).
        """
        try:
            run_single_case(self.evaluator, DataLoader(Subset(self.dataset, [index]), batch_size=1, num_workers=0))
            output, batch = self.evaluator.state.output, self.evaluator.state.batch
            first = output[0] if isinstance(output, (list, tuple)) and output else output
            if not isinstance(first, dict):
                return None, None, {}
            # after post-processing, the batch keeps the input's items (the kept copy of the CT among them)
            inputs = batch[0] if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], dict) else {}
            mask = first.get(CommonKeys.PRED)
            volume, arrays = None, {}
            if isinstance(mask, MetaTensor) and mask.shape[0] == 1:
                affine = mask.affine.double().numpy()
                volume = float((mask > 0).sum()) * abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
                arrays = in_memory_arrays(first.get("input_image", inputs.get("input_image")), mask)
            return first.get("quality"), volume, arrays
        finally:  # the full-resolution outputs are on disk: release what the overlay does not need
            self.evaluator.state.batch = self.evaluator.state.output = None


def write_summary(
    records: Sequence[CaseRecord], output_dir: PathLike, started: datetime, interrupted: str | None = None
) -> Path:
    """
    Write the run summary as CSV and JSON, each atomically; return the path of the CSV.

    Files: ``summary_<started, UTC, YYYYmmddTHHMMSSZ>.csv/.json``, never overwritten (a ``_2``, ``_3``
    ... suffix is added when two runs start within a second), and ``summary.csv``/``summary.json``, the
    same content, replaced by every run: the latest run's summary under a fixed name, the earlier ones
    kept under their timestamps. CSV columns: ``SUMMARY_FIELDS`` (``outputs`` joined by ``;``); JSON: the
    run's start and end times, the counts per status, ``interrupted`` (the signal that ended the run, or null)
    and the rows.

    Raises:
        OSError: naming ``output_dir`` and the counts per status, when the files cannot be written (disk full).
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
                "notes": "; ".join(row["notes"]),
                "pancreas_volume_ml": "" if row["pancreas_volume_ml"] is None else row["pancreas_volume_ml"],
                "uncertainty": "" if row["uncertainty"] is None else row["uncertainty"],
            }
        )
    report = {
        "started": started.isoformat(),
        "finished": datetime.now(UTC).isoformat(),
        "counts": {s: sum(r.status == s for r in records) for s in STATUSES},
        "interrupted": interrupted,
        "cases": rows,
    }
    contents = {".csv": text.getvalue(), ".json": json.dumps(report, indent=2) + "\n"}
    try:
        for stem in (name, "summary"):
            for ext, content in contents.items():
                with atomic_path(output_dir / f"{stem}{ext}") as partial:
                    partial.write_text(content)
    except OSError as error:
        counts = ", ".join(f"{status} {count}" for status, count in report["counts"].items() if count)
        raise OSError(
            error.errno, f"cannot write the run summary into {output_dir}: {error.strerror} (cases: {counts})"
        ) from None
    return output_dir / "summary.csv"
