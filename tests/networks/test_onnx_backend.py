"""The ONNX Runtime backend of inference: PyTorch's outputs, new weights followed, export cached, fallback."""

from __future__ import annotations

import sys

import pytest
import torch

from scripts.networks import OnnxRuntimeNetwork, ResidualUNet, inference_backend

pytest.importorskip("onnxruntime")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "pancreas_ct_dualssl" / "onnx"


def _network(seed: int = 0) -> ResidualUNet:
    torch.manual_seed(seed)
    return ResidualUNet(channels=(8, 16, 32), num_res_units=1).eval()


@pytest.mark.parametrize("shape", [(1, 1, 32, 32, 16), (3, 1, 16, 32, 48)], ids=["export shape", "other batch and size"])
def test_onnxruntime_gives_the_outputs_of_pytorch(shape):
    network = _network()
    backend = inference_backend(network, "onnxruntime", (1, 1, 32, 32, 16))
    assert isinstance(backend, OnnxRuntimeNetwork)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = network(x)
    result = backend(x)
    assert result.shape == expected.shape and result.dtype == torch.float32
    torch.testing.assert_close(result, expected, atol=1e-4, rtol=0)


def test_new_weights_are_exported_again():
    network = _network(0)
    backend = OnnxRuntimeNetwork(network, (1, 1, 16, 16, 16))
    x = torch.rand(1, 1, 16, 16, 16)
    first = backend(x)
    network.load_state_dict(_network(1).state_dict())
    with torch.no_grad():
        expected = network(x)
    second = backend(x)
    assert not torch.allclose(first, second, atol=1e-3)
    torch.testing.assert_close(second, expected, atol=1e-4, rtol=0)


def test_the_export_is_cached_by_weights(_cache, monkeypatch):
    x = torch.rand(1, 1, 16, 16, 16)
    OnnxRuntimeNetwork(_network(0), (1, 1, 16, 16, 16))(x)
    assert len(list(_cache.glob("*.onnx"))) == 1 and not list(_cache.glob("*.partial"))
    again = OnnxRuntimeNetwork(_network(0), (1, 1, 16, 16, 16))
    monkeypatch.setattr(again, "_export", lambda: pytest.fail("the cached export was not used"))
    again(x)
    OnnxRuntimeNetwork(_network(1), (1, 1, 16, 16, 16))(x)
    assert len(list(_cache.glob("*.onnx"))) == 2


def test_auto_uses_onnxruntime_on_cpu_and_torch_is_the_network_itself():
    network = _network()
    assert isinstance(inference_backend(network, "auto", (1, 1, 16, 16, 16)), OnnxRuntimeNetwork)
    assert inference_backend(network, "torch", (1, 1, 16, 16, 16)) is network


def test_without_onnxruntime_auto_falls_back_and_onnxruntime_is_refused(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    network = _network()
    assert inference_backend(network, "auto", (1, 1, 16, 16, 16)) is network
    assert "runs in PyTorch" in caplog.text
    with pytest.raises(ImportError, match="pip install -r requirements.txt"):
        inference_backend(network, "onnxruntime", (1, 1, 16, 16, 16))


def test_an_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="inference_backend must be one of"):
        inference_backend(_network(), "tensorrt", (1, 1, 16, 16, 16))
