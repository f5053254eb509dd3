"""torchrun with two CPU processes (gloo) over configs/train.yaml + configs/multi_gpu_train.yaml."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.bundle_cli import BUNDLE_ROOT

pytestmark = pytest.mark.slow

TINY = {
    "max_epochs": 2,
    "val_interval": 2,
    "roi_size": [32, 32, 32],
    "num_workers": 0,
    "num_samples": 1,
    "phantom_cases": 4,
    "val_fraction": 0.5,
    "ssl_start_iteration": 1,
    "ssl_rampup_iterations": 0,
    "checkpoint_interval": 1,
}
# each rank saves its own network at the end, so the test can compare the ranks
RANK_WEIGHTS = """finalize:
  - "$torch.save(@network.module.state_dict(), @output_dir + '/rank_' + str(dist.get_rank()) + '.pt')"
  - "$dist.is_initialized() and dist.destroy_process_group()"
"""


def _torchrun(tmp_path, **overrides) -> subprocess.CompletedProcess:
    extra = tmp_path / "rank_weights.yaml"
    extra.write_text(RANK_WEIGHTS)
    configs = [str(BUNDLE_ROOT / "configs" / "train.yaml"), str(BUNDLE_ROOT / "configs" / "multi_gpu_train.yaml"), str(extra)]
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "monai.bundle", "run", "--config_file", json.dumps(configs)]
    for key, value in {**TINY, **overrides}.items():
        args += [f"--{key}", json.dumps(value) if isinstance(value, list) else str(value)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, cwd=BUNDLE_ROOT, capture_output=True, text=True, timeout=900, env=env)


def _resume_iteration(models) -> int:
    return max(int(p.stem.split("=")[1]) for p in models.glob("resume_iteration=*.pt"))


def test_two_ranks_train_the_same_weights_only_rank_0_writes_and_resume_continues(tmp_path):
    out, data = tmp_path / "run", tmp_path / "phantom_source"
    result = _torchrun(tmp_path, output_dir=str(out), phantom_dir=str(data))
    assert result.returncode == 0, result.stderr[-4000:]
    assert (data / "dataset.json").is_file(), "rank 0 generated the phantom, rank 1 waited for it"
    rank0, rank1 = (torch.load(out / f"rank_{r}.pt", weights_only=True) for r in (0, 1))
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        torch.testing.assert_close(rank0[key], rank1[key], rtol=0, atol=0, msg=key)
    models = out / "models"
    # 2 training cases over 2 ranks: 1 iteration per epoch on each rank
    assert _resume_iteration(models) == 2
    assert (models / "checkpoint_final.pt").is_file() and (models / "model.pt").is_file()
    state = torch.load(models / "model.pt", weights_only=True)
    assert not any(key.startswith("module.") for key in state), "checkpoints hold the plain network"
    events = list(out.glob("events.out.tfevents.*"))  # events.out.tfevents.<time>.<host>.<pid>.<n>
    assert events and len({p.name.split(".")[-2] for p in events}) == 1, f"TensorBoard events of one process: {events}"
    assert not list(out.rglob("*.partial*")), "no temporary file left"
    resumed = _torchrun(tmp_path, output_dir=str(out), phantom_dir=str(data), resume=True, max_epochs=3)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert _resume_iteration(models) == 3
    rank0, rank1 = (torch.load(out / f"rank_{r}.pt", weights_only=True) for r in (0, 1))
    for key in rank0:
        torch.testing.assert_close(rank0[key], rank1[key], rtol=0, atol=0, msg=key)
