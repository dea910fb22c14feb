"""MLflow tracking into a real SQLite store in tmp_path (no server, offline)."""

from __future__ import annotations

import sys

import pytest

from tests.experiment.work_helpers import FAST, make_work
from voxseg.errors import ConfigError
from voxseg.experiment.tracking import MlflowTracker, resolve_tracking_uri
from voxseg.experiment.train import train_fold


@pytest.mark.slow
def test_train_fold_logs_params_metrics_and_artifacts(tmp_path):
    mlflow = pytest.importorskip("mlflow")
    work = make_work(tmp_path)
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    summary = train_fold(work, 0, config_overrides=FAST, mlflow=uri)
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("voxseg tiny 3d")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "3d fold 0"
    params = run.data.params
    assert params["train.lr"] == "0.01" and params["train.epochs"] == "2" and params["fold"] == "0"
    assert params["plan.patch_size"] == "[8, 16, 16]" and params["plan.network.name"] == "unet"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2]
    assert len(client.get_metric_history(run.info.run_id, "val_dice")) == 2
    assert run.data.metrics["final_val_dice"] == pytest.approx(summary["val_dice"])
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"plan.json", "run.json", "progress.png", "metrics.json"} <= names
    # artifacts land next to the store, not in the current directory
    assert (tmp_path / "store" / "mlartifacts").is_dir()


def test_local_uri_is_a_sqlite_store_in_the_work_folder(tmp_path):
    uri, artifacts = resolve_tracking_uri("local", tmp_path)
    assert uri == f"sqlite:///{tmp_path.resolve() / 'mlruns' / 'mlflow.db'}"
    assert artifacts == (tmp_path.resolve() / "mlruns" / "artifacts").as_uri()
    with pytest.raises(ConfigError, match="--mlflow"):
        resolve_tracking_uri("ftp://somewhere", tmp_path)


def test_without_mlflow_the_error_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what an environment without mlflow looks like
    with pytest.raises(ConfigError, match=r"pip install 'voxseg\[mlflow\]'") as err:
        MlflowTracker("local", tmp_path, experiment="x", run_name="y")
    assert "\n" not in str(err.value)
