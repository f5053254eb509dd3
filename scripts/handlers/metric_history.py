"""The validation metrics of a training run over its iterations, in one JSON file rewritten atomically."""

from __future__ import annotations

import json
from pathlib import Path

from ignite.engine import Engine, Events

from scripts.data.writers import atomic_path

__all__ = ["MetricHistory"]


class MetricHistory:
    """
    Record ``validator.state.metrics`` after every validation run, with the trainer's epoch and iteration.

    ``output_file`` holds ``[{"epoch": e, "iteration": i, "val_mean_dice": ...}, ...]``, oldest first; it is
    rewritten whole through a temporary file after every validation, so it is always complete. A resumed run
    keeps the entries before its starting iteration and continues the list (the convergence curve of the
    whole run).

    Args:
        validator: the evaluator that ``ValidationHandler`` runs.
        output_file: where the history is written.
    """

    def __init__(self, validator: Engine, output_file: str | Path) -> None:
        self.validator = validator
        self.output_file = Path(output_file)
        self.history: list[dict] = []
        self.trainer: Engine | None = None

    def attach(self, trainer: Engine) -> None:
        self.trainer = trainer
        trainer.add_event_handler(Events.STARTED, self._start)
        self.validator.add_event_handler(Events.COMPLETED, self._record)

    def _start(self, trainer: Engine) -> None:
        self.history = []
        if self.output_file.is_file():
            earlier = json.loads(self.output_file.read_text())
            self.history = [entry for entry in earlier if entry["iteration"] <= trainer.state.iteration]

    def _record(self, validator: Engine) -> None:
        if self.trainer is None:
            return
        entry = {"epoch": self.trainer.state.epoch, "iteration": self.trainer.state.iteration}
        entry.update({name: float(value) for name, value in validator.state.metrics.items()})
        self.history.append(entry)
        self.output_file.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.output_file) as temporary:
            temporary.write_text(json.dumps(self.history, indent=1))
