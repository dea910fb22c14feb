"""``TrainConfig``: everything that shapes a training run, as data (saved in ``run.json``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from voxseg.augment import PRESETS
from voxseg.errors import ConfigError
from voxseg.training.losses import LossSpec

__all__ = ["TrainConfig"]

_OPTIMIZERS = ("sgd", "adamw")
_SCHEDULES = ("poly", "cosine", "constant")


@dataclass(frozen=True)
class TrainConfig:
    """Training settings with documented defaults (sized for a 2-core CPU; raise them on a GPU).

    Parameters
    ----------
    epochs
        Maximum epochs. ``minutes`` (when set) stops earlier, at the end of an epoch.
    iterations_per_epoch
        Optimizer steps per epoch.
    batch_size
        Patches per step.
    optimizer, lr, weight_decay, momentum
        ``sgd`` (Nesterov, nnU-Net's choice) or ``adamw``.
    lr_schedule
        ``poly`` (lr * (1 - epoch/epochs)^0.9), ``cosine`` or ``constant``.
    loss
        The loss and its weights (Dice+CE by default; Dice+Focal 1/10 for MIP-PET).
    augmentation
        Preset name (``none``, ``light``, ``default``).
    oversample_foreground
        Fraction of patches forced to contain foreground.
    seed
        Seeds weights, sampling and augmentation. The batch of step ``i`` in epoch ``e`` depends
        only on ``(seed, e, i)``, so results do not depend on ``num_workers`` and resume exactly.
    num_workers
        DataLoader worker processes for sampling and augmentation (0 = in the main process).
    precision
        ``fp32`` or ``bf16`` (autocast; faster on CPUs with AVX-512 bf16 and on GPUs).
    device
        ``cpu`` or ``cuda``.
    init_weights
        A ``.safetensors`` file of the same network to start from instead of random weights
        (fine-tuning, :mod:`voxseg.experiment.finetune`); a resumed run starts from its checkpoint.
    warmup_steps
        Optimizer steps over which the learning rate ramps up linearly to its schedule (0: none).
    freeze_encoder
        Train only the decoder: the encoder's parameters (:func:`voxseg.nets.encoder_parameters`)
        keep their starting values.
    """

    epochs: int = 50
    minutes: float | None = None
    iterations_per_epoch: int = 50
    batch_size: int = 2
    optimizer: str = "sgd"
    lr: float = 0.01
    weight_decay: float = 3e-5
    momentum: float = 0.99
    lr_schedule: str = "poly"
    loss: LossSpec = field(default_factory=LossSpec)
    augmentation: str = "default"
    oversample_foreground: float = 0.33
    seed: int = 0
    num_workers: int = 0
    precision: str = "fp32"
    device: str = "cpu"
    init_weights: str | None = None
    warmup_steps: int = 0
    freeze_encoder: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.iterations_per_epoch < 1 or self.batch_size < 1:
            raise ConfigError("epochs, iterations_per_epoch and batch_size must be >= 1")
        if self.minutes is not None and self.minutes <= 0:
            raise ConfigError(f"minutes must be > 0, got {self.minutes}")
        if self.optimizer not in _OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r} (choose from {', '.join(_OPTIMIZERS)})")
        if self.lr_schedule not in _SCHEDULES:
            raise ConfigError(f"unknown lr_schedule {self.lr_schedule!r} (choose from {', '.join(_SCHEDULES)})")
        if self.augmentation not in PRESETS:
            raise ConfigError(f"unknown augmentation {self.augmentation!r} (choose from {', '.join(PRESETS)})")
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"precision must be fp32 or bf16, got {self.precision!r}")
        if not 0 <= self.oversample_foreground <= 1:
            raise ConfigError("oversample_foreground must be in [0, 1]")
        if self.num_workers < 0:
            raise ConfigError("num_workers must be >= 0")
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be >= 0, got {self.warmup_steps}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        if isinstance(data.get("loss"), dict):
            data["loss"] = LossSpec(**data["loss"])
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown training option(s) {', '.join(unknown)}")
        return cls(**data)

    def with_overrides(self, **changes: Any) -> TrainConfig:
        return replace(self, **changes)
