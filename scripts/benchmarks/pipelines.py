"""
Inference pipelines timed stage by stage, in a process of their own: this bundle's and its peers', rebuilt
from MONAI classes with their model-zoo settings and random weights.

    python -m scripts.benchmarks.pipelines spleen --inputs '["case.nii.gz", ...]' --output_dir out --timings_file t.json

- ``bundle``: ``configs/inference.yaml`` parsed as the bundle runs it (its preprocessing, network and weights,
  inferer, post-processing with inversion, largest component and writing, and the overlay), each stage timed;
  the real end-to-end command is ``python -m monai.bundle run --config_file configs/inference.yaml``.
- ``spleen``: ``spleen_ct_segmentation`` settings: UNet 16-256 with 2 residual units, 1.5 x 1.5 x 2 mm,
  window -57..164 HU, ROI 96^3, overlap 0.5, gaussian; softmax, inversion of every channel, argmax, NIfTI.
- ``swin``: ``swin_unetr_btcv_segmentation`` settings: SwinUNETR feature 48, 14 classes, 1.5 x 1.5 x 2 mm,
  window -175..250 HU, ROI 96^3, overlap 0.5, gaussian; same post-processing.

The timings file holds ``startup_s`` (process launch, from the ``BENCHMARK_LAUNCH`` environment variable, to
the first case: imports, config parsing, network and weights) and per case the seconds of each stage.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fire
import torch

__all__ = ["PIPELINES", "run_pipeline"]

Stage = tuple[str, Callable[[Any], Any]]


def _peer(network: torch.nn.Module, pixdim, window, overlap: float, output_dir: Path) -> dict:
    from monai.inferers import SlidingWindowInferer
    from monai.transforms import (
        Activationsd,
        AsDiscreted,
        Compose,
        EnsureChannelFirstd,
        EnsureTyped,
        Invertd,
        LoadImaged,
        Orientationd,
        SaveImaged,
        ScaleIntensityRanged,
        Spacingd,
    )

    preprocessing = Compose([
        LoadImaged("image", image_only=True),
        EnsureChannelFirstd("image"),
        Orientationd("image", axcodes="RAS"),
        Spacingd("image", pixdim=pixdim, mode="bilinear"),
        ScaleIntensityRanged("image", a_min=window[0], a_max=window[1], b_min=0.0, b_max=1.0, clip=True),
        EnsureTyped("image"),
    ])
    post = [
        ("post", Activationsd("pred", softmax=True)),
        ("invert", Invertd("pred", transform=preprocessing, orig_keys="image", nearest_interp=False, to_tensor=True)),
        ("post", AsDiscreted("pred", argmax=True)),
        ("write", SaveImaged("pred", output_dir=str(output_dir), output_postfix="seg", separate_folder=False,
                             output_dtype="uint8", print_log=False)),
    ]
    inferer = SlidingWindowInferer(roi_size=(96, 96, 96), sw_batch_size=4, overlap=overlap, mode="gaussian")
    return {"preprocessing": preprocessing.transforms, "network": network, "inferer": inferer, "post": post}


def spleen(output_dir: Path) -> dict:
    from monai.networks.nets import UNet

    network = UNet(3, 1, 2, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2, norm="batch")
    return _peer(network, (1.5, 1.5, 2.0), (-57, 164), 0.5, output_dir)


def swin(output_dir: Path) -> dict:
    from monai.networks.nets import SwinUNETR

    network = SwinUNETR(in_channels=1, out_channels=14, feature_size=48, use_checkpoint=False)
    return _peer(network, (1.5, 1.5, 2.0), (-175, 250), 0.5, output_dir)


def bundle(output_dir: Path) -> dict:
    from scripts.bundle import bundle_parser
    from scripts.inference.overlay import in_memory_arrays, save_overlay

    parser = bundle_parser(["inference.yaml"], {"output_dir": str(output_dir), "dataset_dir": str(output_dir)})
    network = parser.get_parsed_content("network")
    state = torch.load(parser.get_parsed_content("checkpoint"), map_location="cpu", weights_only=True)
    network.load_state_dict(state)
    network = parser.get_parsed_content("inference_network")  # what the sliding window calls (ONNX Runtime on CPU)
    stage_of = {
        "ResampleToInputd": "invert",
        "SaveCaseImaged": "write",
        "SaveDicomSegd": "write",
    }
    post = [(stage_of.get(type(t).__name__, "post"), t) for t in parser.get_parsed_content("postprocessing").transforms]
    postfix = parser.get_parsed_content("output_postfix")

    def overlay(data: dict) -> dict:
        from scripts.data.naming import case_name

        name = case_name(data["input"])
        arrays = in_memory_arrays(data["input_image"], data["pred"])
        png = output_dir / f"{name}_{postfix}_overlay.png"
        save_overlay(data["input"], output_dir / f"{name}_{postfix}.nii.gz", png, **arrays)
        return data

    if parser.get_parsed_content("save_overlay"):
        post.append(("overlay", overlay))
    return {
        "preprocessing": parser.get_parsed_content("preprocessing").transforms,
        "network": network,
        "inferer": parser.get_parsed_content("inferer"),
        "post": post,
    }


PIPELINES: dict[str, Callable[[Path], dict]] = {"bundle": bundle, "spleen": spleen, "swin": swin}


def run_pipeline(name: str, inputs: list[str], output_dir: str, timings_file: str, threads: int = 0) -> dict:
    """
    Run pipeline ``name`` on each input in turn and write the stage timings (see the module docs).

    Raises:
        KeyError: an unknown pipeline name.
    """
    from monai.data import decollate_batch, list_data_collate

    if name not in PIPELINES:
        raise KeyError(f"unknown pipeline {name!r}; known: {', '.join(PIPELINES)}")
    if threads:
        torch.set_num_threads(threads)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    pipeline = PIPELINES[name](out)
    network = pipeline["network"].eval()
    launch = float(os.environ.get("BENCHMARK_LAUNCH", "nan"))
    timings: dict = {"pipeline": name, "startup_s": time.time() - launch, "cases": []}
    for path in inputs:
        stages: dict[str, float] = {}

        def timed(stage: str, function: Callable, value: Any) -> Any:
            start = time.perf_counter()
            result = function(value)
            stages[stage] = stages.get(stage, 0.0) + time.perf_counter() - start
            return result

        data: Any = {"image": path, "input": path}
        for index, transform in enumerate(pipeline["preprocessing"]):
            data = timed("read" if index == 0 else "preprocess", transform, data)
        with torch.inference_mode():
            batch = list_data_collate([data])
            batch["pred"] = timed("sliding_window", lambda x: pipeline["inferer"](x, network), batch["image"])
            (data,) = decollate_batch(batch)
            data["input"] = path
            for stage, transform in pipeline["post"]:
                data = timed(stage, transform, data)
        stages["total"] = sum(stages.values())
        timings["cases"].append({"input": path, **{k: round(v, 3) for k, v in stages.items()}})
        del data, batch
    Path(timings_file).write_text(json.dumps(timings, indent=1))
    return timings


if __name__ == "__main__":
    fire.Fire(run_pipeline, serialize=lambda result: None)  # the timings are in timings_file
