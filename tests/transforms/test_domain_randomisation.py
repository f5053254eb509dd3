"""
Specification of the domain-randomisation transforms (RandStructureIntensityd, RandCTArtefactsd) and of
configs/domain_randomisation.yaml over configs/train.yaml.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import AsDiscreted, ScaleIntensityRanged
from scipy import ndimage

from scripts.transforms import RandCTArtefactsd, RandStructureIntensityd
from tests.bundle_cli import run_bundle

SHAPE = (40, 36, 12)
BASE_HU = {0: -1000.0, 1: 110.0, 2: -100.0, 3: 60.0, 4: 400.0}  # air, pancreas, fat, liver, bone


def synthetic_case(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A (1, *SHAPE) float32 CT in HU and its (1, *SHAPE) organ map: a body ellipse (fat) holding 3 organs."""
    x, y, z = np.meshgrid(*(np.arange(s, dtype=float) for s in SHAPE), indexing="ij")
    organs = np.zeros(SHAPE, dtype=np.uint8)
    organs[((x - 20) / 18) ** 2 + ((y - 18) / 15) ** 2 <= 1] = 2
    organs[((x - 12) / 6) ** 2 + ((y - 18) / 6) ** 2 <= 1] = 3
    organs[((x - 27) / 5) ** 2 + ((y - 14) / 3) ** 2 <= 1] = 1
    organs[((x - 27) / 3) ** 2 + ((y - 25) / 3) ** 2 <= 1] = 4
    rng = np.random.default_rng(seed)
    image = np.vectorize(BASE_HU.get)(organs) + rng.normal(0.0, 10.0, SHAPE)
    return image[None].astype(np.float32), organs[None].astype(np.float32)


def as_meta(array: np.ndarray) -> MetaTensor:
    affine = torch.diag(torch.tensor([2.0, 2.0, 3.0, 1.0], dtype=torch.float64))
    out = MetaTensor(torch.from_numpy(array.copy()), affine=affine)
    out.meta["filename_or_obj"] = "case_000.nii.gz"
    return out


def structure_means(image: np.ndarray, organs: np.ndarray) -> dict[int, float]:
    return {int(s): float(image[organs == s].mean()) for s in np.unique(organs)}


def hard(**kwargs) -> RandStructureIntensityd:
    """Hard borders and no texture: every structure's mean is exactly its drawn mean."""
    return RandStructureIntensityd(keys="image", organ_key="organs", blend_sigma=0.0, **kwargs)


# ---- RandStructureIntensityd


def test_every_structure_gets_a_new_mean_in_the_range_and_its_texture_scaled_by_the_factor():
    image, organs = synthetic_case()
    transform = hard(mean_range=(-200.0, 300.0), contrast_range=(0.5, 2.0), plausible_prob=0.0)
    transform.set_random_state(seed=1)
    out = transform({"image": image, "organs": organs})["image"]
    labels = np.unique(organs)
    before, after = structure_means(image, organs), structure_means(out, organs)
    drawn = transform.parameters["means"]
    for index, s in enumerate(labels):
        assert -200.0 <= after[s] <= 300.0
        assert after[s] == pytest.approx(drawn[index], abs=1e-2)
        factor = transform.parameters["factors"][index]
        assert 0.5 <= factor <= 2.0
        assert np.std(out[organs == s]) == pytest.approx(factor * np.std(image[organs == s]), rel=1e-3)
    assert min(np.diff(sorted(after.values()))) > 1.0, "two structures got the same intensity"
    assert after != pytest.approx(before, abs=20.0)


def test_plausible_mode_keeps_the_order_of_the_structures_and_random_mode_does_not():
    image, organs = synthetic_case()
    order = np.argsort(list(structure_means(image, organs).values()))
    plausible, random = hard(plausible_prob=1.0), hard(plausible_prob=0.0)
    plausible.set_random_state(seed=0)
    random.set_random_state(seed=0)
    reordered = 0
    for _ in range(10):
        kept = structure_means(plausible({"image": image, "organs": organs})["image"], organs)
        assert plausible.parameters["plausible"]
        np.testing.assert_array_equal(np.argsort(list(kept.values())), order)
        shuffled = structure_means(random({"image": image, "organs": organs})["image"], organs)
        reordered += not np.array_equal(np.argsort(list(shuffled.values())), order)
    assert reordered >= 8  # 5 structures: a random draw keeps the order with probability 1 / 120


