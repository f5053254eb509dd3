"""MetricHistory: the validation metrics of a run over its iterations, complete after every validation."""

from __future__ import annotations

import json

from ignite.engine import Engine, Events

from scripts.handlers import MetricHistory


def _engines(values: list[float]):
    validator = Engine(lambda engine, batch: None)
    scores = iter(values)

    @validator.on(Events.COMPLETED)
    def _metric(engine):
        engine.state.metrics["val_mean_dice"] = next(scores)

    trainer = Engine(lambda engine, batch: None)
    # the history handler must see the metric set by the validator's own handler: attached after it
    return trainer, validator


def test_every_validation_is_recorded_with_its_iteration(tmp_path):
    trainer, validator = _engines([0.1, 0.4, 0.5])
    history = MetricHistory(validator, tmp_path / "curve.json")
    history.attach(trainer)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: validator.run([0]))
    trainer.run([0, 1, 2, 3], max_epochs=3)
    curve = json.loads((tmp_path / "curve.json").read_text())
    assert curve == [
        {"epoch": 1, "iteration": 4, "val_mean_dice": 0.1},
        {"epoch": 2, "iteration": 8, "val_mean_dice": 0.4},
        {"epoch": 3, "iteration": 12, "val_mean_dice": 0.5},
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["curve.json"]  # no temporary file left


def test_a_resumed_run_keeps_the_earlier_entries_up_to_its_start(tmp_path):
    earlier = [{"epoch": 1, "iteration": 4, "val_mean_dice": 0.1}, {"epoch": 2, "iteration": 8, "val_mean_dice": 0.4}]
    (tmp_path / "curve.json").write_text(json.dumps(earlier))
    trainer, validator = _engines([0.6])
    history = MetricHistory(validator, tmp_path / "curve.json")
    history.attach(trainer)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: validator.run([0]))
    # resumed from the checkpoint of iteration 4: the entry of iteration 8 belonged to the lost part of the run
    trainer.load_state_dict({"epoch": 1, "epoch_length": 4, "max_epochs": 2})
    trainer.run([0, 1, 2, 3])
    curve = json.loads((tmp_path / "curve.json").read_text())
    assert curve == [earlier[0], {"epoch": 2, "iteration": 8, "val_mean_dice": 0.6}]
