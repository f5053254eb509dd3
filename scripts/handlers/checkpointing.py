"""Training checkpoints that survive a kill: atomic writes, periodic resume points, safe loading, fallback."""

from __future__ import annotations

import logging
import os
import re
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import DiskSaver
from monai.handlers import CheckpointSaver

from scripts.data.writers import atomic_path, refuse_existing
from scripts.engines.random_state import global_rng_state, set_global_rng_state
from scripts.handlers.ranks import is_main_process

__all__ = ["AtomicCheckpointSaver", "ResumableCheckpointer", "atomic_torch_save", "load_latest_checkpoint"]

logger = logging.getLogger(__name__)
RESUME_PATTERN = re.compile(r"^resume_iteration=(\d+)\.pt$")


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the target folder, then rename it into place: never a torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as partial, open(partial, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    return path


class _AtomicDiskSaver(DiskSaver):
    """Ignite's atomic ``DiskSaver`` writing to one fixed file name, as MONAI's ``CheckpointSaver`` needs."""

    def __init__(self, dirname: str, filename: str | None = None) -> None:
        super().__init__(dirname=dirname, require_empty=False, atomic=True)
        self.filename = filename

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        super().__call__(checkpoint, self.filename or filename, metadata)

    def remove(self, filename: str) -> None:
        if not is_main_process():  # ignite's DiskSaver writes on rank 0 only (save_on_rank=0): so it removes
            return
        path = Path(self.dirname) / (self.filename or filename)
        if path.exists():
            path.unlink()


class AtomicCheckpointSaver(CheckpointSaver):
    """
    MONAI's ``CheckpointSaver`` (same arguments) whose files are written atomically: a kill while saving leaves
    the previous file intact. Unlike MONAI's, it saves no "final" checkpoint when training raises.
    ``state_dict`` / ``load_state_dict`` carry the best-key-metric record, so a resumed run only replaces the
    best model with a better one.
    """

    def __init__(self, *args: Any, key_metric_filename: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, key_metric_filename=key_metric_filename, **kwargs)
        for checkpoint, filename in (
            (self._final_checkpoint, self._final_filename),
            (self._key_metric_checkpoint, key_metric_filename),
            (self._interval_checkpoint, None),
        ):
            if checkpoint is not None:
                checkpoint.save_handler = _AtomicDiskSaver(self.save_dir, filename)

    def exception_raised(self, engine: Engine, e: Exception) -> None:
        """Re-raise without saving: a crashed run is continued from its resume checkpoints, and a file named
        final must only come from a completed run."""
        raise e

    def state_dict(self) -> OrderedDict:
        if self._key_metric_checkpoint is None:
            return OrderedDict()
        return self._key_metric_checkpoint.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        if state_dict:
            super().load_state_dict(state_dict)


def _resume_files(save_dir: Path) -> list[Path]:
    """The ``resume_iteration=<N>.pt`` files in ``save_dir``, oldest (smallest N) first."""
    found = ((RESUME_PATTERN.match(p.name), p) for p in save_dir.glob("resume_iteration=*.pt"))
    return [p for _, p in sorted((int(m.group(1)), p) for m, p in found if m)]


def load_latest_checkpoint(save_dir: str | Path) -> tuple[Path, dict] | None:
    """
    The newest readable ``resume_iteration=<N>.pt`` in ``save_dir`` and its content, or ``None`` if there is none.

    Files are read with ``torch.load(weights_only=True)``: a checkpoint holding anything but tensors and plain
    containers (for example a pickled object that would run code) is refused like a corrupt one. A file that
    cannot be read is skipped with a warning and the previous checkpoint is used.
    """
    for path in reversed(_resume_files(Path(save_dir))):
        try:
            return path, torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable file falls back to the previous checkpoint
            logger.warning(f"cannot read checkpoint {path} ({type(e).__name__}: {e}); trying the previous one")
    return None


class ResumableCheckpointer:
    """
    Saves everything needed to continue training every ``interval`` iterations (or epochs), and resumes from it.

    A checkpoint ``<save_dir>/resume_iteration=<N>.pt`` holds the state dicts of ``save_dict`` (network, heads,
    optimizer, LR scheduler, ...), the trainer's state (epoch, iteration and its own generators), the AMP grad
    scaler when there is one, and the global RNG states of Python, NumPy and torch. Files are written atomically
    and the newest ``n_saved`` are kept, so a corrupt newest file falls back to the one before.

    With ``resume=True`` the newest readable checkpoint is loaded when the trainer starts (none: training starts
    from scratch, logged). With ``resume=False`` a ``save_dir`` that already holds ``*.pt`` files of an earlier
    run is refused when the handler is created, before anything trains or writes.

    Args:
        save_dir: folder of the checkpoints (the run's model folder).
        save_dict: objects with ``state_dict`` / ``load_state_dict`` to save, by name; the trainer itself is added
            as ``trainer`` when attached.
        interval: save every ``interval`` iterations (or epochs with ``epoch_level``); the end of training is
            always saved.
        epoch_level: count ``interval`` in epochs instead of iterations.
        n_saved: number of newest checkpoints kept (at least 2 for the fallback).
        resume: continue from the newest checkpoint in ``save_dir``.
    """

    def __init__(
        self,
        save_dir: str | Path,
        save_dict: Mapping[str, Any],
        interval: int = 50,
        epoch_level: bool = False,
        n_saved: int = 2,
        resume: bool = False,
    ) -> None:
        if interval < 1 or n_saved < 1:
            raise ValueError(f"interval and n_saved must be positive, got {interval} and {n_saved}.")
        self.save_dir = Path(save_dir)
        self.save_dict = dict(save_dict)
        self.interval = interval
        self.epoch_level = epoch_level
        self.n_saved = n_saved
        self.resume = resume
        self._last_saved_iteration: int | None = None
        if not resume and self.save_dir.is_dir():
            refuse_existing(
                sorted(self.save_dir.glob("*.pt")),
                hint="set resume to true to continue that run, or choose another output_dir: nothing is overwritten",
            )

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.started)
        event = Events.EPOCH_COMPLETED if self.epoch_level else Events.ITERATION_COMPLETED
        engine.add_event_handler(event(every=self.interval), self.save)
        engine.add_event_handler(Events.COMPLETED, self.save)

    def _objects(self, engine: Engine) -> dict[str, Any]:
        objects = {**self.save_dict, "trainer": engine}
        scaler = getattr(engine, "scaler", None)
        if scaler is not None:
            objects["scaler"] = scaler
        return objects

    def started(self, engine: Engine) -> None:
        if not self.resume:
            return
        found = load_latest_checkpoint(self.save_dir)
        if found is None:
            logger.info(f"resume: no checkpoint in {self.save_dir}, training starts from scratch")
            return
        path, state = found
        max_epochs = engine.state.max_epochs
        for name, obj in self._objects(engine).items():
            if name not in state:
                raise KeyError(f"checkpoint {path} has no '{name}' entry to resume from")
            obj.load_state_dict(state[name])
        engine.state.max_epochs = max_epochs
        set_global_rng_state(state["rng"])
        logger.info(f"resumed from {path} at epoch {engine.state.epoch}, iteration {engine.state.iteration}")

    def save(self, engine: Engine) -> None:
        """Write the resume checkpoint (rank 0 of a distributed run only: the states are the same on every rank)."""
        if engine.state.iteration == self._last_saved_iteration:  # the last interval save coincides with the end
            return
        self._last_saved_iteration = engine.state.iteration
        if not is_main_process():
            return
        state = {name: obj.state_dict() for name, obj in self._objects(engine).items()}
        state["rng"] = global_rng_state()
        atomic_torch_save(state, self.save_dir / f"resume_iteration={engine.state.iteration}.pt")
        for old in _resume_files(self.save_dir)[: -self.n_saved]:
            old.unlink()
