"""ONNX export of the network through ``monai.bundle onnx_export``: a dynamic batch axis, outputs of onnxruntime
within 1e-4 of PyTorch's, and the same mask from a whole sliding window."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from monai.inferers import SlidingWindowInferer

from scripts.bundle import bundle_parser
from scripts.phantom import generate_case
from tests.bundle_cli import BUNDLE_ROOT

onnxruntime = pytest.importorskip("onnxruntime", reason="onnx and onnxruntime are optional (requirements-dev.txt)")
pytest.importorskip("onnxscript", reason="torch's ONNX exporter needs onnxscript (requirements-dev.txt)")

EXPORT = [
    "onnx_export", "network_def", "--ckpt_file", str(BUNDLE_ROOT / "models" / "model.pt"),
    "--meta_file", str(BUNDLE_ROOT / "configs" / "metadata.json"),
    "--config_file", str(BUNDLE_ROOT / "configs" / "inference.yaml"),
    "--input_shape", "[1, 1, 64, 64, 48]", "--use_trace", "True",
    "--converter_kwargs",
    "{'input_names': ['image'], 'output_names': ['pred'], 'dynamic_axes': {'image': {0: 'batch'}, 'pred': {0: 'batch'}}}",
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    result = subprocess.run(
        [sys.executable, "-m", "monai.bundle", *EXPORT[:2], "--filepath", str(path), *EXPORT[2:]],
        cwd=BUNDLE_ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    network = bundle_parser(["inference.yaml"]).get_parsed_content("network_def").eval()
    network.load_state_dict(torch.load(BUNDLE_ROOT / "models" / "model.pt", weights_only=True, map_location="cpu"))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return network, session


def _onnx(session, x: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(session.run(["pred"], {"image": x.numpy().astype(np.float32)})[0])


@pytest.mark.parametrize("batch", [1, 4], ids=["batch 1", "batch 4 (sw_batch_size)"])
def test_onnxruntime_gives_the_outputs_of_pytorch(exported, batch):
    network, session = exported
    x = torch.rand((batch, 1, 64, 64, 48), generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        expected = network(x)
    np.testing.assert_allclose(_onnx(session, x).numpy(), expected.numpy(), atol=1e-4, rtol=0)


def test_a_sliding_window_through_onnxruntime_gives_the_same_mask(exported):
    network, session = exported
    parser = bundle_parser(["inference.yaml"])
    low, high = parser["hu_window"]
    case = generate_case("source", seed=1000)
    image = torch.from_numpy(np.clip((case.image.astype(np.float32) - low) / (high - low), 0, 1))[None, None]
    inferer = SlidingWindowInferer(roi_size=parser["roi_size"], sw_batch_size=4, overlap=0.25, mode="gaussian")
    with torch.no_grad():
        expected = inferer(image, network).argmax(1)
        result = inferer(image, lambda x: _onnx(session, x)).argmax(1)
    assert expected.sum() > 100, "the check needs a predicted pancreas"
    assert torch.equal(result, expected)
