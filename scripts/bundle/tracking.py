"""
MLflow experiment tracking of a training run (``python -m monai.bundle run ... --tracking mlflow``).

MONAI adds an ``MLFlowHandler`` to the trainer and one to the validator, configured by config keys it only adds
where the config has none (``tracking_uri``, ``experiment_name``, ``run_name``, ``is_not_rank0``,
``save_execute_config``): ``configs/train.yaml`` defines them. The trainer's handler then logs only the total loss
and ``max_epochs``; :func:`configure_mlflow_handlers` makes it log every loss term, every hyper-parameter of the
executed config and the config itself as an artefact.
"""

from __future__ import annotations

import os
import re
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser
from monai.bundle.utils import EXPR_KEY, ID_REF_KEY, MACRO_KEY
from monai.handlers import MLFlowHandler
from monai.utils import path_to_sqlite_uri

__all__ = [
    "TRACKING_KEYS",
    "configure_mlflow_handlers",
    "executed_config_file",
    "hyper_parameters",
    "run_name",
    "sqlite_uri",
]

TRACKING_KEYS = frozenset(
    {
        "output_dir", "tracking_uri", "experiment_name", "run_name", "save_execute_config", "is_not_rank0",
        "executed_config",
    }
)
"""Top-level keys that say where and how a run is tracked: no hyper-parameters of the run."""

_SECTIONS = frozenset({"imports", "initialize", "run", "finalize"})
_COMPUTED = (EXPR_KEY, ID_REF_KEY, MACRO_KEY)


def sqlite_uri(directory: str | os.PathLike, filename: str = "mlflow.db") -> str:
    """
    The URI of an MLflow SQLite store ``<directory>/<filename>`` (absolute, e.g. ``sqlite:////abs/run/mlflow.db``).

    MLflow 3 refuses the ``./mlruns`` file store; a SQLite store keeps runs, parameters and metrics in one file,
    and ``MLFlowHandler`` puts the artefacts in ``<directory>/mlruns`` beside it.

    Raises:
        ValueError: when ``directory`` or ``filename`` is empty, or ``filename`` is not a bare file name.
    """
    if not str(directory):
        raise ValueError("the directory of the MLflow store is empty")
    if not filename or Path(filename).name != filename:
        raise ValueError(f"filename must be a file name without folders, got {filename!r}")
    return path_to_sqlite_uri(Path(directory) / filename)


def run_name(prefix: str = "train") -> str:
    """
    ``<prefix>_<YYYYmmdd_HHMMSS>``: a name of its own for each run, so that the trainer's and the validator's
    handlers log to one MLflow run and never continue an unfinished run of an earlier (e.g. killed) process.

    Raises:
        ValueError: when ``prefix`` is empty.
    """
    if not prefix:
        raise ValueError("the run name prefix is empty")
    return f"{prefix}_{time.strftime('%Y%m%d_%H%M%S')}"


def executed_config_file(save_execute_config: str | bool | None, output_dir: str | os.PathLike) -> str | None:
    """
    The file in which ``--tracking`` exported the executed config (every config file and override merged), or
    None when none was exported (``save_execute_config`` false, or no tracking: then it is still ``True``).

    MONAI replaces ``save_execute_config: true`` with the expression ``<raw output_dir> + '/config_<time>.json'``
    built by string concatenation. Evaluated, it is the file's path when ``output_dir`` is an expression, but the
    literal string ``/path + '/config_<time>.json'`` after a plain ``--output_dir /path``: a path to no file, which
    ``MLFlowHandler`` skips without a word. That string is read here as the file name joined to ``output_dir``
    (where MONAI wrote the file); any other string is a path already (e.g. a ``save_execute_config`` file given
    on the command line) and is returned unchanged.
    """
    if save_execute_config is None or isinstance(save_execute_config, bool):
        return None
    value = str(save_execute_config)
    concatenated = re.fullmatch(r"(?s).* \+ '/([^/']+)'", value)
    return os.path.join(os.fspath(output_dir), concatenated.group(1)) if concatenated else value


