"""MONAI's ``MetricsSaver`` whose report appears all at once and never replaces an earlier one by accident."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ignite.engine import Engine
from monai.handlers import MetricsSaver

from scripts.data.writers import refuse_existing
from scripts.handlers.ranks import is_main_process

__all__ = ["AtomicMetricsSaver"]


class AtomicMetricsSaver(MetricsSaver):
    """
    ``MetricsSaver`` (same arguments) that writes its CSV files into a temporary folder inside ``save_dir`` and
    moves them into place when all are written, so an interrupted evaluation leaves no partial report.

    A ``save_dir`` that already holds files (an earlier evaluation's report) is refused when the handler is
    created, before anything is evaluated, unless ``overwrite`` is true.
    """

    def __init__(self, save_dir: str, *args: Any, overwrite: bool = False, **kwargs: Any) -> None:
        super().__init__(save_dir, *args, **kwargs)
        self.report_dir = Path(save_dir)
        if not overwrite and self.report_dir.is_dir():
            refuse_existing(
                sorted(p for p in self.report_dir.iterdir() if p.is_file()),
                hint="set overwrite to true to replace the earlier report, or choose another output_dir",
            )

    def __call__(self, engine: Engine) -> None:
        if not is_main_process():  # MetricsSaver gathers the metrics from every rank and writes on rank 0
            super().__call__(engine)
            return
        self.report_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=self.report_dir))
        try:
            self.save_dir = str(staging)
            super().__call__(engine)
            for file in staging.iterdir():
                os.replace(file, self.report_dir / file.name)
        finally:
            self.save_dir = str(self.report_dir)
            shutil.rmtree(staging, ignore_errors=True)