def test_borders_are_blended_and_interiors_get_exactly_their_structures_mapping():
    image, organs = synthetic_case()
    data = {"image": image, "organs": organs}
    soft = RandStructureIntensityd(keys="image", organ_key="organs", blend_sigma=1.0)
    sharp = hard()
    soft.set_random_state(seed=4)
    sharp.set_random_state(seed=4)
    blended, hard_out = soft(data)["image"][0], sharp(data)["image"][0]
    # farther than 3 sigma (the kernel's truncation) from every border: the same mapping
    edges = np.zeros(SHAPE, dtype=bool)
    for axis in range(2):
        edges |= np.diff(organs[0], axis=axis, prepend=np.take(organs[0], [0], axis=axis)) != 0
    interior = ndimage.distance_transform_edt(~edges) > 4
    np.testing.assert_allclose(blended[interior], hard_out[interior], rtol=1e-4, atol=0.05)  # float32 blur
    # at the borders the mapping is a mix: the hard seam between two structures' values is softened
    changed = ~interior & (np.abs(blended - hard_out) > 1.0)
    assert changed.sum() > 0.5 * (~interior).sum()


def test_texture_adds_correlated_noise_of_the_drawn_amplitude_per_structure():
    image, organs = synthetic_case()
    transform = hard(contrast_range=(0.0, 0.0), texture_prob=1.0, texture_std_range=(5.0, 40.0))
    transform.set_random_state(seed=2)
    out = transform({"image": image, "organs": organs})["image"]
    stds = transform.parameters["texture_stds"]
    for index, s in enumerate(np.unique(organs)):
        assert np.std(out[organs == s]) == pytest.approx(stds[index], rel=0.3)
    assert 0.5 <= transform.parameters["texture_sigma"] <= 2.0


@pytest.mark.parametrize("transform_type", ["structure", "artefacts"])
def test_set_random_state_makes_the_draws_reproducible(transform_type):
    image, organs = synthetic_case()

    def make(seed):
        if transform_type == "structure":
            t = RandStructureIntensityd(keys="image", organ_key="organs", texture_prob=1.0)
        else:
            t = RandCTArtefactsd(keys="image", body_key="organs", streak_prob=1, cupping_prob=1, metal_prob=1)
        return t.set_random_state(seed=seed)

    first, again, other = make(7), make(7), make(8)
    for _ in range(2):  # the same sequence of draws, call after call
        a, b, c = (t({"image": image, "organs": organs})["image"] for t in (first, again, other))
        np.testing.assert_array_equal(a, b)
        assert not np.allclose(a, c)


@pytest.mark.parametrize("kind", ["numpy", "torch", "meta"])
@pytest.mark.parametrize("transform_type", ["structure", "artefacts"])
def test_type_dtype_shape_and_meta_are_kept_and_the_maps_are_unchanged(kind, transform_type):
    image, organs = synthetic_case()
    label = (organs == 1).astype(np.float32)
    wrap = {"numpy": lambda a: a, "torch": torch.from_numpy, "meta": as_meta}[kind]
    data = {"image": wrap(image.copy()), "organs": wrap(organs.copy()), "label": wrap(label.copy())}
    if transform_type == "structure":
        transform = RandStructureIntensityd(keys="image", organ_key="organs", texture_prob=1.0)
    else:
        transform = RandCTArtefactsd(keys="image", body_key="organs", streak_prob=1, cupping_prob=1, metal_prob=1)
    out = transform.set_random_state(seed=0)(data)
    assert type(out["image"]) is type(data["image"])
    assert out["image"].shape == image.shape and out["image"].dtype == data["image"].dtype
    assert not np.allclose(np.asarray(out["image"]), image)
    if kind == "meta":
        assert torch.equal(out["image"].affine, data["image"].affine)
        assert out["image"].meta["filename_or_obj"] == "case_000.nii.gz"
    np.testing.assert_array_equal(np.asarray(out["organs"]), organs)
    np.testing.assert_array_equal(np.asarray(out["label"]), label)


def test_probability_zero_is_the_identity():
    image, organs = synthetic_case()
    data = {"image": torch.from_numpy(image), "organs": torch.from_numpy(organs)}
    for transform in (
        RandStructureIntensityd(keys="image", organ_key="organs", prob=0.0),
        RandCTArtefactsd(keys="image", prob=0.0, streak_prob=1, cupping_prob=1, metal_prob=1),
        RandCTArtefactsd(keys="image", streak_prob=0, cupping_prob=0, metal_prob=0),
    ):
        out = transform.set_random_state(seed=0)(data)
        assert out["image"] is data["image"] and out["organs"] is data["organs"]


