"""
configs/deploy.yaml, the config MONAI Deploy's bundle operator reads over configs/inference.yaml: no file reader
or writer in the transforms it runs, paths independent of the working directory (no App SDK needed here).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureTyped, LoadImaged, SaveImaged

from scripts.data.dicom_seg import SaveDicomSegd
from scripts.data.readers import LoadInputImaged
from scripts.inference.deploy import in_memory
from tests.bundle_cli import BUNDLE_ROOT

CONFIGS = BUNDLE_ROOT / "configs"


def _sdk_parser() -> ConfigParser:
    """Parsed as MonaiBundleInferenceOperator parses a bundle: metadata, then the configs, nothing overridden."""
    parser = ConfigParser()
    parser.read_meta(str(CONFIGS / "metadata.json"))
    parser.read_config([str(CONFIGS / "inference.yaml"), str(CONFIGS / "deploy.yaml")])
    parser.parse()
    return parser


def test_deploy_transforms_neither_read_nor_write_files():
    parser = _sdk_parser()
    inference_pre = parser.get_parsed_content("preprocessing").transforms
    assert isinstance(inference_pre[0], LoadInputImaged)  # what the SDK's name filter ("LoadImage") keeps
    pre = parser.get_parsed_content("deploy_preprocessing").transforms
    post = parser.get_parsed_content("deploy_postprocessing").transforms
    assert not [t for t in pre + post if isinstance(t, (LoadImaged, SaveImaged, SaveDicomSegd))]
    assert isinstance(pre[0], EnsureTyped) and pre[0].dtype == (torch.float32,)
    # the rest are inference.yaml's transforms, in its order (the overlay copy is off: nothing reads it)
    expected = [type(t).__name__ for t in inference_pre[1:] if type(t).__name__ != "KeepInputCopyd"]
    assert [type(t).__name__ for t in pre[1:]] == expected
    names = [type(t).__name__ for t in post]
    assert names == [
        "Activationsd",
        "ForegroundProbabilityd",
        "PredictionQualityd",
        "ResampleToInputd",
        "AsDiscreted",
        "KeepLargestComponentd",
    ]


def test_deploy_bundle_root_is_the_bundle_whatever_the_working_directory(tmp_path):
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); from monai.bundle import ConfigParser; p = ConfigParser(); "
        "p.read_meta(sys.argv[1] + '/configs/metadata.json'); "
        "p.read_config([sys.argv[1] + '/configs/inference.yaml', sys.argv[1] + '/configs/deploy.yaml']); p.parse(); "
        "print(json.dumps([p.get_parsed_content('bundle_root'), p.get_parsed_content('checkpoint')]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(BUNDLE_ROOT)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    root, checkpoint = json.loads(result.stdout.strip().splitlines()[-1])
    assert root == str(BUNDLE_ROOT) and checkpoint == str(BUNDLE_ROOT / "models" / "model.pt")
    assert not list(tmp_path.iterdir())  # nothing written into the working directory


def test_deploy_preprocessing_of_the_sdk_image_equals_the_loaded_image():
    """An int16 (columns, rows, slices) MetaTensor as the SDK makes it gives the network input of the float32 one."""
    parser = _sdk_parser()
    pre = parser.get_parsed_content("deploy_preprocessing")
    rng = np.random.default_rng(0)
    hu = rng.integers(-1000, 300, size=(40, 36, 20)).astype(np.int16)
    hu[:4] = -1024  # air, so that the CT check passes
    affine = np.diag([-0.8, -0.8, 2.5, 1.0])
    meta = {"original_channel_dim": "no_channel", "spatial_shape": np.asarray(hu.shape), "original_affine": affine}
    sdk = pre({"image": MetaTensor(torch.from_numpy(hu), affine=torch.from_numpy(affine), meta=dict(meta))})["image"]
    loaded = MetaTensor(torch.from_numpy(hu.astype(np.float32)), affine=torch.from_numpy(affine), meta=dict(meta))
    reference = Compose(pre.transforms[1:])({"image": loaded})["image"]
    assert sdk.dtype == torch.float32
    torch.testing.assert_close(sdk.as_tensor(), reference.as_tensor(), rtol=0, atol=0)
    np.testing.assert_array_equal(sdk.affine.numpy(), reference.affine.numpy())


def test_in_memory_refuses_what_is_no_compose():
    with pytest.raises(TypeError, match="needs a monai.transforms.Compose, got list"):
        in_memory([EnsureTyped(keys="image")])
    with pytest.raises(ValueError, match="no transform of"):
        in_memory(Compose([SaveImaged(keys="pred")]))
