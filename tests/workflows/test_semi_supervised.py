"""Two-subnetwork semi-supervised training through ``monai.bundle``, and inference with the averaged pair."""

from __future__ import annotations

import re

import nibabel as nib
import numpy as np
import pytest
import torch

from tests.bundle_cli import run_bundle

pytestmark = pytest.mark.slow

PAIR = {
    "first_network_def": {"_target_": "scripts.networks.ResidualUNet", "channels": [8, 16, 32, 64, 128], "num_res_units": 1},
    "second_network_def": {"_target_": "SegResNet", "spatial_dims": 3, "init_filters": 8, "in_channels": 1,
                           "out_channels": 2, "blocks_down": [1, 2, 2, 4], "blocks_up": [1, 1, 1]},
    "roi_size": [48, 32, 32],
    "pixdim": [4.0, 4.0, 4.0],
}
TERMS = ("loss_supervised", "loss_verification", "loss_pseudo_label", "loss_contrastive")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("semi")
    result = run_bundle(
        "run",
        ["train.yaml", "semi_supervised.yaml"],
        phantom_dir=str(root / "phantom"),
        phantom_cases=5,
        val_fraction=0.2,
        labelled_fraction=0.5,
        output_dir=str(root / "run"),
        max_epochs=2,
        val_interval=2,
        num_workers=0,
        semi_rampup_iterations=0,
        feature_modules=["segmentation_head", "conv_final"],
        **{k: (str(v) if isinstance(v, dict) else v) for k, v in PAIR.items()},
    )
    return root, result.stdout + result.stderr


def test_both_subnetworks_train_with_every_term_logged(trained):
    root, log = trained
    for term in TERMS:
        values = [float(v) for v in re.findall(rf"{term}: ([0-9.]+)", log)]
        assert len(values) == 4, f"{term}: 2 labelled cases x 2 epochs = 4 iterations logged"
    assert max(float(v) for v in re.findall(r"loss_contrastive: ([0-9.]+)", log)) > 0
    state = torch.load(root / "run" / "models" / "model.pt", weights_only=True)
    first = {k for k in state if k.startswith("first.")}
    second = {k for k in state if k.startswith("second.")}
    assert first and second and len(first) + len(second) == len(state)
    final = torch.load(root / "run" / "models" / "checkpoint_final.pt", weights_only=True)
    initial = {"first.encoder.0.conv.unit0.conv.weight", "second.convInit.conv.weight"}
    assert initial <= set(final["model"])


def test_inference_with_the_averaged_pair_writes_masks_with_the_input_geometry(trained, tmp_path):
    root, _ = trained
    image = sorted((root / "phantom" / "imagesTr").glob("*.nii.gz"))[0]
    result = run_bundle(
        "run",
        ["inference.yaml", "semi_supervised_inference.yaml"],
        checkpoint=str(root / "run" / "models" / "model.pt"),
        dataset_dir=str(image),
        output_dir=str(tmp_path / "masks"),
        save_overlay=False,
        **{k: (str(v) if isinstance(v, dict) else v) for k, v in PAIR.items()},
    )
    masks = list((tmp_path / "masks").glob("*_seg.nii.gz"))
    assert len(masks) == 1, result.stdout[-2000:]
    source, mask = nib.load(image), nib.load(masks[0])
    assert mask.shape == source.shape
    np.testing.assert_allclose(mask.affine, source.affine, atol=1e-4)
    assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1}
