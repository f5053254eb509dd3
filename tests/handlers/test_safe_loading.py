"""Weights and checkpoints are loaded with ``weights_only=True``: a pickle that would run code is refused."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine
from monai.handlers import CheckpointLoader

from scripts.handlers.checkpointing import atomic_torch_save, load_latest_checkpoint


class _Payload:
    """Unpickling this object would create ``marker`` (standing in for any code an attacker wants to run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _malicious_checkpoint(path: Path, marker: Path) -> Path:
    state = {"model": torch.nn.Linear(2, 2).state_dict(), "payload": _Payload(marker)}
    with open(path, "wb") as f:
        torch.save(state, f, pickle_module=pickle)
    return path


def test_plain_unpickling_would_run_the_payload(tmp_path):
    """Guards the other tests: the payload really executes when loaded without ``weights_only``."""
    marker = tmp_path / "executed"
    checkpoint = _malicious_checkpoint(tmp_path / "evil.pt", marker)
    torch.load(checkpoint, weights_only=False)
    assert marker.exists()


def test_monai_checkpoint_loader_used_by_the_configs_refuses_it(tmp_path):
    marker = tmp_path / "executed"
    checkpoint = _malicious_checkpoint(tmp_path / "evil.pt", marker)
    engine = Engine(lambda engine, batch: None)
    CheckpointLoader(load_path=str(checkpoint), load_dict={"model": torch.nn.Linear(2, 2)}).attach(engine)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        engine.run([0], max_epochs=1)
    assert not marker.exists()


def test_resume_skips_it_and_falls_back_to_the_previous_checkpoint(tmp_path, caplog):
    marker = tmp_path / "executed"
    good = atomic_torch_save({"trainer": {"iteration": 4}}, tmp_path / "resume_iteration=4.pt")
    evil = _malicious_checkpoint(tmp_path / "resume_iteration=8.pt", marker)
    path, state = load_latest_checkpoint(tmp_path)
    assert path == good and state == {"trainer": {"iteration": 4}}
    assert not marker.exists()
    assert f"cannot read checkpoint {evil}" in caplog.text


def test_pretrained_checkpoint_of_the_train_config_refuses_it(tmp_path):
    from scripts.bundle import bundle_parser
    from scripts.data.errors import InputError
    from scripts.handlers import PretrainedWeightsLoader

    marker = tmp_path / "executed"
    checkpoint = _malicious_checkpoint(tmp_path / "evil.pt", marker)
    parser = bundle_parser(
        ["train.yaml"], {"pretrained_checkpoint": str(checkpoint), "device": "$torch.device('cpu')"}
    )
    loaders = [h for h in parser.get_parsed_content("train#handlers") if isinstance(h, PretrainedWeightsLoader)]
    assert len(loaders) == 1 and loaders[0].load_path == checkpoint
    with pytest.raises(InputError, match="pickled objects other than tensors") as error:
        loaders[0](None)
    assert str(checkpoint) in str(error.value)
    assert not marker.exists()
    default = bundle_parser(["train.yaml"], {"device": "$torch.device('cpu')"}).get_parsed_content("train#handlers")
    assert not any(isinstance(h, PretrainedWeightsLoader) for h in default), "no pretrained_checkpoint: no loader"
