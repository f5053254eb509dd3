"""
The evaluate config's evaluator, parsed once and reused on other weights and data.

``configs/train.yaml`` + ``configs/evaluate.yaml`` define ``validate#evaluator``: sliding-window inference,
prediction and label inverted to the original geometry of each case, Dice, HD95 and surface Dice in mm and
the relative volume error. The classes here build that evaluator once with ``monai.bundle.ConfigParser``
and swap its weights (``DomainEvaluator``, for many checkpoints on one test set) or its data
(``CaseEvaluator``, one case at a time, so that a case that cannot be read is reported and the rest go on).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.data import DataLoader

from scripts.bundle import bundle_parser
from scripts.data.errors import describe_error
from scripts.data.readers import load_input
from scripts.data.weights import weights_error
from scripts.engines.single_case import run_single_case

__all__ = ["BundleEvaluator", "CaseError", "CaseEvaluator", "DomainEvaluator"]

CONFIG_FILES = ("train.yaml", "evaluate.yaml")


class BundleEvaluator:
    """
    ``validate#evaluator`` of ``configs/train.yaml`` + ``configs/evaluate.yaml`` with ``overrides`` applied.

    The evaluate config's handlers (checkpoint loading, logging, CSV writing) are dropped: weights are loaded
    with ``load_weights`` and the per-case values are read from ``evaluator.state.metric_details``.

    Args:
        overrides: config ids and values set after reading the configs, e.g. ``{"roi_size": [32, 32, 32]}``.
    """

    def __init__(self, overrides: dict[str, Any] | None = None) -> None:
        self.overrides = {"validate#handlers": [], **(overrides or {})}
        self._build()

    def _build(self) -> None:
        self.parser = bundle_parser(CONFIG_FILES, self.overrides)
        self.evaluator = self.parser.get_parsed_content("validate#evaluator")
        # one complete run per call: with ignite's interrupt/resume generator, a run that raised would make the
        # next run return at once without evaluating (see scripts.engines.single_case)
        self.evaluator.interrupt_resume_enabled = False
        self.network = self.parser.get_parsed_content("network")

    def load_weights(self, checkpoint: str | Path) -> None:
        """Load a ``network_def`` state dict, or the ``model`` entry of a training checkpoint, into the network."""
        try:
            state = torch.load(checkpoint, map_location=self.evaluator.state.device, weights_only=True)
        except Exception as error:
            raise weights_error(checkpoint, error) from None
        self.network.load_state_dict(state["model"] if "model" in state else state)


class DomainEvaluator(BundleEvaluator):
    """
    The evaluate config's evaluator on one domain's test set, built once and reused for every run.

    Args:
        data_dir: the test set, an MSD-style folder.
        overrides: every setting the evaluated runs were trained with that the evaluation depends on (``pixdim``,
            ``roi_size``, ``network_def#channels``, ...: see ``scripts.benchmarks.profiles.EVALUATION_KEYS``); a
            network of another shape then fails to load instead of being evaluated on the wrong grid.
        num_workers: data loader workers.
    """

    def __init__(self, data_dir: Path, overrides: dict[str, Any] | None = None, num_workers: int = 0) -> None:
        super().__init__(
            {
                **(overrides or {}),
                "dataset_dir": str(data_dir),
                "num_workers": num_workers,
                "validate#dataset#cache_rate": 1.0,
            }
        )
        self.quality: list[dict] = []
        self.evaluator.add_event_handler(Events.ITERATION_COMPLETED, self._collect_quality)

    def _collect_quality(self, engine: Engine) -> None:
        output = engine.state.output
        self.quality += [item.get("quality", {}) for item in (output if isinstance(output, list) else [output])]

    def __call__(self, checkpoint: Path) -> dict[str, list]:
        """Per-case ``dice``, ``hd95_mm`` and the quality estimate of inference (``uncertainty``, ``flag``)."""
        self.load_weights(checkpoint)
        self.quality = []
        self.evaluator.run()
        details = self.evaluator.state.metric_details
        return {
            "dice": details["val_mean_dice"].flatten().tolist(),
            "hd95_mm": details["val_hd95_mm"].flatten().tolist(),
            "uncertainty": [q.get("uncertainty", float("nan")) for q in self.quality],
            "flag": [bool(q.get("flag", False)) for q in self.quality],
        }


class CaseError(Exception):
    """A case could not be evaluated; the message names the file (or step) and the reason."""


class CaseEvaluator(BundleEvaluator):
    """
    Evaluate one labelled case at a time with the evaluate config's evaluator and fixed weights.

    Each case is read and preprocessed by ``validate#preprocessing`` outside the engine, then run through the
    evaluator as a one-case data loader. Returns the first foreground class of every metric of the evaluator:
    ``val_mean_dice``, ``val_hd95_mm``, ``val_surface_dice``, ``val_relative_volume_error``.

    Args:
        checkpoint: weights to evaluate (see ``load_weights``).
        overrides: config overrides, e.g. ``{"roi_size": [32, 32, 32], "surface_dice_tolerance_mm": 1.0}``.
    """

    def __init__(self, checkpoint: str | Path, overrides: dict[str, Any] | None = None) -> None:
        self.checkpoint = Path(checkpoint)
        super().__init__({"validate#dataset#data": [], **(overrides or {})})

    def _build(self) -> None:
        super()._build()
        self.load_weights(self.checkpoint)
        self.preprocessing = self.parser.get_parsed_content("validate#preprocessing")

    def __call__(self, item: dict[str, str]) -> dict[str, float]:
        """
        Metrics of one case ``{"image": path, "label": path}`` in its original geometry.

        Raises:
            CaseError: naming the file and the reason when the case has no label, a file is missing or
                unreadable, or preprocessing, inference or a metric fails. The evaluator stays usable.
        """
        for key in ("image", "label"):
            if key not in item:
                raise CaseError(f"the datalist entry {item} has no {key!r}")
            if not Path(item[key]).exists():  # a file, or a DICOM series folder
                raise CaseError(f"{key} {item[key]} does not exist")
        try:
            data = self.preprocessing(dict(item))
        except Exception as error:
            raise CaseError(self._load_failure(item, error)) from error
        try:
            run_single_case(self.evaluator, DataLoader([data], batch_size=1, num_workers=0))
        except Exception as error:
            raise CaseError(f"evaluating {item['image']} failed: {describe_error(error)}") from error
        return {name: float(v.flatten()[0]) for name, v in self.evaluator.state.metric_details.items()}

    @staticmethod
    def _load_failure(item: dict[str, str], error: Exception) -> str:
        """Which file could not be read and why, or else the preprocessing error of the pair."""
        for key in ("image", "label"):
            try:
                load_input(item[key])
            except Exception as load_error:
                return f"cannot read {key} {item[key]}: {describe_error(load_error)}"
        return f"preprocessing {item['image']} with {item['label']} failed: {describe_error(error)}"