def _plain(value: Any) -> bool:
    """A value written in the config itself (a number, bool, None, string or a list of those), not computed."""
    if isinstance(value, str):
        return not value.startswith(_COMPUTED)
    if value is None or isinstance(value, (bool, int, float)):
        return True
    if isinstance(value, (list, tuple)):
        return all(not isinstance(v, (list, tuple, dict)) and _plain(v) for v in value)
    return False


def hyper_parameters(
    config: str | os.PathLike | Mapping[str, Any], exclude: Iterable[str] = TRACKING_KEYS
) -> dict[str, Any]:
    """
    Every hyper-parameter of a config: each top-level key whose value is written in the config (a number, bool,
    None, string, or list of those; not an expression or reference), and each such argument of a top-level
    component, named ``<component>.<argument>`` (e.g. ``network_def.channels``; MLflow allows no ``#``).
    Sections (``train``, ``validate``, ``imports``, ...), ``_meta_`` and ``exclude`` are left out.

    Args:
        config: a config file (JSON or YAML, e.g. the executed config ``--tracking`` exports) or its content.
        exclude: top-level keys that are no hyper-parameters (default: the tracking settings).

    Raises:
        FileNotFoundError: when ``config`` is a path to no file.
        TypeError: when the config's content is not a mapping.
    """
    if isinstance(config, (str, os.PathLike)):
        if not os.path.isfile(config):
            raise FileNotFoundError(f"config file not found: {os.fspath(config)!r}")
        config = ConfigParser.load_config_file(config)
    if not isinstance(config, Mapping):
        raise TypeError(f"a config is a mapping of ids to values, got {type(config).__name__}")
    skip = set(exclude) | _SECTIONS
    params: dict[str, Any] = {}
    for key, value in config.items():
        if key.startswith("_") or key in skip:
            continue
        if isinstance(value, Mapping) and "_target_" in value:
            params.update({f"{key}.{arg}": v for arg, v in value.items() if not arg.startswith("_") and _plain(v)})
        elif _plain(value):
            params[key] = value
    return params


def configure_mlflow_handlers(
    handlers: Sequence[Any], executed_config: str | os.PathLike | None, output_transform: Callable[[Any], Any]
) -> list[Any]:
    """
    Complete each ``MLFlowHandler`` among a trainer's ``handlers`` (those ``--tracking mlflow`` adds): it logs
    ``output_transform(engine.state.output)`` every iteration (a dict: every loss term), the
    :func:`hyper_parameters` of ``executed_config`` as parameters when training starts, and ``executed_config``
    as an artefact at the end. Without tracking there is no such handler and ``handlers`` is returned as it is.

    Used in ``configs/train.yaml``: ``train_handlers: $scripts.bundle.tracking.configure_mlflow_handlers(
    @train#handlers, @executed_config, scripts.engines.loss_terms)``.

    Args:
        handlers: the trainer's handlers (instantiated).
        executed_config: the executed config :func:`executed_config_file` names, or None: then MONAI's parameters
            (``max_epochs``) only, and no artefact.
        output_transform: maps the trainer's ``engine.state.output`` to a scalar or a dict of named scalars.

    Raises:
        TypeError: when ``output_transform`` is not callable.
        FileNotFoundError: when tracking and ``executed_config`` names no file (the artefact would be dropped).
    """
    if not callable(output_transform):
        raise TypeError(f"output_transform must be callable, got {type(output_transform).__name__}")
    handlers = list(handlers)
    tracking = [h for h in handlers if isinstance(h, MLFlowHandler)]
    if not tracking:
        return handlers
    params: dict[str, Any] = {}
    if executed_config is None:
        warnings.warn(
            "save_execute_config is false: MLflow records neither the config nor its hyper-parameters", stacklevel=2
        )
    else:
        params = hyper_parameters(executed_config)
    for handler in tracking:
        handler.output_transform = output_transform
        handler.experiment_param = {**params, **(handler.experiment_param or {})}
        handler.artifacts = () if executed_config is None else (os.fspath(executed_config),)
    return handlers

