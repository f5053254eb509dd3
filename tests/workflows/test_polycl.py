"""PolyCL through ``monai.bundle``: pretraining logs its terms and writes a tensors-only checkpoint, fine-tuning starts
from it, slice-wise inference of the fine-tuned 2D network writes masks with the input's shape and affine."""

from __future__ import annotations

import re

import nibabel as nib
import numpy as np
import pytest
import torch

from tests.bundle_cli import run_bundle

pytestmark = pytest.mark.slow

TINY = {"pixdim": [4.0, 4.0, 4.0], "slice_size": [96, 80], "network_def#channels": [8, 16, 32, 64, 128]}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    root = tmp_path_factory.mktemp("polycl")
    result = run_bundle("run", ["pretrain_polycl.yaml"], phantom_dir=str(root / "phantom"), phantom_cases=2,
                        output_dir=str(root / "pretrain"), strategy="M", max_epochs=2, batch_size=8, **TINY)
    return root, result.stdout + result.stderr


def test_pretraining_logs_the_similarities_and_keeps_tensors_only(pretrained):
    root, log = pretrained
    terms = re.findall(r"cos_negative: (-?[0-9.]+) cos_positive: (-?[0-9.]+) feature_std: ([0-9.]+) loss: ([0-9.]+)", log)
    assert len(terms) >= 4, "an iteration's terms are logged"
    state = torch.load(root / "pretrain" / "models" / "checkpoint_final.pt", weights_only=True)
    assert {"model", "head", "optimizer"} <= set(state)
    assert state["model"]["encoder.0.conv.unit0.conv.weight"].ndim == 4, "a 2D network"


def test_fine_tuning_loads_the_pretrained_network_and_inference_keeps_the_geometry(pretrained):
    root, _ = pretrained
    checkpoint = root / "pretrain" / "models" / "checkpoint_final.pt"
    result = run_bundle("run", ["train.yaml", "baseline.yaml", "finetune_polycl.yaml"], phantom_dir=str(root / "phantom"),
                        phantom_cases=2, val_fraction=0.5, output_dir=str(root / "finetune"), max_epochs=2,
                        val_interval=1, num_workers=0, pretrained_checkpoint=str(checkpoint), **TINY)
    count = len(torch.load(checkpoint, weights_only=True)["model"])
    assert f"loaded {count} of the network's {count} tensors" in result.stdout + result.stderr
    model = root / "finetune" / "models" / "model.pt"
    run_bundle("run", ["inference.yaml", "inference_2d.yaml"], checkpoint=str(model),
               dataset_dir=str(root / "phantom"), output_dir=str(root / "out"), **TINY)
    for image in sorted((root / "phantom" / "imagesTr").glob("*.nii.gz")):
        source = nib.load(str(image))
        seg = nib.load(str(root / "out" / image.name.replace(".nii.gz", "_seg.nii.gz")))
        assert seg.shape == source.shape
        np.testing.assert_allclose(seg.affine, source.affine, atol=1e-5)
    assert (root / "out" / "summary.csv").is_file()
