"""configs/finetune_whole_abdomen.yaml: stage 2 of the shipped weights' recipe (upper- plus whole-abdomen cases)."""

import re

import pytest
import torch

from scripts.bundle import BUNDLE_ROOT, bundle_parser
from scripts.phantom.dataset import write_dataset
from tests.bundle_cli import run_bundle

CONFIGS = ["train.yaml", "bigaug.yaml", "dualssl_stages.yaml", "finetune_whole_abdomen.yaml"]


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    """5 upper-abdomen and 2 whole-abdomen phantom cases (source domain), in the config's folders' layout."""
    root = tmp_path_factory.mktemp("finetune_data")
    upper = write_dataset(root / "upper", "source", cases=5, seed=0)
    whole = write_dataset(root / "whole", "source", cases=2, seed=100, anatomy="whole_abdomen")
    return upper, whole


def _overrides(phantoms, **extra):
    upper, whole = phantoms
    return {"dataset_dir": str(upper), "whole_abdomen_dir": str(whole), "whole_abdomen_cases": 2,
            "whole_abdomen_val_cases": 1, "num_workers": 0, **extra}


def test_the_whole_abdomen_cases_join_train_yamls_split_and_stage_1_is_the_start(phantoms):
    parser = bundle_parser(CONFIGS, _overrides(phantoms))
    training, validation = parser.get_parsed_content("data_split")
    upper_training, upper_validation = bundle_parser(["train.yaml"], {"dataset_dir": str(phantoms[0])}).get_parsed_content(
        "data_split"
    )
    whole = [e["image"] for e in parser.get_parsed_content("checked_whole_abdomen_datalist")]
    assert [e["image"] for e in training] == [e["image"] for e in upper_training] + whole[:1]
    assert [e["image"] for e in validation] == [e["image"] for e in upper_validation] + whole[1:]
    assert parser.get_parsed_content("pretrained_checkpoint") == str(BUNDLE_ROOT / "runs" / "train" / "models" / "model.pt")
    # 40 epochs at half stage 1's learning rate, the cosine schedule over all of them
    assert parser.get_parsed_content("lr_scheduler").T_max == parser.get_parsed_content("max_epochs") == 40
    assert parser.get_parsed_content("optimizer").defaults["lr"] == pytest.approx(5e-4)


def test_a_whole_abdomen_folder_of_another_seed_is_refused_naming_the_difference(phantoms):
    parser = bundle_parser(CONFIGS, _overrides(phantoms, whole_abdomen_seed=7))
    with pytest.raises(RuntimeError) as raised:  # MONAI's config expression error, raised from the phantom's
        parser.get_parsed_content("data_split")
    assert isinstance(raised.value.__cause__, ValueError)
    assert "seed: recorded 100, requested 7" in str(raised.value.__cause__)


@pytest.mark.slow
def test_one_epoch_fine_tunes_the_shipped_weights_on_both_anatomies(phantoms, tmp_path):
    result = run_bundle(
        "run",
        CONFIGS,
        **_overrides(phantoms),
        pretrained_checkpoint=str(BUNDLE_ROOT / "models" / "model.pt"),
        output_dir=str(tmp_path / "run"),
        max_epochs=1,
        val_interval=1,
        roi_size=[32, 32, 32],
        ssl_start_iteration=1,
        ssl_rampup_iterations=0,
    )
    log = result.stdout + result.stderr
    assert re.search(r"loaded (\d+) of the network's \1 tensors", log), "every tensor of the shipped weights loads"
    losses = [float(v) for v in re.findall(r"loss_segmentation: ([-0-9.eE+naif]+)", log)]
    assert len(losses) == 5 and all(torch.isfinite(torch.tensor(losses)))  # 4 upper + 1 whole-abdomen case
    final = torch.load(tmp_path / "run" / "models" / "checkpoint_final.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in final["model"].values())
