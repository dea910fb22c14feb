"""The work folder (``voxseg plan DATA -o WORK``): one place for every artifact of an experiment.

```
WORK/
  dataset.json          copy of the raw dataset's dataset.json + "voxseg_source": its absolute path
  fingerprint.json      measured facts (voxseg.fingerprint)
  plan.json             decisions (voxseg.planning.Plan)
  splits.json           k-fold splits (voxseg.dataset.splits)
  preprocessed/<cfg>/   preprocessed cases (voxseg.preprocessing.store)
  snapshots/            PNGs of preprocessing stages (--snapshots)
  runs/<cfg>/fold_<k>/  run.json, progress.png, checkpoint/ (model.safetensors, ...),
                        validation/ (predictions of the fold's validation cases, original geometry),
                        validation/metrics.json
  crossval/<cfg>/       summary.json, metrics.csv, postprocessing.json (chosen from CV predictions)
```

Only paths here: no I/O beyond existence checks and reading small JSON status fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from voxseg.errors import ConfigError
from voxseg.io.safe_json import read_json

__all__ = ["WorkDir"]


@dataclass(frozen=True)
class WorkDir:
    """Paths inside a work folder."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def plan_path(self) -> Path:
        return self.root / "plan.json"

    @property
    def fingerprint_path(self) -> Path:
        return self.root / "fingerprint.json"

    @property
    def dataset_path(self) -> Path:
        return self.root / "dataset.json"

    @property
    def splits_path(self) -> Path:
        return self.root / "splits.json"

    @property
    def snapshots_dir(self) -> Path:
        return self.root / "snapshots"

    def preprocessed_dir(self, configuration: str) -> Path:
        return self.root / "preprocessed" / configuration

    def run_dir(self, configuration: str, fold: int) -> Path:
        return self.root / "runs" / configuration / f"fold_{int(fold)}"

    def checkpoint_dir(self, configuration: str, fold: int) -> Path:
        return self.run_dir(configuration, fold) / "checkpoint"

    def validation_dir(self, configuration: str, fold: int) -> Path:
        return self.run_dir(configuration, fold) / "validation"

    def crossval_dir(self, configuration: str) -> Path:
        return self.root / "crossval" / configuration

    def postprocessing_path(self, configuration: str) -> Path:
        return self.crossval_dir(configuration) / "postprocessing.json"

    def source_dataset(self) -> Path:
        """The raw dataset folder this work folder was planned from."""
        try:
            data = read_json(self.dataset_path)
            return Path(data["voxseg_source"])
        except (OSError, ValueError, KeyError, TypeError):
            raise ConfigError(
                f"{self.dataset_path}: missing or without 'voxseg_source'; re-run `voxseg plan DATA -o {self.root}`"
            ) from None

    def require_plan(self) -> Path:
        if not self.plan_path.is_file():
            raise ConfigError(f"{self.root}: not a voxseg work folder (no plan.json); run `voxseg plan DATA -o WORK`")
        return self.plan_path

    def trained_folds(self, configuration: str) -> list[int]:
        """Folds whose run finished (``run.json`` status ``finished``) and has a complete checkpoint."""
        base = self.root / "runs" / configuration
        folds = []
        for run in sorted(base.glob("fold_*")) if base.is_dir() else []:
            try:
                fold = int(run.name.split("_", 1)[1])
                status = read_json(run / "run.json").get("status")
            except (OSError, ValueError, IndexError, AttributeError):
                continue
            if status == "finished" and (run / "checkpoint" / "state.json").is_file():
                folds.append(fold)
        return sorted(folds)
