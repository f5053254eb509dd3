"""
SAM 2 (the ``sam2`` package, Meta's Segment Anything 2) for CT slices: the video predictor built from a config and
a user's checkpoint, axial slices written as the JPEG frames it reads, and box-prompted segmentation of single slices.

Slices are images of X rows and Y columns: slice ``z`` of a (X, Y, Z) volume in RAS order is ``volume[:, :, z]``, a
pixel (row, column) is the voxel (x, y, z). Prompts follow SAM's convention: a box is ``(x0, y0, x1, y1)`` =
``(first column, first row, last column, last row)``, i.e. ``(y_min, x_min, y_max, x_max)`` in voxel indices, and
masks come back as (X, Y) arrays on the slice's own grid (SAM 2 resizes frames to its ``image_size`` and its masks
back). No weights are shipped or downloaded: SAM 2 checkpoints are 150 to 900 MB (the bundle's limit is 25 MB).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["SAM2_MODEL_CONFIGS", "Sam2BoxPredictor", "build_sam2_video_predictor", "write_frames"]

# the sam2 package's model configs by size (its own names; the checkpoint must be of the same size)
SAM2_MODEL_CONFIGS = {
    "tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "large": "configs/sam2.1/sam2.1_hiera_l.yaml",
}
NO_CHECKPOINT = (
    "no sam_checkpoint was given: SAM 2 weights are not shipped with the bundle (150 to 900 MB, over its 25 MB "
    "weight limit) and cannot be downloaded here; download a SAM 2.1 checkpoint (e.g. sam2.1_hiera_tiny.pt) and pass "
    "--sam_checkpoint <path> with the matching --sam_model_size"
)


def build_sam2_video_predictor(
    model_size: str,
    checkpoint: str | Path | None,
    device: str | torch.device = "cpu",
    image_size: int | None = None,
    random_weights: bool = False,
) -> Any:
    """
    ``sam2.build_sam.build_sam2_video_predictor`` of one of ``SAM2_MODEL_CONFIGS`` with the weights of ``checkpoint``.

    Args:
        model_size: a key of ``SAM2_MODEL_CONFIGS``.
        checkpoint: a SAM 2 checkpoint (its ``"model"`` entry is loaded, strictly); ``None`` only with
            ``random_weights``.
        device: where the model runs.
        image_size: the square size frames are resized to (the model's own, 1024, when ``None``); a multiple of 32.
        random_weights: build the architecture with random weights (tests of the plumbing; never for use).

    Raises:
        ValueError: an unknown size, no checkpoint without ``random_weights``, or an image size that is not a
            positive multiple of 32.
        FileNotFoundError: a checkpoint that is not a file.
        ImportError: the ``sam2`` package is not installed (``pip install sam2==1.1.0``, requirements-dev.txt).
    """
    if model_size not in SAM2_MODEL_CONFIGS:
        raise ValueError(f"model_size must be one of {sorted(SAM2_MODEL_CONFIGS)}, got {model_size!r}.")
    if checkpoint is None and not random_weights:
        raise ValueError(f"SAM 2 is off: {NO_CHECKPOINT}.")
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise FileNotFoundError(f"sam_checkpoint {checkpoint} is not a file.")
    if image_size is not None and (image_size < 32 or image_size % 32):
        raise ValueError(f"image_size must be a positive multiple of 32, got {image_size}.")
    try:
        from sam2.build_sam import build_sam2_video_predictor as build
    except ImportError as error:
        raise ImportError(f"SAM 2 needs the sam2 package (pip install sam2==1.1.0): {error}") from None
    overrides = [] if image_size is None else [f"++model.image_size={int(image_size)}"]
    return build(
        SAM2_MODEL_CONFIGS[model_size],
        ckpt_path=None if checkpoint is None else str(checkpoint),
        device=str(device),
        mode="eval",
        hydra_overrides_extra=overrides,
    )


def write_frames(slices: np.ndarray | torch.Tensor, folder: str | Path) -> list[Path]:
    """
    Write (N, X, Y) slices with values in [0, 1] as the JPEG frames ``00000.jpg``... that SAM 2's ``init_state``
    reads (grey in all three channels, quality 100); frame ``k`` is ``slices[k]``, X rows and Y columns.

    Raises:
        ValueError: slices that are not (N, X, Y) with N >= 1.
    """
    from PIL import Image

    array = np.asarray(slices.detach().cpu() if isinstance(slices, torch.Tensor) else slices, dtype=np.float32)
    if array.ndim != 3 or array.shape[0] < 1:
        raise ValueError(f"slices must be (N, X, Y) with N >= 1, got {array.shape}.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    grey = np.round(np.clip(array, 0.0, 1.0) * 255).astype(np.uint8)
    paths = []
    for index, frame in enumerate(grey):
        path = folder / f"{index:05d}.jpg"
        Image.fromarray(frame).convert("RGB").save(path, quality=100)
        paths.append(path)
    return paths


class Sam2BoxPredictor:
    """
    SAM 2 as an image segmenter: each slice with a box is segmented on its own, prompted with that box only
    (SAM 2's single-frame prompt: no memory of other slices), through the video predictor's public interface.

    Args:
        video_predictor: a ``SAM2VideoPredictor`` (``build_sam2_video_predictor``) or an object with its
            ``init_state``, ``reset_state`` and ``add_new_points_or_box``.
        mask_threshold: a pixel is in the mask when SAM 2's logit is above it.

    Call:
        ``predictor(slices, boxes)``: (N, X, Y) slices in [0, 1] and ``{k: (x0, y0, x1, y1)}`` boxes of slices ``k``
        -> ``{k: (X, Y) bool mask}``. Only the boxed slices are written and encoded.

    Raises:
        ValueError (in a call): a box index outside the slices, or a box that is not 4 numbers with x0 <= x1, y0 <= y1.
    """

    def __init__(self, video_predictor: Any, mask_threshold: float = 0.0) -> None:
        self.video_predictor = video_predictor
        self.mask_threshold = float(mask_threshold)

    def __call__(self, slices: np.ndarray | torch.Tensor, boxes: Mapping[int, Sequence[float]]) -> dict[int, np.ndarray]:
        if not boxes:
            return {}
        indices = sorted(int(k) for k in boxes)
        for k in indices:
            box = np.asarray(boxes[k], dtype=np.float32)
            if not 0 <= k < len(slices):
                raise ValueError(f"box of slice {k}, outside the {len(slices)} slices.")
            if box.shape != (4,) or box[0] > box[2] or box[1] > box[3]:
                raise ValueError(f"slice {k}: a box is (x0, y0, x1, y1) with x0 <= x1 and y0 <= y1, got {box.tolist()}.")
        masks = {}
        with tempfile.TemporaryDirectory(prefix="sam2_frames_") as folder, torch.inference_mode():
            write_frames(np.stack([np.asarray(slices[k], dtype=np.float32) for k in indices]), folder)
            state = self.video_predictor.init_state(folder, offload_video_to_cpu=True)
            for frame, k in enumerate(indices):
                self.video_predictor.reset_state(state)
                _, _, logits = self.video_predictor.add_new_points_or_box(
                    state, frame_idx=frame, obj_id=1, box=np.asarray(boxes[k], dtype=np.float32)
                )
                masks[k] = (logits[0, 0] > self.mask_threshold).cpu().numpy()
        return masks
