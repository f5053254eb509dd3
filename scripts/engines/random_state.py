"""Random number generator state that survives a checkpoint: device generators and the global RNGs."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

__all__ = ["LazyDeviceGenerator", "global_rng_state", "set_global_rng_state"]


class LazyDeviceGenerator:
    """
    A ``torch.Generator`` created on the device of its first use, so random draws stay on that device.

    The generator is seeded with ``seed``; with ``seed=None`` the seed is drawn from torch's global generator at
    the first use, so ``torch.manual_seed`` / ``monai.utils.set_determinism`` make it reproducible. Asked for
    another device, it creates a new generator there, seeded from the previous one. ``state_dict`` /
    ``load_state_dict`` hold only tensors and plain values, so they go into ``weights_only`` checkpoints.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self._generator: torch.Generator | None = None
        self._pending_state: dict[str, Any] | None = None

    def get(self, device: torch.device) -> torch.Generator:
        """The generator on ``device``."""
        device = torch.device(device)
        if self._generator is not None and self._generator.device == device:
            return self._generator
        pending, self._pending_state = self._pending_state, None
        if self._generator is not None:
            seed = int(torch.randint(2**62, (1,), generator=self._generator, device=self._generator.device).item())
        elif self.seed is None:
            seed = int(torch.randint(2**62, (1,)).item())
        else:
            seed = self.seed
        self._generator = torch.Generator(device=device).manual_seed(seed)
        if pending is not None and pending["device_type"] == device.type:
            self._generator.set_state(pending["state"])
        return self._generator

    def state_dict(self) -> dict[str, Any]:
        """``{"device_type": str, "state": ByteTensor}`` of the current generator, or ``{}`` before its first use."""
        if self._generator is None:
            return dict(self._pending_state or {})
        return {"device_type": self._generator.device.type, "state": self._generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a ``state_dict``; it is applied when the generator is next used on a device of the same type."""
        self._generator = None
        self._pending_state = dict(state) if state else None


def global_rng_state() -> dict[str, Any]:
    """State of Python's, NumPy's and torch's (CPU and CUDA) global generators, as tensors and plain values."""
    _, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, python_state, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
        "numpy_position": int(position),
        "numpy_has_gauss": int(has_gauss),
        "numpy_cached_gaussian": float(cached_gaussian),
        "python_version": int(version),
        "python_state": torch.tensor(python_state, dtype=torch.int64),
        "python_gauss_next": gauss_next,
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_global_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``global_rng_state`` returned."""
    torch.set_rng_state(state["torch"])
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(
        ("MT19937", keys, state["numpy_position"], state["numpy_has_gauss"], state["numpy_cached_gaussian"])
    )
    random.setstate((state["python_version"], tuple(state["python_state"].tolist()), state["python_gauss_next"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
