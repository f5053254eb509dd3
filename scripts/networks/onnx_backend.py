"""Run a PyTorch segmentation network's forward through ONNX Runtime on CPU, exported from its current weights."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["BACKENDS", "OnnxRuntimeNetwork", "inference_backend"]

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnxruntime")


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "pancreas_ct_dualssl" / "onnx"


class OnnxRuntimeNetwork(nn.Module):
    """
    ``network``'s forward run by ONNX Runtime's CPU execution provider.

    At the first call, and again whenever a parameter or buffer of ``network`` changed since (new weights loaded
    with ``load_state_dict``), the network is exported to ONNX from its current weights (dynamic batch and spatial
    axes) and an inference session is created. The export is cached under ``$XDG_CACHE_HOME/pancreas_ct_dualssl/onnx``
    by a hash of the weights and the export settings, so later runs with the same weights skip it; an unwritable
    cache only means exporting every run. The inputs and outputs are float32 torch tensors on the input's device.

    On this project's 2-core CPU the shipped network's 4 x 64 x 64 x 48 windows ran 2.4x faster than PyTorch's
    (``scripts.benchmarks.speed``), with logits within 1e-4.

    Args:
        network: the PyTorch network (its weights are read at export time; it is not modified).
        example_shape: an input shape for the export, e.g. ``(1, 1, 64, 64, 48)``.
        threads: ONNX Runtime intra-op threads; 0: ``torch.get_num_threads()``.
        cache: whether to cache the exported model on disk.

    Raises:
        ImportError: at construction when ``onnxruntime`` or ``onnx`` (needed by the exporter) is not installed.
    """

    def __init__(
        self, network: nn.Module, example_shape: tuple[int, ...], threads: int = 0, cache: bool = True
    ) -> None:
        super().__init__()
        import importlib

        import onnxruntime

        importlib.import_module("onnx")  # torch's exporter needs it: fail here, not at the first case

        self._onnxruntime = onnxruntime
        self.network = network
        self.example_shape = tuple(int(s) for s in example_shape)
        self.threads = threads
        self.cache = cache
        self._session = None
        self._versions: tuple[int, ...] | None = None

    def _weight_versions(self) -> tuple[int, ...]:
        # every in-place write (load_state_dict copies into the tensors) bumps a tensor's version counter
        return tuple(t._version for t in list(self.network.parameters()) + list(self.network.buffers()))

    def _weights_digest(self) -> str:
        digest = hashlib.sha256(repr((self.example_shape, torch.__version__)).encode())
        for name, tensor in self.network.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:32]

    def _export(self) -> bytes:
        buffer = io.BytesIO()
        was_training = self.network.training
        self.network.eval()
        axes = {0: "batch", **{i: f"spatial_{i}" for i in range(2, len(self.example_shape))}}
        device = next(self.network.parameters()).device
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                self.network,
                (torch.zeros(self.example_shape, device=device),),
                buffer,
                input_names=["image"],
                output_names=["logits"],
                dynamic_axes={"image": axes, "logits": axes},
                dynamo=False,
            )
        self.network.train(was_training)
        return buffer.getvalue()

    def _model_bytes(self) -> bytes:
        if not self.cache:
            return self._export()
        path = _cache_dir() / f"{self._weights_digest()}.onnx"
        if path.is_file():
            return path.read_bytes()
        model = self._export()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
            with os.fdopen(handle, "wb") as f:
                f.write(model)
            os.replace(temporary, path)
        except OSError as error:
            logger.info(f"the ONNX export is not cached ({error}); it is exported again on the next run")
        return model

    def _ensure_session(self) -> None:
        versions = self._weight_versions()
        if self._session is not None and versions == self._versions:
            return
        options = self._onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        # no arena: it keeps the peak of every window batch reserved (0.5 GB more peak RSS on a full-size CT)
        options.enable_cpu_mem_arena = False
        self._session = self._onnxruntime.InferenceSession(
            self._model_bytes(), options, providers=["CPUExecutionProvider"]
        )
        self._versions = versions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, *S) float -> logits (B, C_out, *S) float32, on ``x``'s device."""
        self._ensure_session()
        array = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        (logits,) = self._session.run(["logits"], {"image": array})
        return torch.from_numpy(logits).to(x.device)


def inference_backend(
    network: nn.Module, backend: str = "auto", example_shape: tuple[int, ...] | None = None, threads: int = 0
) -> nn.Module:
    """
    The network the sliding window calls: ``network`` itself (``"torch"``), or ``OnnxRuntimeNetwork`` around it
    (``"onnxruntime"``). ``"auto"``: ONNX Runtime when the network is on the CPU and onnxruntime and onnx are
    installed, else PyTorch (CUDA runs PyTorch, with AMP as configured).

    Args:
        network: the PyTorch network.
        backend: one of ``BACKENDS``.
        example_shape: export input shape (channels and spatial size of one window), e.g. ``(1, 1, 64, 64, 48)``.
        threads: see ``OnnxRuntimeNetwork``.

    Raises:
        ValueError: an unknown backend, or ``"onnxruntime"`` for a network on a CUDA device.
        ImportError: ``"onnxruntime"`` without onnxruntime or onnx installed.
    """
    if backend not in BACKENDS:
        raise ValueError(f"inference_backend must be one of {BACKENDS}, got {backend!r}.")
    on_cpu = all(p.device.type == "cpu" for p in network.parameters())
    if backend == "torch" or (backend == "auto" and not on_cpu):
        return network
    if not on_cpu:
        raise ValueError("inference_backend 'onnxruntime' runs on the CPU; the network is on a CUDA device.")
    if example_shape is None:
        raise ValueError("inference_backend needs example_shape for the ONNX export.")
    try:
        return OnnxRuntimeNetwork(network, example_shape, threads)
    except ImportError as error:
        if backend == "onnxruntime":
            raise ImportError(
                f"inference_backend 'onnxruntime' needs onnxruntime and onnx (pip install -r requirements.txt): {error}"
            ) from None
        logger.warning(f"onnxruntime or onnx is not installed ({error}): the network runs in PyTorch")
        return network
