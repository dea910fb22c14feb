"""Optional MLflow tracking of training runs (``voxseg train --mlflow URI``).

``run.json`` and ``progress.png`` are always written; MLflow is an extra view of the same facts:
params (the resolved plan configuration and ``TrainConfig``, flattened), metrics per epoch (loss,
lr, val_dice) and at the end (full-volume validation Dice per class), artifacts (``plan.json``,
``run.json``, ``progress.png``, ``validation/metrics.json``, preprocessing snapshots).

URIs: ``local`` means a SQLite store in ``WORK/mlruns/`` (works offline, no server);
``sqlite:///path/mlflow.db`` a SQLite store with artifacts in ``mlartifacts/`` next to it;
``http(s)://...`` a tracking server; a folder path or ``file:`` URI MLflow's file store. mlflow is
imported only when tracking is asked for (``pip install 'voxseg[mlflow]'``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from voxseg.errors import ConfigError

__all__ = ["MlflowTracker", "resolve_tracking_uri"]

log = logging.getLogger(__name__)
_MAX_PARAM = 500  # characters; MLflow's historic limit for a param value


def _import_mlflow():
    try:
        import mlflow  # noqa: F401
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ConfigError(
            "--mlflow needs the mlflow package, which is not installed; install it with "
            "`pip install 'voxseg[mlflow]'` (or run without --mlflow: run.json and progress.png are always written)"
        ) from None
    return MlflowClient


def resolve_tracking_uri(uri: str, work: str | Path) -> tuple[str, str | None]:
    """(tracking URI, artifact location or None) for ``uri`` (see the module docstring)."""
    work = Path(work).resolve()
    if uri == "local":
        folder = work / "mlruns"
        folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{folder / 'mlflow.db'}", (folder / "artifacts").as_uri()
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        db.parent.mkdir(parents=True, exist_ok=True)
        return uri, (db.resolve().parent / "mlartifacts").as_uri()
    if uri.startswith(("http://", "https://", "databricks")):
        return uri, None
    if "://" in uri and not uri.startswith("file:"):
        raise ConfigError(f"--mlflow {uri!r}: use 'local', sqlite:///PATH, http(s)://SERVER, or a folder")
    folder = Path(uri[len("file://") :] if uri.startswith("file://") else uri.removeprefix("file:")).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses file stores otherwise
    return folder.as_uri(), None


def _param_text(value: Any) -> str:
    text = str(value)
    return text if len(text) <= _MAX_PARAM else text[: _MAX_PARAM - 3] + "..."


class MlflowTracker:
    """One MLflow run: params once, metrics per epoch, artifacts, then a final status.

    Parameters
    ----------
    uri
        Tracking URI (see :func:`resolve_tracking_uri`).
    work
        The work folder (for ``local``).
    experiment
        Experiment name (created with an explicit artifact location when missing).
    run_name
        Name of the run (``"3d fold 0"``).
    tags
        Run tags.
    """

    def __init__(
        self,
        uri: str,
        work: str | Path,
        *,
        experiment: str,
        run_name: str,
        tags: Mapping[str, str] | None = None,
    ):
        client_cls = _import_mlflow()
        self.tracking_uri, artifacts = resolve_tracking_uri(uri, work)
        self.client = client_cls(tracking_uri=self.tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            experiment_id = self.client.create_experiment(experiment, artifact_location=artifacts)
        else:
            experiment_id = found.experiment_id
        run = self.client.create_run(experiment_id, run_name=run_name, tags=dict(tags or {}))
        self.run_id: str = run.info.run_id
        self.experiment_id = experiment_id
        self._logged_epochs = 0
        log.info("MLflow run %s in %s (experiment %r)", self.run_id, self.tracking_uri, experiment)

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(str(k), _param_text(v)) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):  # MLflow's batch limit
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: Mapping[str, Any], *, step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(str(k), float(v), now, int(step))
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        ]
        if items:
            self.client.log_batch(self.run_id, metrics=items)

    def log_history(self, history: Iterable[Mapping[str, Any]]) -> None:
        """Log the epochs of ``history`` not logged yet (step = epoch number, from 1)."""
        entries = list(history)
        for entry in entries[self._logged_epochs :]:
            metrics = {k: v for k, v in entry.items() if k != "epoch"}
            self.log_metrics(metrics, step=int(entry.get("epoch", 0)) + 1)
        self._logged_epochs = max(self._logged_epochs, len(entries))

    def log_artifact(self, path: str | Path, *, folder: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path=folder or path.name)
        elif path.is_file():
            self.client.log_artifact(self.run_id, str(path), artifact_path=folder)

    def finish(self, status: str = "FINISHED") -> None:
        """End the run (``FINISHED``, ``FAILED`` or ``KILLED``)."""
        self.client.set_terminated(self.run_id, status=status)
