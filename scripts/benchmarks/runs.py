"""
How the benchmarks run a training and score it: ``monai.bundle run`` in a process of its own with a log and a thread
budget, an interrupted run resumed, a finished one scored once per evaluation version.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from scripts.benchmarks.scores import evaluation_version
from scripts.bundle import BUNDLE_ROOT, config_files

__all__ = ["bundle_run_args", "epoch_seconds", "logged_values", "run_logged", "score_once", "train_once"]

EPOCH_TIME = re.compile(r"Epoch\[(\d+)\] Complete\. Time taken: (\d+):(\d+):([\d.]+)")


def run_logged(args: list[str], log: Path, threads: int) -> float:
    """Run ``args`` from the bundle root with ``threads`` torch threads, output appended to ``log``; seconds taken.

    Raises:
        RuntimeError: when the command fails, naming its log.
    """
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    start = time.perf_counter()
    with open(log, "a") as f:
        result = subprocess.run(args, cwd=BUNDLE_ROOT, stdout=f, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])} failed, see {log}")
    return time.perf_counter() - start


def bundle_run_args(configs: list[str], settings: dict) -> list[str]:
    """``python -m monai.bundle run`` over ``configs/<name>`` for each of ``configs``, with ``--key value`` settings."""
    args = [sys.executable, "-m", "monai.bundle", "run", "--config_file", json.dumps(config_files(*configs))]
    args += ["--meta_file", str(BUNDLE_ROOT / "configs" / "metadata.json")]
    for key, value in settings.items():
        args += [f"--{key}", json.dumps(value) if isinstance(value, list) else str(value)]
    return args


def epoch_seconds(log: Path) -> float:
    """Seconds of the trainer's epochs in a training log (Ignite's per-epoch time: without the validation run at
    the end of an epoch); the last attempt's time for an epoch that was run again after a resume."""
    epochs: dict[int, float] = {}
    for match in EPOCH_TIME.finditer(log.read_text() if log.is_file() else ""):
        epoch, hours, minutes, seconds = match.groups()
        epochs[int(epoch)] = 3600 * int(hours) + 60 * int(minutes) + float(seconds)
    return float(sum(epochs.values()))


def logged_values(log: Path, name: str) -> list[float]:
    """Every value the StatsHandler logged for ``name`` (``"<name>: <value>"``, per iteration) in a training log,
    in order; ``name`` must be the whole key (``loss`` does not match ``loss_decoder0``)."""
    pattern = re.compile(rf"(?<![\w]){re.escape(name)}: (-?[0-9.]+(?:e-?[0-9]+)?)")
    return [float(v) for v in pattern.findall(log.read_text() if log.is_file() else "")]


def train_once(configs: list[str], settings: dict, run_dir: Path, threads: int) -> float:
    """
    Train into ``run_dir`` unless ``run_dir/models/checkpoint_final.pt`` exists (an unfinished run resumes from its
    newest checkpoint); returns the seconds this call spent (NaN when it was done already).
    """
    if (run_dir / "models" / "checkpoint_final.pt").is_file():
        return float("nan")
    run_dir.mkdir(parents=True, exist_ok=True)
    args = bundle_run_args(configs, {"output_dir": str(run_dir), "resume": True, **settings})
    return run_logged(args, run_dir / "train.log", threads)


def score_once(
    run_dir: Path,
    profile: str,
    test_dirs: dict[str, str],
    threads: int,
    train_seconds: float,
    config_overrides: dict | None = None,
) -> dict:
    """``run_dir/scores.json`` (``scripts.benchmarks.scores``, with ``config_overrides`` for the evaluator),
    computed when missing or scored by another version."""
    scores_file = run_dir / "scores.json"
    if scores_file.is_file():
        earlier = json.loads(scores_file.read_text())
        if earlier.get("evaluation_version") == evaluation_version():
            return earlier
        train_seconds = earlier.get("train_seconds", train_seconds)  # scored again, the training time kept
    args = [sys.executable, "-m", "scripts.benchmarks.scores", str(run_dir), "--profile", profile]
    args += ["--test_dirs", json.dumps(test_dirs), "--train_seconds", f"{train_seconds:.1f}"]
    if config_overrides:
        args += ["--config_overrides", json.dumps(config_overrides)]
    run_logged(args, run_dir / "scores.log", threads)
    return json.loads(scores_file.read_text())
