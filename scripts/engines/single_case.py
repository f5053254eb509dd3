"""One evaluator run over one case, as batch inference and per-case evaluation need it."""

from __future__ import annotations

from collections.abc import Sized
from typing import Any

from monai.engines import Evaluator

__all__ = ["run_single_case"]


def run_single_case(evaluator: Evaluator, data_loader: Any) -> None:
    """
    Run ``evaluator`` over ``data_loader`` (one case) from the start, as one complete run.

    Ignite's interrupt/resume generator is switched off: with it, a run that raised would make the next run
    return at once without processing its case (ignite documents this switch for the pre-0.4.10 behaviour).

    Raises:
        RuntimeError: when the run ended before it had processed every batch of ``data_loader``.
        Exception: whatever the evaluator's iteration raises (loading, inference, post-processing, writing).
    """
    evaluator.interrupt_resume_enabled = False
    evaluator.data_loader = data_loader
    evaluator.set_data(data_loader)
    length = len(data_loader) if isinstance(data_loader, Sized) else 1
    evaluator.state.epoch_length = length
    evaluator.run()
    if evaluator.state.iteration != length:
        raise RuntimeError(f"the evaluator ran {evaluator.state.iteration} iterations instead of {length}")
