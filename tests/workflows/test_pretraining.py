"""PGL pretraining through ``monai.bundle``: the loss falls, a checkpoint is written, fine-tuning starts from it."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from tests.bundle_cli import run_bundle

pytestmark = pytest.mark.slow

TINY = {
    "pixdim": [4.0, 4.0, 4.0],
    "roi_size": [32, 32, 32],
    "network_def#channels": [8, 16, 32, 64, 128],
    "num_workers": 0,
}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain")
    result = run_bundle(
        "run",
        ["pretrain_pgl.yaml"],
        phantom_dir=str(root / "phantom"),
        phantom_cases=2,
        output_dir=str(root / "run"),
        max_epochs=3,
        learning_rate=0.003,
        **TINY,
    )
    return root, result.stdout + result.stderr


def test_pretraining_lowers_the_local_consistency_loss_and_logs_the_collapse_monitor(pretrained):
    _, log = pretrained
    losses = [float(v) for v in re.findall(r" loss: ([0-9.]+)", log)]
    stds = [float(v) for v in re.findall(r"feature_std: ([0-9.]+)", log)]
    assert len(losses) == 12 and len(stds) == 12, "2 cases x 2 views per case x 3 epochs: 12 iterations logged"
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])
    assert min(stds) > 0.05, "the features did not collapse"
    assert re.search(r"loss_decoder0: [0-9.]+ loss_encoder2: [0-9.]+ overlap_fraction: 0\.\d+", log)


def test_the_checkpoint_holds_tensors_only_and_fine_tuning_loads_its_network(pretrained):
    root, _ = pretrained
    checkpoint = root / "run" / "models" / "checkpoint_final.pt"
    state = torch.load(checkpoint, weights_only=True)
    assert {"model", "heads", "target_network", "target_heads", "optimizer"} <= set(state)
    result = run_bundle(
        "run",
        ["train.yaml", "baseline.yaml"],
        phantom_dir=str(root / "labelled"),
        phantom_cases=2,
        val_fraction=0.5,
        output_dir=str(root / "finetune"),
        max_epochs=1,
        pretrained_checkpoint=str(checkpoint),
        **TINY,
    )
    log = result.stdout + result.stderr
    count = len(state["model"])
    assert f"pretrained weights {checkpoint}: loaded {count} of the network's {count} tensors" in log
    assert "encoder.0.conv.unit0.conv.weight" in log
