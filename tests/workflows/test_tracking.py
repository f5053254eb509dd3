"""Experiment tracking: a tiny ``--tracking mlflow`` training run, its MLflow records and its TensorBoard events."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.bundle.tracking import configure_mlflow_handlers, executed_config_file, hyper_parameters, sqlite_uri
from scripts.engines.dual_ssl_trainer import LOSS_TERMS
from tests.bundle_cli import BUNDLE_ROOT, cli_value

mlflow = pytest.importorskip(
    "mlflow", reason="mlflow is optional (requirements-dev.txt pins mlflow-skinny, sqlalchemy, alembic)"
)

slow = pytest.mark.slow  # the tests of the tiny tracked training run

TINY = {
    "max_epochs": 2,
    "val_interval": 1,
    "roi_size": [32, 32, 32],
    "num_samples": 1,
    "num_workers": 0,
    "ssl_start_iteration": 1,
    "ssl_rampup_iterations": 0,
    "phantom_cases": 3,
    "val_fraction": 0.34,
    "learning_rate": 0.002,
    "lambda_contrastive": 0.3,
}


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    """``python -m monai.bundle run --tracking mlflow --output_dir <plain path>``: the command a user types."""
    root = tmp_path_factory.mktemp("tracked")
    output_dir = root / "run"
    args = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(BUNDLE_ROOT / "configs" / "train.yaml")]
    args += ["--meta_file", str(BUNDLE_ROOT / "configs" / "metadata.json"), "--tracking", "mlflow"]
    args += ["--output_dir", str(output_dir), "--phantom_dir", str(root / "phantom")]
    for key, value in TINY.items():
        args += [f"--{key}", cli_value(value)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}  # the bundle's store, not the user's
    result = subprocess.run(args, cwd=BUNDLE_ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    client = mlflow.MlflowClient(tracking_uri=sqlite_uri(output_dir))
    experiment = client.get_experiment_by_name("pancreas_ct_dualssl")
    assert experiment is not None, "no MLflow experiment 'pancreas_ct_dualssl' in <output_dir>/mlflow.db"
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, f"expected one run (trainer and validator share it), got {[r.info.run_name for r in runs]}"
    return output_dir, client, runs[0]


@slow
def test_the_store_is_sqlite_in_output_dir_and_the_run_finished(tracked_run):
    output_dir, client, run = tracked_run
    assert (output_dir / "mlflow.db").is_file()
    # artefacts beside the store, not in MONAI's default <output_dir>/mlruns.db or the working folder
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.artifact_location == (output_dir / "mlruns").as_uri()
    assert not (output_dir / "mlruns.db").exists()
    assert run.info.run_name.startswith("train_")
    assert run.info.status == "FINISHED"


@slow
def test_every_hyper_parameter_is_a_parameter(tracked_run):
    output_dir, _, run = tracked_run
    params = run.data.params
    expected = {
        "learning_rate": "0.002",
        "lambda_contrastive": "0.3",
        "lambda_restoration": "1.0",
        "roi_size": "[32, 32, 32]",
        "pixdim": "[2.0, 2.0, 2.0]",
        "batch_size": "1",
        "max_epochs": "2",
        "ssl_start_iteration": "1",
        "contrastive_temperature": "0.07",
        "corruption_weights": "[1.0, 1.0, 1.0, 1.0]",
        "network_def.channels": "[16, 32, 64, 128, 192]",
        "loss.lambda_dice": "1.0",
    }
    assert {key: params.get(key) for key in expected} == expected
    executed = next(output_dir.glob("config_*.json"))
    assert set(hyper_parameters(executed)) <= set(params)
    assert len(params) > 50
    # expressions, references and tracking settings are no parameters
    assert not {"device", "dataset_dir", "output_dir", "tracking_uri", "run_name"} & set(params)


@slow
def test_every_loss_term_and_the_metrics_are_logged(tracked_run):
    _, client, run = tracked_run
    metrics = run.data.metrics
    assert set(LOSS_TERMS) <= set(metrics), f"missing loss terms: {set(LOSS_TERMS) - set(metrics)}"
    assert {"val_mean_dice", "train_mean_dice", "lr_group_0"} <= set(metrics)
    # 2 training cases x 2 epochs: one value per iteration, one validation per epoch
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss_contrastive")]
    assert steps == [1, 2, 3, 4]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_mean_dice")] == [1, 2]
    assert 0.0 <= metrics["val_mean_dice"] <= 1.0
    assert metrics["ssl_weight"] == 1.0
    # the SSL terms are computed from the first iteration on (a patch may have no corrupted block: restoration 0)
    for term in ("loss_contrastive", "loss_restoration"):
        assert max(m.value for m in client.get_metric_history(run.info.run_id, term)) > 0.0, term


@slow
def test_the_executed_config_is_an_artefact(tracked_run):
    output_dir, client, run = tracked_run
    artefacts = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert len(artefacts) == 1 and artefacts[0].startswith("config_") and artefacts[0].endswith(".json"), artefacts
    local = client.download_artifacts(run.info.run_id, artefacts[0], str(output_dir / "downloaded"))
    with open(local) as f:
        config = json.load(f)
    assert config["learning_rate"] == 0.002 and config["roi_size"] == [32, 32, 32]
    assert config["output_dir"] == str(output_dir)


@slow
def test_tensorboard_logs_every_loss_term(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    output_dir, _, _ = tracked_run
    tags = set()
    for events in output_dir.glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    assert set(LOSS_TERMS) <= tags, f"missing in TensorBoard: {set(LOSS_TERMS) - tags}"
    assert "val_mean_dice" in tags


def test_monai_s_concatenated_config_path_is_read_as_a_path(tmp_path):
    name = "config_20260101_120000.json"
    # MONAI's value after a plain --output_dir: "<path> + '/<file>'", evaluated as a string, not a path
    assert executed_config_file(f"{tmp_path} + '/{name}'", tmp_path) == os.path.join(tmp_path, name)
    assert executed_config_file(str(tmp_path / name), tmp_path) == str(tmp_path / name)
    assert executed_config_file(True, tmp_path) is None and executed_config_file(None, tmp_path) is None


def test_hyper_parameters_skip_expressions_sections_and_tracking_keys():
    config = {
        "_meta_": {"version": "1"},
        "imports": ["$import os"],
        "lr": 0.1,
        "size": [2, 3],
        "ref": "@lr",
        "expr": "$1 + 1",
        "tracking_uri": "sqlite:////x.db",
        "net": {"_target_": "Net", "channels": [4, 8], "act": "@act", "_disabled_": False},
        "train": {"handlers": [{"_target_": "StatsHandler"}], "lr": 0.5},
        "mixed": [1, "$x"],
    }
    assert hyper_parameters(config) == {"lr": 0.1, "size": [2, 3], "net.channels": [4, 8]}
    with pytest.raises(FileNotFoundError, match="config file not found"):
        hyper_parameters(Path("/nonexistent/config.json"))
    with pytest.raises(TypeError, match="mapping"):
        hyper_parameters([1, 2])  # type: ignore[arg-type]


def test_sqlite_uri_is_absolute_and_refuses_a_folder_in_the_file_name(tmp_path):
    assert sqlite_uri(tmp_path) == f"sqlite:///{tmp_path.as_posix()}/mlflow.db"
    with pytest.raises(ValueError, match="file name"):
        sqlite_uri(tmp_path, "a/mlflow.db")


def test_configure_mlflow_handlers_completes_only_mlflow_handlers(tmp_path):
    from monai.handlers import MLFlowHandler, StatsHandler

    config = tmp_path / "config.json"
    config.write_text(json.dumps({"lr": 0.1, "device": "$torch.device('cpu')"}))
    stats, tracker = StatsHandler(), MLFlowHandler(tracking_uri=sqlite_uri(tmp_path))
    handlers = configure_mlflow_handlers((stats, tracker), str(config), output_transform=dict)
    assert handlers == [stats, tracker] and stats.output_transform is not dict
    assert tracker.output_transform is dict and tracker.experiment_param == {"lr": 0.1}
    assert tracker.artifacts == (str(config),)
    assert configure_mlflow_handlers([stats], None, dict) == [stats]  # no tracking: nothing to complete
    with pytest.raises(FileNotFoundError, match="config file not found"):
        configure_mlflow_handlers([tracker], str(tmp_path / "missing.json"), dict)
    with pytest.raises(TypeError, match="callable"):
        configure_mlflow_handlers([tracker], str(config), "loss")  # type: ignore[arg-type]
