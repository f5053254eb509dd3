"""The start of a training iteration (scripts.engines.optimization.start_iteration) and its AMP autocast."""

from types import SimpleNamespace

import pytest
import torch

from scripts.engines.optimization import amp_autocast, start_iteration


def _engine(iteration: int, accumulation_steps: int, parameter: torch.nn.Parameter, amp: bool = False):
    return SimpleNamespace(
        state=SimpleNamespace(iteration=iteration, epoch_length=4),
        accumulation_steps=accumulation_steps,
        optimizer=torch.optim.SGD([parameter], lr=0.1),
        optim_set_to_none=True,
        amp=amp,
        scaler=None,
        amp_kwargs={},
    )


def test_start_iteration_sets_training_mode_and_zeroes_gradients_on_the_schedule():
    modules = [torch.nn.Linear(2, 2).eval(), torch.nn.Dropout().eval()]
    parameter = torch.nn.Parameter(torch.ones(1))
    for iteration, zeroed, steps in [(1, True, False), (2, False, True), (3, True, False), (4, False, True)]:
        parameter.grad = torch.ones(1)
        engine = _engine(iteration, 2, parameter)
        assert start_iteration(engine, modules) is steps
        assert all(m.training for m in modules)
        assert (parameter.grad is None) is zeroed
        for m in modules:
            m.eval()


def test_amp_autocast_is_off_without_a_scaler():
    parameter = torch.nn.Parameter(torch.ones(1))
    assert not amp_autocast(_engine(1, 1, parameter, amp=True))._enabled  # AMP asked, no scaler (CPU): off
    assert not amp_autocast(_engine(1, 1, parameter, amp=False))._enabled


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA autocast turns itself off without CUDA")
def test_amp_autocast_is_on_with_amp_and_a_scaler():
    engine = _engine(1, 1, torch.nn.Parameter(torch.ones(1)), amp=True)
    engine.scaler = torch.amp.GradScaler("cuda")
    assert amp_autocast(engine)._enabled
