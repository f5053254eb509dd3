"""Interrupted training resumes, an earlier run is never overwritten, the same seed gives the same weights."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from scripts.handlers.checkpointing import load_latest_checkpoint
from tests.bundle_cli import BUNDLE_ROOT, cli_value, run_bundle

pytestmark = pytest.mark.slow

# 2 training cases, batch 1 (of 2 patches each): 2 iterations per epoch
SMALL = {
    "val_fraction": 0.34,
    "val_interval": 2,
    "roi_size": [32, 32, 32],
    "num_workers": 0,
    "ssl_start_iteration": 1,
    "ssl_rampup_iterations": 0,
    "network_def#channels": [8, 16, 32],
}
ITERATIONS_PER_EPOCH = 2


@pytest.fixture(scope="module")
def source_data(tmp_path_factory) -> Path:
    from scripts.phantom import write_dataset

    return write_dataset(tmp_path_factory.mktemp("data") / "source", domain="source", cases=3, seed=0)


def _train_args(data: Path, output_dir: Path, **overrides) -> list[str]:
    args = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(BUNDLE_ROOT / "configs" / "train.yaml")]
    for key, value in {**SMALL, "dataset_dir": str(data), "output_dir": str(output_dir), **overrides}.items():
        args += [f"--{key}", cli_value(value)]
    return args


def _final_weights(output_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(output_dir / "models" / "checkpoint_final.pt", weights_only=True)["model"]


def test_same_seed_gives_bit_identical_weights_on_cpu(source_data, tmp_path):
    weights = []
    for run in ("a", "b"):
        run_bundle("run", ["train.yaml"], dataset_dir=str(source_data), output_dir=str(tmp_path / run), max_epochs=2, **SMALL)
        weights.append(_final_weights(tmp_path / run))
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), f"{key} differs between two runs with the same seed"
    last = torch.load(tmp_path / "a" / "models" / f"resume_iteration={2 * ITERATIONS_PER_EPOCH}.pt", weights_only=True)
    assert last["trainer"]["iteration"] == 2 * ITERATIONS_PER_EPOCH


def test_killed_training_resumes_to_the_same_iteration_count(source_data, tmp_path):
    max_epochs = 8
    total = max_epochs * ITERATIONS_PER_EPOCH
    output_dir = tmp_path / "run"
    models = output_dir / "models"
    args = _train_args(source_data, output_dir, max_epochs=max_epochs, checkpoint_interval=1, checkpoints_kept=3)
    process = subprocess.Popen(args, cwd=BUNDLE_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (models / "resume_iteration=4.pt").exists():
        assert process.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (models / "checkpoint_final.pt").exists(), "the run finished before it was killed"
    saved = sorted(int(p.stem.split("=")[1]) for p in models.glob("resume_iteration=*.pt"))
    assert 4 <= saved[-1] < total

    # the newest checkpoint is damaged: resuming must fall back to the one before, with a warning
    newest = models / f"resume_iteration={saved[-1]}.pt"
    newest.write_bytes(newest.read_bytes()[:1000])
    result = run_bundle("run", ["train.yaml"], dataset_dir=str(source_data), output_dir=str(output_dir),
                        max_epochs=max_epochs, checkpoint_interval=1, checkpoints_kept=3, resume=True, **SMALL)
    log = result.stdout + result.stderr
    assert f"cannot read checkpoint {newest}" in log
    assert f"resumed from {models / f'resume_iteration={saved[-2]}.pt'}" in log

    path, state = load_latest_checkpoint(models)
    assert path.name == f"resume_iteration={total}.pt"
    assert state["trainer"]["iteration"] == total and state["trainer"]["epoch_length"] == ITERATIONS_PER_EPOCH
    final = _final_weights(output_dir)
    assert all(torch.isfinite(v).all() for v in final.values())
    best = torch.load(models / "model.pt", weights_only=True)
    assert best.keys() == final.keys()


def test_training_refuses_to_overwrite_an_earlier_run(source_data, tmp_path):
    models = tmp_path / "run" / "models"
    models.mkdir(parents=True)
    (models / "model.pt").write_bytes(b"earlier model")
    result = subprocess.run(
        _train_args(source_data, tmp_path / "run", max_epochs=1), cwd=BUNDLE_ROOT, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "FileExistsError" in result.stderr and "model.pt exists from an earlier run; set resume to true" in result.stderr
    assert (models / "model.pt").read_bytes() == b"earlier model"
    assert sorted(p.name for p in models.iterdir()) == ["model.pt"]


def test_every_config_loads_weights_with_weights_only():
    sources = [p for p in (BUNDLE_ROOT / "scripts").rglob("*.py")] + list((BUNDLE_ROOT / "configs").glob("*.yaml"))
    calls = [(p, line) for p in sources for line in p.read_text().splitlines() if "torch.load(" in line]
    assert calls, "no torch.load found: the scan is broken"
    unsafe = [f"{p.relative_to(BUNDLE_ROOT)}: {line.strip()}" for p, line in calls if "weights_only=True" not in line]
    assert not unsafe, json.dumps(unsafe, indent=1)
