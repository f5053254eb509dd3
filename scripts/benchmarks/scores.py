"""
Score one finished benchmark run on every domain's test set, in a process of its own.

    python -m scripts.benchmarks.scores RUN_DIR --profile cpu --test_dirs '{"source": "...", ...}'

Writes ``RUN_DIR/scores.json`` (per domain: per-case Dice, HD95 in mm and the quality estimate; the run's
validation curve, training seconds when given and the bundle version of the evaluation) through a temporary
file, so a run either has complete scores or none.
"""

from __future__ import annotations

import json
from pathlib import Path

from scripts.benchmarks.profiles import profile_overrides
from scripts.bundle import BUNDLE_ROOT, run_command_line
from scripts.data.writers import atomic_path
from scripts.evaluation import DomainEvaluator

__all__ = ["evaluation_version", "score_run"]


def evaluation_version() -> str:
    """The bundle version whose evaluation scored a run: scores of another version are redone."""
    return json.loads((BUNDLE_ROOT / "configs" / "metadata.json").read_text())["version"]


def score_run(
    run_dir: str,
    profile: str,
    test_dirs: dict[str, str],
    train_seconds: float = float("nan"),
    num_workers: int = 0,
    config_overrides: dict | str | None = None,
) -> dict:
    """
    Evaluate ``RUN_DIR/models/checkpoint_final.pt`` on each test set with the profile's evaluation settings and
    ``config_overrides`` (a dict or its JSON, e.g. another ``network_def`` and ``roi_size``) on top.
    """
    run = Path(run_dir)
    extra = json.loads(config_overrides) if isinstance(config_overrides, str) else dict(config_overrides or {})
    overrides = {**profile_overrides(profile, evaluation=True), **extra}
    scores: dict = {}
    for domain, data_dir in (json.loads(test_dirs) if isinstance(test_dirs, str) else test_dirs).items():
        evaluator = DomainEvaluator(Path(data_dir), overrides, num_workers)
        scores[domain] = evaluator(run / "models" / "checkpoint_final.pt")
    curve = run / "validation_curve.json"
    scores["validation_curve"] = json.loads(curve.read_text()) if curve.is_file() else []
    scores["train_seconds"] = train_seconds
    scores["evaluation_version"] = evaluation_version()
    with atomic_path(run / "scores.json") as temporary:
        temporary.write_text(json.dumps(scores, indent=1))
    return scores


if __name__ == "__main__":
    run_command_line(score_run)
