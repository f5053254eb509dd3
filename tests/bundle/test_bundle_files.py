"""Bundle layout, metadata, config consistency and the shipped weights."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import jsonschema
import pytest
import torch
import yaml
from monai.bundle import ConfigParser

from scripts.bundle import bundle_parser
from tests.bundle_cli import BUNDLE_ROOT

CONFIGS = BUNDLE_ROOT / "configs"
MAX_WEIGHTS_BYTES = 25 * 2**20


def _config(*names: str) -> ConfigParser:
    parser = bundle_parser(names)
    return parser


def test_bundle_layout():
    for path in (
        "configs/metadata.json",
        "configs/train.yaml",
        "configs/evaluate.yaml",
        "configs/inference.yaml",
        "configs/logging.conf",
        "models/model.pt",
        "models/model.ts",
        "docs/README.md",
        "docs/data_license.txt",
        "LICENSE",
        "README.md",
        ".ci/run",
    ):
        assert (BUNDLE_ROOT / path).is_file(), path


def test_metadata_verifies_offline():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "monai.bundle",
            "verify_metadata",
            "--meta_file",
            str(CONFIGS / "metadata.json"),
            "--filepath",
            str(BUNDLE_ROOT / "docs" / "metadata_schema.json"),
        ],
        capture_output=True,
        text=True,
        cwd=BUNDLE_ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "metadata is verified with no error" in result.stdout + result.stderr


def test_schema_rejects_incomplete_metadata():
    schema = json.loads((BUNDLE_ROOT / "docs" / "metadata_schema.json").read_text())
    metadata = json.loads((CONFIGS / "metadata.json").read_text())
    jsonschema.validate(metadata, schema)
    for broken in ("version", "network_data_format", "changelog"):
        incomplete = copy.deepcopy(metadata)
        del incomplete[broken]
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(incomplete, schema)
    no_channel_def = copy.deepcopy(metadata)
    del no_channel_def["network_data_format"]["outputs"]["pred"]["channel_def"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(no_channel_def, schema)


def test_metadata_describes_the_current_release():
    metadata = json.loads((CONFIGS / "metadata.json").read_text())
    assert metadata["version"] in metadata["changelog"]
    assert any("2505.07165" in reference for reference in metadata["references"])
    assert metadata["network_data_format"]["outputs"]["pred"]["channel_def"] == {"0": "background", "1": "pancreas"}
    assert metadata["monai_version"].startswith("1.6")


def test_inference_uses_the_training_network_and_preprocessing():
    train, inference = _config("train.yaml"), _config("inference.yaml")
    assert train["network_def"] == inference["network_def"]
    for key in ("pixdim", "hu_window", "roi_size", "num_classes"):
        assert train[key] == inference[key], key


@pytest.mark.parametrize(
    "override, expected",
    [("baseline.yaml", (0.0, 0.0)), ("contrastive_only.yaml", (0.1, 0.0)), ("restoration_only.yaml", (0.0, 1.0))],
)
def test_ablation_configs_change_only_the_ssl_weights(override, expected):
    base, variant = _config("train.yaml"), _config("train.yaml", override)
    assert (variant["lambda_contrastive"], variant["lambda_restoration"]) == expected
    changed = {k for k in variant.get() if variant[k] != base[k]}
    assert changed <= {"lambda_contrastive", "lambda_restoration"}


def test_evaluate_overrides_train_instead_of_copying_it():
    evaluate = yaml.safe_load((CONFIGS / "evaluate.yaml").read_text())
    assert not {"network_def", "train", "validate", "optimizer", "loss"} & set(evaluate)
    assert all(key.startswith("validate#") for key in evaluate if "#" in key)


def test_shipped_weights_are_small_safe_state_dicts():
    path = BUNDLE_ROOT / "models" / "model.pt"
    assert path.stat().st_size <= MAX_WEIGHTS_BYTES
    assert (BUNDLE_ROOT / "models" / "model.ts").stat().st_size <= MAX_WEIGHTS_BYTES
    state = torch.load(path, weights_only=True, map_location="cpu")
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    network = _config("inference.yaml").get_parsed_content("network_def")
    network.load_state_dict(state, strict=True)


def test_shipped_torchscript_equals_shipped_weights():
    network = _config("inference.yaml").get_parsed_content("network_def").eval()
    network.load_state_dict(torch.load(BUNDLE_ROOT / "models" / "model.pt", weights_only=True, map_location="cpu"))
    scripted = torch.jit.load(str(BUNDLE_ROOT / "models" / "model.ts"), map_location="cpu")
    x = torch.rand(1, 1, 64, 64, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), network(x))


def test_shipped_torchscript_embeds_the_current_inference_config_and_metadata():
    """MONAI Deploy's bundle operator reads these from model.ts: a stale copy gives other masks than the bundle."""
    import json

    extra = {"inference.json": "", "deploy.json": "", "metadata.json": ""}
    torch.jit.load(str(BUNDLE_ROOT / "models" / "model.ts"), map_location="cpu", _extra_files=extra)
    hint = "re-export with configs/inference.yaml and configs/deploy.yaml (docs/README.md, Commands)"
    assert json.loads(extra["inference.json"]) == ConfigParser.load_config_file(str(CONFIGS / "inference.yaml")), hint
    # deploy/app.py's operator reads configs/deploy.yaml over inference.yaml from the model (docs/README.md, MONAI Deploy)
    assert extra["deploy.json"] and json.loads(extra["deploy.json"]) == ConfigParser.load_config_file(
        str(CONFIGS / "deploy.yaml")
    ), hint
    assert json.loads(extra["metadata.json"]) == json.loads((CONFIGS / "metadata.json").read_text()), hint


