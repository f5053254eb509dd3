"""A deterministic stand-in of SAM 2's video predictor (its public interface), reading the frames it is given:
prompts are recorded; a box prompt gives the box filled, a mask prompt the mask; propagation moves the mask by
``shift`` rows per frame away from the annotated frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


class StandInVideoPredictor:
    def __init__(self, shift: int = 1) -> None:
        self.shift = shift
        self.frames: list[np.ndarray] = []
        self.boxes: list[tuple[int, np.ndarray]] = []
        self.mask_prompts: list[tuple[int, np.ndarray]] = []

    def init_state(self, video_path, **kwargs) -> dict:
        paths = sorted(Path(video_path).glob("*.jpg"), key=lambda p: int(p.stem))
        self.frames = [np.asarray(Image.open(p).convert("L"), dtype=np.float32) / 255 for p in paths]
        return {"num_frames": len(paths), "mask": None}

    def reset_state(self, state: dict) -> None:
        state["mask"] = None

    @staticmethod
    def _logits(mask: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.where(mask, 5.0, -5.0), dtype=torch.float32)[None, None]

    def add_new_points_or_box(self, state: dict, frame_idx: int, obj_id: int, box=None, **kwargs):
        self.boxes.append((frame_idx, np.asarray(box)))
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        mask = np.zeros(self.frames[frame_idx].shape, bool)
        mask[y0 : y1 + 1, x0 : x1 + 1] = True
        return frame_idx, [obj_id], self._logits(mask)

    def add_new_mask(self, state: dict, frame_idx: int, obj_id: int, mask):
        self.mask_prompts.append((frame_idx, np.asarray(mask)))
        state["mask"], state["frame"] = np.asarray(mask, bool), frame_idx
        return frame_idx, [obj_id], self._logits(state["mask"])

    def propagate_in_video(self, state: dict, start_frame_idx: int, reverse: bool = False, **kwargs):
        frames = range(start_frame_idx, -1, -1) if reverse else range(start_frame_idx, state["num_frames"])
        for frame in frames:
            yield frame, [1], self._logits(np.roll(state["mask"], self.shift * abs(frame - state["frame"]), axis=0))
