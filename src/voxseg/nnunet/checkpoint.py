"""Read nnU-Net v2 checkpoints (``checkpoint_final.pth``) without running their pickled code.

nnU-Net saves a pickled dict: ``network_weights`` (the state dict), ``optimizer_state``,
``grad_scaler_state``, ``logging`` (lists of numbers, numpy scalars among them), ``_best_ema``,
``current_epoch``, ``init_args`` (plans, dataset.json, configuration, fold, device),
``trainer_name`` and ``inference_allowed_mirroring_axes``. It is loaded with
``torch.load(weights_only=True)``: torch's restricted unpickler, which rebuilds tensors and plain
containers only, plus the explicit allow-list :data:`ALLOWED_GLOBALS` (numpy scalars, dtypes and
arrays, ``torch.device``). Any other pickled type is refused, naming it; nothing is executed.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voxseg.errors import BundleError

__all__ = ["NnunetCheckpoint", "load_checkpoint", "ALLOWED_GLOBALS", "KNOWN_TRAINERS", "check_trainer"]


def _numpy_globals() -> list[Any]:
    core = getattr(np, "_core", None) or np.core
    out: list[Any] = [np.dtype, np.ndarray]
    for prefix in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out.append((core.multiarray.scalar, f"{prefix}.scalar"))
        out.append((core.multiarray._reconstruct, f"{prefix}._reconstruct"))
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        for name in (
            "Float64DType",
            "Float32DType",
            "Float16DType",
            "Int64DType",
            "Int32DType",
            "Int16DType",
            "Int8DType",
            "UInt8DType",
            "UInt16DType",
            "UInt32DType",
            "UInt64DType",
            "BoolDType",
        ):
            if hasattr(dtypes, name):
                out.append(getattr(dtypes, name))
    return out


#: Types a checkpoint may hold besides tensors and plain Python containers/numbers/strings.
ALLOWED_GLOBALS: list[Any] = [*_numpy_globals(), torch.device]

#: Trainers whose changes concern training only (loss, schedule, augmentation, optimizer, epochs,
#: mirroring): the network is built from the plans as by ``nnUNetTrainer``.
KNOWN_TRAINERS = re.compile(
    r"^nnUNetTrainer("
    r"|_\d+epochs|_\d+epochs_NoMirroring|NoMirroring|_onlyMirror01|_onlyMirror01_\d+epochs|NoDeepSupervision"
    r"|DA5|DA5ord0|NoDA|DAOrd0|_DASegOrd0|_DASegOrd0_NoMirroring|NoDA_NoMirroring|_noDummy2DDA"
    r"|CELoss|DiceLoss|DiceCELoss_noSmooth|Topk10Loss|TopkLoss|CELoss_5epochs|_probabilisticOversampling_\d+"
    r"|Adam|AdamW|Adam1en3|Adam3en4|AdamW1en3|Vanilla1e3|VanillaRAdam3en4|CosAnneal|_warmup"
    r"|_\d+epochs_\w+|_Xepochs|_betterIgnoreSampling\w*|_\w*lr\w*"
    r")$"
)

_ALLOWED_NAMES = "tensors, numbers, strings, lists/dicts/tuples, numpy scalars/dtypes/arrays, torch.device"


@dataclass(frozen=True)
class NnunetCheckpoint:
    """The parts of a checkpoint the import uses."""

    weights: dict[str, torch.Tensor]
    trainer: str
    mirror_axes: tuple[int, ...] | None
    configuration: str | None


def _refused(path: Path, exc: Exception) -> BundleError:
    text = str(exc)
    match = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"Unsupported class ([\w.]+)", text)
    if match:
        what = f"a pickled {match.group(1)}"
    else:
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        what = f"unsupported pickle content ({first[:160]})"
    return BundleError(
        f"{path}: refused: the checkpoint contains {what}; nnU-Net checkpoints hold only {_ALLOWED_NAMES} "
        "and voxseg never unpickles other objects (re-save it from nnU-Net with torch.save of plain data)"
    )


def _load(path: Path) -> Any:
    try:
        with torch.serialization.safe_globals(ALLOWED_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise _refused(path, exc) from None
    except (RuntimeError, zipfile.BadZipFile, EOFError, OSError, ValueError, AttributeError, ImportError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported" in str(exc):
            raise _refused(path, exc) from None
        raise BundleError(f"{path}: not a readable torch checkpoint ({first[:200]}); copy it again") from None


def check_trainer(trainer: str, where: str) -> None:
    """Refuse trainers outside :data:`KNOWN_TRAINERS` (they may build another network)."""
    if not KNOWN_TRAINERS.match(trainer):
        raise BundleError(
            f"{where}: unknown trainer {trainer!r}; voxseg imports models of nnUNetTrainer and its variants that "
            "change only training (epochs, loss, augmentation, optimizer, mirroring)"
        )


def load_checkpoint(path: str | Path) -> NnunetCheckpoint:
    """Load an nnU-Net v2 checkpoint safely (see the module docstring).

    Raises
    ------
    BundleError
        Unreadable file, a pickled type outside :data:`ALLOWED_GLOBALS`, no ``network_weights``,
        or an unknown trainer.
    """
    path = Path(path)
    data = _load(path)
    if not isinstance(data, Mapping) or "network_weights" not in data:
        raise BundleError(f"{path}: not an nnU-Net v2 checkpoint (no 'network_weights' entry)")
    weights = data["network_weights"]
    if not isinstance(weights, Mapping) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise BundleError(f"{path}: 'network_weights' is not a state dict of tensors")
    trainer = str(data.get("trainer_name") or "nnUNetTrainer")
    check_trainer(trainer, str(path))
    axes = data.get("inference_allowed_mirroring_axes")
    mirror = None if axes is None else tuple(int(a) for a in axes)
    init = data.get("init_args") if isinstance(data.get("init_args"), Mapping) else {}
    configuration = init.get("configuration") if isinstance(init.get("configuration"), str) else None
    # torch.compile'd trainers save keys with an "_orig_mod." prefix
    clean = {k.removeprefix("_orig_mod."): v for k, v in weights.items()}
    return NnunetCheckpoint(clean, trainer, mirror, configuration)
