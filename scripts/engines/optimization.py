"""
The start and the optimizer step of a training iteration, as MONAI's ``SupervisedTrainer`` takes them: training
mode, gradient accumulation over ``accumulation_steps`` iterations (restarting at every epoch, the last iteration
of an epoch always steps), CUDA autocast with AMP and the AMP grad scaler.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.engines import Trainer
from monai.engines.utils import IterationEvents

__all__ = ["accumulation_schedule", "amp_autocast", "backward_and_step", "start_iteration"]


def accumulation_schedule(iteration: int, epoch_length: int | None, accumulation_steps: int) -> tuple[bool, bool]:
    """
    Whether the 1-based ``iteration`` zeroes the gradients first, and whether it steps the optimizer.

    Raises:
        ValueError: when ``accumulation_steps`` < 1 or ``iteration`` < 1.
    """
    if accumulation_steps < 1 or iteration < 1:
        raise ValueError(f"accumulation_steps and iteration must be >= 1, got {accumulation_steps} and {iteration}")
    if accumulation_steps == 1:
        return True, True
    local = (iteration - 1) % epoch_length if epoch_length else iteration - 1
    last_of_epoch = bool(epoch_length) and local + 1 == epoch_length
    return local % accumulation_steps == 0, (local + 1) % accumulation_steps == 0 or last_of_epoch


def start_iteration(engine: Trainer, modules: Sequence[torch.nn.Module]) -> bool:
    """
    Put ``modules`` in training mode and, when the accumulation schedule of ``engine.state.iteration`` says so,
    zero ``engine.optimizer``'s gradients; returns whether this iteration steps the optimizer (for
    ``backward_and_step``).
    """
    zero_grad, step = accumulation_schedule(engine.state.iteration, engine.state.epoch_length, engine.accumulation_steps)
    for module in modules:
        module.train()
    if zero_grad:
        engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
    return step


def amp_autocast(engine: Trainer) -> torch.autocast:
    """CUDA autocast with ``engine.amp_kwargs``, enabled when the engine trains with AMP (it then has a scaler)."""
    return torch.autocast("cuda", enabled=bool(engine.amp and engine.scaler is not None), **engine.amp_kwargs)


def backward_and_step(engine: Trainer, loss: torch.Tensor, step: bool) -> None:
    """
    Back-propagate ``loss / engine.accumulation_steps`` (through ``engine.scaler`` with AMP) and, when ``step``,
    step ``engine.optimizer``; fires ``BACKWARD_COMPLETED`` between the two, as ``SupervisedTrainer`` does.
    """
    scaled = loss / engine.accumulation_steps if engine.accumulation_steps > 1 else loss
    if engine.amp and engine.scaler is not None:
        engine.scaler.scale(scaled).backward()
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        if step:
            engine.scaler.step(engine.optimizer)
            engine.scaler.update()
    else:
        scaled.backward()
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        if step:
            engine.optimizer.step()