def test_a_missing_or_mismatched_organ_map_is_refused():
    image, organs = synthetic_case()
    transform = RandStructureIntensityd(keys="image", organ_key="organs")
    with pytest.raises(KeyError, match="organs"):
        transform({"image": image})
    with pytest.raises(ValueError, match="spatial shape"):
        transform({"image": image, "organs": organs[:, :-1]})


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"mean_range": (300.0, -200.0)}, "mean_range"),
        ({"mean_range": (0.0, float("inf"))}, "mean_range"),
        ({"mean_range": 5.0}, "mean_range"),
        ({"contrast_range": (-0.5, 1.0)}, "contrast_range"),
        ({"plausible_prob": 1.5}, "plausible_prob"),
        ({"blend_sigma": -1.0}, "blend_sigma"),
        ({"texture_prob": -0.1}, "texture_prob"),
        ({"texture_std_range": (-1.0, 5.0)}, "texture_std_range"),
        ({"texture_sigma_range": (2.0, 1.0)}, "texture_sigma_range"),
        ({"prob": 2.0}, "prob"),
        ({"organ_key": "image"}, "organ_key"),
    ],
)
def test_bad_structure_arguments_are_refused_naming_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        RandStructureIntensityd(**{"keys": "image", "organ_key": "organs", **kwargs})


# ---- RandCTArtefactsd

AMPLITUDES = dict(streak_amplitude=(30.0, 60.0), cupping_amplitude=(20.0, 40.0), metal_streak_amplitude=(100.0, 200.0))


def artefacts(**kwargs) -> RandCTArtefactsd:
    probabilities = dict(streak_prob=0.0, cupping_prob=0.0, metal_prob=0.0)
    return RandCTArtefactsd(keys="image", **{**probabilities, **AMPLITUDES, **kwargs})


@pytest.mark.parametrize("body_key", [None, "organs"])
def test_artefacts_change_only_the_body_and_within_their_amplitudes(body_key):
    image, organs = synthetic_case()
    body = organs[0] > 0
    transform = artefacts(body_key=body_key, streak_prob=1, cupping_prob=1, metal_prob=1, metal_intensity=(2500, 2500))
    for seed in range(3):
        out = transform.set_random_state(seed=seed)({"image": image, "organs": organs})["image"]
        change = (out - image)[0]
        np.testing.assert_array_equal(change[~body], 0.0)
        ball = transform.artefact_fields(body)[1] > 0
        assert ball.any() and (ball <= body).all()
        bound = AMPLITUDES["streak_amplitude"][1] + AMPLITUDES["cupping_amplitude"][1]
        bound += AMPLITUDES["metal_streak_amplitude"][1]
        assert np.abs(change[~ball]).max() <= bound + 1e-3
        assert out[0][ball].max() == pytest.approx(2500.0, abs=1e-3)  # the ball's centre voxel is all metal


def test_each_artefact_has_its_own_amplitude_bound():
    image, organs = synthetic_case()
    body = organs[0] > 0
    data = {"image": image, "organs": organs}
    streaks = artefacts(body_key="organs", streak_prob=1).set_random_state(seed=0)
    change = (streaks(data)["image"] - image)[0]
    assert 0 < np.abs(change).max() <= 60.0 + 1e-3
    assert (change < -1).any() and (change > 1).any(), "streaks are dark lines with bright rims"

    cupping = artefacts(body_key="organs", cupping_prob=1).set_random_state(seed=0)
    change = (cupping(data)["image"] - image)[0]
    amplitude = cupping.parameters["cupping"]["amplitude"]
    assert 20.0 <= amplitude <= 40.0 and (change <= 1e-4).all() and change.min() >= -amplitude - 1e-3
    # darkest at the body centre, vanishing at the body surface
    assert change[20, 18].min() < -0.9 * amplitude and np.abs(change[2, 18]).max() < 0.15 * amplitude
    np.testing.assert_array_equal(change[~body], 0.0)

    metal = artefacts(body_key="organs", metal_prob=1).set_random_state(seed=0)
    out = metal(data)["image"]
    ball = metal.artefact_fields(body)[1]
    change = (out - image)[0]
    assert np.abs(change[ball == 0]).max() <= 200.0 + 1e-3
    assert 2000.0 <= out[0][ball == 1].min() <= 3000.0


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"streak_prob": 1.5}, "streak_prob"),
        ({"cupping_prob": -1}, "cupping_prob"),
        ({"metal_prob": 2}, "metal_prob"),
        ({"streak_amplitude": (-10.0, 10.0)}, "streak_amplitude"),
        ({"cupping_amplitude": (50.0, 10.0)}, "cupping_amplitude"),
        ({"metal_streak_amplitude": (-1.0, 0.0)}, "metal_streak_amplitude"),
        ({"streak_count": (0, 3)}, "streak_count"),
        ({"metal_streak_count": (2.5, 4)}, "metal_streak_count"),
        ({"streak_width": (0.0, 1.0)}, "streak_width"),
        ({"metal_radius": (3.0, 1.0)}, "metal_radius"),
        ({"metal_intensity": (3000.0, 2000.0)}, "metal_intensity"),
        ({"body_threshold": float("nan")}, "body_threshold"),
        ({"body_key": "image"}, "body_key"),
        ({"prob": -0.5}, "prob"),
    ],
)
def test_bad_artefact_arguments_are_refused_naming_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        RandCTArtefactsd(**{"keys": "image", **kwargs})


