"""
SAM 2 slice propagation (configs/propagate_sam2.yaml): from one annotated axial slice of a CT, SAM 2's video
predictor propagates the mask through the volume in both directions, the slices taken as the frames of a video.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import PathLike
from monai.transforms import Compose

from scripts.data.naming import output_path
from scripts.networks.sam2_models import write_frames
from scripts.transforms import SaveCaseImaged

__all__ = ["Sam2Propagation", "annotated_slice", "propagate_from_slice"]

logger = logging.getLogger(__name__)


def propagate_from_slice(
    video_predictor: Any,
    slices: np.ndarray,
    slice_index: int,
    slice_mask: np.ndarray,
    mask_threshold: float = 0.0,
    keep_annotation: bool = True,
) -> np.ndarray:
    """
    The (Z, X, Y) mask SAM 2 propagates from ``slice_mask`` on slice ``slice_index`` to every slice: frame ``k`` of
    the video is slice ``k`` (X rows, Y columns, ``scripts.networks.write_frames``), the mask prompt is added on the
    annotated frame (``add_new_mask``) and tracked forward to the last slice, then backward to the first.

    Args:
        video_predictor: a ``SAM2VideoPredictor`` or an object with its ``init_state``, ``add_new_mask`` and
            ``propagate_in_video``.
        slices: (Z, X, Y) slices in [0, 1].
        slice_index: the annotated slice.
        slice_mask: (X, Y) bool mask of that slice.
        mask_threshold: a pixel is in the mask when SAM 2's logit is above it.
        keep_annotation: the annotated slice keeps ``slice_mask`` itself (not SAM 2's rendering of it).

    Raises:
        ValueError: slices that are not (Z, X, Y), a slice index outside them, a mask of another (X, Y) or an empty
            mask.
    """
    slices = np.asarray(slices, dtype=np.float32)
    slice_mask = np.asarray(slice_mask, dtype=bool)
    if slices.ndim != 3:
        raise ValueError(f"slices must be (Z, X, Y), got {slices.shape}.")
    if not 0 <= slice_index < len(slices):
        raise ValueError(f"slice_index {slice_index} is outside the {len(slices)} slices.")
    if slice_mask.shape != slices.shape[1:]:
        raise ValueError(f"the slice mask is {slice_mask.shape}, the slices {slices.shape[1:]}.")
    if not slice_mask.any():
        raise ValueError(f"the annotation of slice {slice_index} is empty: nothing to propagate.")
    result = np.zeros(slices.shape, dtype=bool)
    with tempfile.TemporaryDirectory(prefix="sam2_video_") as folder, torch.inference_mode():
        write_frames(slices, folder)
        state = video_predictor.init_state(folder, offload_video_to_cpu=True)
        video_predictor.add_new_mask(state, frame_idx=int(slice_index), obj_id=1, mask=slice_mask)
        for reverse in (False, True):
            for frame, _, logits in video_predictor.propagate_in_video(
                state, start_frame_idx=int(slice_index), reverse=reverse
            ):
                result[frame] = (logits[0, 0] > mask_threshold).cpu().numpy()
    if keep_annotation:
        result[slice_index] = slice_mask
    return result


def annotated_slice(label: np.ndarray, slice_index: int | None = None) -> int:
    """
    The axial slice (last axis) of an (X, Y, Z) label that holds the annotation: the one slice with label voxels,
    or ``slice_index`` when given.

    Raises:
        ValueError: no annotated slice; several without ``slice_index``; a ``slice_index`` without label voxels.
    """
    counts = (np.asarray(label) > 0).reshape(-1, label.shape[-1]).sum(axis=0)
    annotated = np.flatnonzero(counts).tolist()
    if slice_index is None:
        if len(annotated) != 1:
            raise ValueError(
                f"one annotated axial slice is expected, the label has voxels in {len(annotated)} "
                f"({annotated[:10]}); pass slice_index to choose one."
            )
        return int(annotated[0])
    if slice_index not in annotated:
        raise ValueError(f"axial slice {slice_index} has no label voxels (annotated: {annotated[:10]}).")
    return int(slice_index)


class Sam2Propagation:
    """
    Read a CT and a label holding one annotated axial slice, propagate the annotation through the volume with SAM 2
    (``propagate_from_slice``) and write the 3D mask with the input's geometry as ``<case>_<postfix>.nii.gz``.

    Args:
        video_predictor: see ``propagate_from_slice``.
        preprocessing: reads ``image`` and ``label`` into (1, X, Y, Z) arrays on the image's grid in RAS order
            (``Orientationd``: axial slices along the last axis), the image scaled to [0, 1]; its ``Orientationd``
            is inverted for the output.
        output_dir: where the mask is written.
        postfix: the output's name postfix.
        slice_index: the annotated slice (in RAS order) when the label has several; ``None``: its only one.
        keep_annotation, mask_threshold: see ``propagate_from_slice``.

    Raises:
        ValueError (in ``run``): no image or no label; see ``annotated_slice`` and ``propagate_from_slice``; image and label of different
            shapes.
    """

    def __init__(
        self,
        video_predictor: Any,
        preprocessing: Compose,
        output_dir: PathLike,
        postfix: str = "sam2",
        slice_index: int | None = None,
        keep_annotation: bool = True,
        mask_threshold: float = 0.0,
    ) -> None:
        self.video_predictor = video_predictor
        self.preprocessing = preprocessing
        self.output_dir = Path(output_dir)
        self.slice_index = slice_index
        self.keep_annotation = keep_annotation
        self.mask_threshold = mask_threshold
        self.saver = SaveCaseImaged("label", output_dir=self.output_dir, postfix=postfix, output_dtype=np.uint8)

    def run(self, image: PathLike, label: PathLike) -> Path:
        """Propagate and save; the output file."""
        if image is None or label is None:
            raise ValueError("SAM 2 propagation needs an image and a label with one annotated slice (--image, --label).")
        data = self.preprocessing({"image": str(image), "label": str(label)})
        volume, annotation = data["image"], data["label"]
        if tuple(volume.shape) != tuple(annotation.shape):
            raise ValueError(f"image {tuple(volume.shape)} and label {tuple(annotation.shape)} differ in shape.")
        labels = np.asarray(annotation[0]) > 0
        index = annotated_slice(labels, self.slice_index)
        logger.info(f"SAM 2 propagation of {label}: annotated axial slice {index} of {labels.shape[-1]} (RAS order)")
        result = propagate_from_slice(
            self.video_predictor,
            np.moveaxis(np.asarray(volume[0], dtype=np.float32), -1, 0),
            index,
            labels[:, :, index],
            self.mask_threshold,
            self.keep_annotation,
        )
        mask = annotation.clone()
        mask[0] = torch.as_tensor(np.moveaxis(result, 0, -1), dtype=mask.dtype)
        mask.meta["filename_or_obj"] = volume.meta.get("filename_or_obj", str(image))
        restored = self.preprocessing.inverse({"image": volume, "label": mask})
        self.saver(restored)
        return output_path(mask.meta["filename_or_obj"], self.output_dir, self.saver.postfix, self.saver.output_ext)
