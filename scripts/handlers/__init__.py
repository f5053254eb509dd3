"""Ignite handlers of the bundle: atomic and resumable checkpoints, an atomic metrics report, the validation history."""

from .checkpointing import AtomicCheckpointSaver, ResumableCheckpointer, atomic_torch_save, load_latest_checkpoint
from .metric_history import MetricHistory
from .metrics_saver import AtomicMetricsSaver
from .pretrained_weights import PretrainedWeightsLoader, matching_state
from .ranks import is_main_process

__all__ = [
    "AtomicCheckpointSaver",
    "AtomicMetricsSaver",
    "MetricHistory",
    "PretrainedWeightsLoader",
    "ResumableCheckpointer",
    "atomic_torch_save",
    "is_main_process",
    "load_latest_checkpoint",
    "matching_state",
]