def test_artefacts_need_a_3d_image_and_a_matching_body_mask():
    image, organs = synthetic_case()
    transform = artefacts(body_key="organs", streak_prob=1)
    with pytest.raises(ValueError, match="X, Y, Z"):
        transform({"image": image[..., 0], "organs": organs[..., 0]})
    with pytest.raises(ValueError, match="body mask"):
        transform({"image": image, "organs": organs[:, 1:]})
    with pytest.raises(KeyError, match="organs"):
        transform({"image": image})


# ---- configs/domain_randomisation.yaml

CONFIGS = ["train.yaml", "domain_randomisation.yaml"]


@pytest.fixture(scope="module")
def organ_datalist(tmp_path_factory) -> Path:
    """A datalist of 2 phantom cases (source domain) with image, pancreas label and organ map."""
    from scripts.phantom import generate_case

    root = tmp_path_factory.mktemp("organ_data")
    entries = []
    for seed in (0, 1):
        case = generate_case("source", seed, organ_labels=True)
        name = f"case_{seed:03d}.nii.gz"
        for folder, array in (("imagesTr", case.image), ("labelsTr", case.label == 1), ("organsTr", case.label)):
            (root / folder).mkdir(exist_ok=True)
            nib.save(nib.Nifti1Image(np.asarray(array, dtype=array.dtype if folder == "imagesTr" else np.uint8),
                                     case.affine), str(root / folder / name))
        # organs as an absolute path: scripts.data.datalists resolves only image and label against the datalist
        entries.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}",
                        "organs": str(root / "organsTr" / name)})
    (root / "dataset.json").write_text(json.dumps({"training": entries}))
    return root / "dataset.json"


def test_the_training_pipeline_randomises_in_hu_then_windows_and_drops_the_organ_map(organ_datalist):
    from scripts.bundle import bundle_parser

    overrides = {"datalist_file": str(organ_datalist), "roi_size": [32, 32, 32], "num_workers": 0}
    parser = bundle_parser(CONFIGS, overrides)
    randomisation = parser.get_parsed_content("train#randomisation_transforms")
    # the macros copy train.yaml's window and label binarisation
    window = randomisation[2]
    assert isinstance(window, ScaleIntensityRanged) and window.scaler.clip
    assert (window.scaler.a_min, window.scaler.a_max) == tuple(parser.get_parsed_content("hu_window"))
    assert isinstance(parser.get_parsed_content("train#organ_deterministic_transforms")[4], AsDiscreted)
    entry = parser.get_parsed_content("datalist")[0]
    cached = parser.get_parsed_content("train#organ_deterministic_transforms")
    case = entry
    for transform in cached:
        case = transform(case)
    # in HU (air and fat not clipped by a window), the organ map resampled with the image: 0, 1 and other organs
    structures = set(np.unique(case["organs"].numpy()))
    assert case["image"].min() < -500 and {0.0, 1.0} <= structures and len(structures) >= 5
    np.testing.assert_array_equal(case["label"].numpy() > 0, case["organs"].numpy() == 1)
    patches = parser.get_parsed_content("train#preprocessing")(entry)
    assert len(patches) == parser.get_parsed_content("num_samples")
    for patch in patches:
        assert set(patch) >= {"image", "label", "skeleton", "ring", "band"} and "organs" not in patch
        assert patch["image"].shape == (1, 32, 32, 32)
    # validation stays train.yaml's: windowed, without the organ map
    validation = parser.get_parsed_content("validate#preprocessing")(entry)
    assert "organs" not in validation or isinstance(validation["organs"], str)
    assert 0.0 <= float(validation["image"].min()) and float(validation["image"].max()) <= 1.0


@pytest.mark.slow
def test_one_epoch_trains_with_domain_randomisation(organ_datalist, tmp_path):
    result = run_bundle(
        "run",
        CONFIGS,
        datalist_file=str(organ_datalist),
        output_dir=str(tmp_path / "run"),
        max_epochs=1,
        val_interval=1,
        val_fraction=0.5,
        roi_size=[32, 32, 32],
        num_workers=0,
        ssl_start_iteration=1,
        ssl_rampup_iterations=0,
        **{"network_def#channels": [8, 16, 32]},
    )
    log = result.stdout + result.stderr
    losses = [float(v) for v in re.findall(r"loss_segmentation: ([-0-9.eE+naif]+)", log)]
    assert losses and all(np.isfinite(losses))
    final = torch.load(tmp_path / "run" / "models" / "checkpoint_final.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in final["model"].values())
    assert "val_mean_dice" in log
