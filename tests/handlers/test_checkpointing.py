"""Resume checkpoints on a plain ignite engine: what is saved, when, how many, and what a resume restores."""

from __future__ import annotations

import threading

import pytest
import torch
from ignite.engine import Engine

from scripts.handlers.checkpointing import ResumableCheckpointer, atomic_torch_save, load_latest_checkpoint


def _engine(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> Engine:
    def step(engine, batch):
        optimizer.zero_grad()
        loss = model(batch).square().mean() + torch.rand(()) * 0  # draws from torch's global generator
        loss.backward()
        optimizer.step()
        return loss.item()

    return Engine(step)


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    return model, optimizer, [torch.randn(4, 3) for _ in range(3)]


def test_epoch_level_checkpoints_keep_the_newest_n(tmp_path):
    model, optimizer, data = _setup()
    engine = _engine(model, optimizer)
    ResumableCheckpointer(tmp_path, {"model": model}, interval=1, epoch_level=True, n_saved=2).attach(engine)
    engine.run(data, max_epochs=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resume_iteration=12.pt", "resume_iteration=9.pt"]
    path, state = load_latest_checkpoint(tmp_path)
    assert path.name == "resume_iteration=12.pt"
    assert state["trainer"]["iteration"] == 12 and state["trainer"]["epoch_length"] == 3
    assert {"model", "trainer", "rng"} <= set(state)
    torch.testing.assert_close(state["model"]["weight"], model.weight.detach())


def test_resume_restores_weights_optimizer_iteration_and_random_state(tmp_path):
    model, optimizer, data = _setup()
    uninterrupted = _engine(model, optimizer)
    uninterrupted.run(data, max_epochs=4)
    expected = model.weight.detach().clone()

    model, optimizer, data = _setup()
    first = _engine(model, optimizer)
    ResumableCheckpointer(tmp_path, {"model": model, "optimizer": optimizer}, interval=3).attach(first)
    first.run(data, max_epochs=2)
    torch.rand(5)  # the interrupted process's random state is lost with it

    model, optimizer, _ = _setup(seed=1)  # a fresh process: other initial weights
    resumed = _engine(model, optimizer)
    ResumableCheckpointer(tmp_path, {"model": model, "optimizer": optimizer}, interval=3, resume=True).attach(resumed)
    resumed.run(data, max_epochs=4)
    assert resumed.state.iteration == 12
    torch.testing.assert_close(model.weight.detach(), expected, rtol=0, atol=0)


def test_an_earlier_run_is_refused_unless_resumed(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"earlier")
    with pytest.raises(FileExistsError, match=r"model.pt exists from an earlier run; set resume to true"):
        ResumableCheckpointer(tmp_path, {})
    ResumableCheckpointer(tmp_path, {}, resume=True)
    assert (tmp_path / "model.pt").read_bytes() == b"earlier"


def test_a_failed_save_leaves_the_previous_file_and_no_partial_file(tmp_path):
    target = atomic_torch_save({"step": torch.tensor(1)}, tmp_path / "resume_iteration=1.pt")
    with pytest.raises(TypeError):
        atomic_torch_save({"lock": threading.Lock()}, target)  # cannot be pickled: fails mid-write
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resume_iteration=1.pt"]
    assert torch.load(target, weights_only=True) == {"step": torch.tensor(1)}