def test_read_meta_gives_every_required_package_without_a_deprecation_warning():
    import warnings

    parser = ConfigParser()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parser.read_meta(str(CONFIGS / "metadata.json"))
    required = parser["_meta_"]["required_packages_version"]
    pins = {}
    for line in (BUNDLE_ROOT / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.strip()] = version.strip()
    # torch, monai and numpy have keys of their own; jsonschema serves `monai.bundle verify_metadata` only
    expected = {k: v for k, v in pins.items() if k not in {"torch", "monai", "numpy", "jsonschema"}}
    assert required == expected
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    assert "optional_packages_version" not in meta
    assert (meta["pytorch_version"], meta["monai_version"], meta["numpy_version"]) == (
        pins["torch"], pins["monai"], pins["numpy"]
    )
    assert "meta_schema_20240725" in meta["schema"]


def test_the_schema_refuses_the_deprecated_package_key():
    schema = json.loads((BUNDLE_ROOT / "docs" / "metadata_schema.json").read_text())
    metadata = json.loads((CONFIGS / "metadata.json").read_text())
    deprecated = dict(metadata)
    deprecated["optional_packages_version"] = deprecated.pop("required_packages_version")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(deprecated, schema)


@pytest.fixture(scope="module")
def small_phantom(tmp_path_factory):
    from scripts.phantom import write_dataset

    return write_dataset(tmp_path_factory.mktemp("phantom") / "source", "source", cases=3, seed=5)


@pytest.mark.parametrize(
    "workflow_type, configs",
    # the zoo's evaluate config overrides train, so MONAI checks it as a train workflow
    [("train", ["train.yaml"]), ("train", ["train.yaml", "evaluate.yaml"]), ("infer", ["inference.yaml"])],
)
def test_monai_bundle_tools_find_every_required_property(workflow_type, configs, small_phantom, tmp_path):
    """MONAI's ConfigWorkflow (what MONAI Label and the zoo's tools use) finds all its required properties."""
    from monai.bundle import ConfigWorkflow

    workflow = ConfigWorkflow(
        config_file=[str(CONFIGS / name) for name in configs],
        meta_file=str(CONFIGS / "metadata.json"),
        logging_file=str(CONFIGS / "logging.conf"),
        workflow_type=workflow_type,
        bundle_root=str(BUNDLE_ROOT),
        dataset_dir=str(small_phantom),
        output_dir=str(tmp_path / "out"),
        device="$torch.device('cpu')",
    )
    workflow.initialize()
    assert workflow.check_properties() == []
    assert workflow.dataset_dir == str(small_phantom)
    if workflow_type == "infer":
        assert len(workflow.dataset.data) == 3, "dataset_dir is the input of inference"


def test_inference_refuses_a_class_count_it_cannot_invert():
    with pytest.raises(RuntimeError) as error:
        bundle_parser(["inference.yaml"], {"num_classes": 3}).get_parsed_content("postprocessing")
    assert "num_classes must be 2 (background, pancreas)" in str(error.value.__cause__)
