"""The :class:`Predictor`: trained torch networks + plan -> a label map on the input's exact geometry.

The steps (preprocessing, sliding window, restoration, labels, postprocessing) are
:class:`voxseg.inference.pipeline.Pipeline`'s, shared with every backend; this class supplies the
torch patch runner: each fold's network under bf16 autocast where asked, mirror TTA per fold, the
fold ensemble averaging softmax (sigmoid) outputs, on ``device``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from voxseg.errors import ConfigError, VoxsegError
from voxseg.inference.options import PredictOptions
from voxseg.inference.pipeline import FLOAT16_ABOVE_BYTES, MASK_CHANNEL_NAME, Pipeline, Prediction
from voxseg.inference.runtime import configure_threads, cpu_supports_bf16, resolve_precision
from voxseg.inference.sliding_window import torch_runner
from voxseg.inference.tiling import CONFIDENT_PROBABILITY
from voxseg.inference.window import PatchRunner
from voxseg.inference.wrappers import AutocastPredictor, Ensemble, MirrorTTA
from voxseg.planning import Plan
from voxseg.planning.plan import refuse_interactive
from voxseg.planning.work import work_plan
from voxseg.postprocessing import PostprocessingSpec, for_plan

__all__ = [
    "Prediction",
    "Predictor",
    "AUTO_PRECISION_BF16",
    "FLOAT16_ABOVE_BYTES",
    "MASK_CHANNEL_NAME",
    "PRECISION_CHOICES",
]

log = logging.getLogger(__name__)

#: ``precision="auto"`` means bf16 where the CPU/GPU supports it natively (measured on the
#: mouse-lung-ct phantoms: see docs/inference.md); set to False to make "auto" mean fp32.
AUTO_PRECISION_BF16 = True

PRECISION_CHOICES: tuple[str, ...] = ("auto", "bf16", "fp32")


class Predictor(Pipeline):
    """Predict label maps with one or more trained networks (fold ensemble) of a plan.

    Parameters
    ----------
    networks
        One torch module per fold, built from the plan configuration's network spec and loaded.
    plan
        The plan the networks were trained with (channels, labels, normalization, configurations).
    configuration
        Plan configuration (default ``plan.default_configuration``).
    postprocessing
        Applied to the label map (default: none).
    tta
        Mirror test-time augmentation over the configuration's ``mirror_axes``.
    overlap
        Sliding-window overlap in ``[0, 1)``.
    precision
        ``"auto"`` (bf16 where the hardware supports it, see :data:`AUTO_PRECISION_BF16`), ``"bf16"``
        or ``"fp32"``. The precision really used is ``self.precision``.
    device
        ``"cpu"`` or ``"cuda"`` (``"cuda:1"``...).
    threshold
        Binary models only: foreground where ``P(fg) > threshold`` (default 0.5, the argmax).
    batch_size
        Tiles per network call, or ``"auto"`` (default): as many as fit
        :data:`voxseg.inference.tiling.TILE_BATCH_VOXELS` (4 tiles of 40^3, 1 of 128^3), which on a CPU is
        several times faster than one tile per call. The number used is ``self.batch_size``.
    num_threads
        torch intra-op threads (None: leave as configured).
    tta_confident
        Confident-tile TTA: a tile whose un-flipped pass is confident everywhere (every voxel's
        class probability >= :data:`~voxseg.inference.tiling.CONFIDENT_PROBABILITY`) skips its other
        mirrorings (:class:`~voxseg.inference.wrappers.MirrorTTA` ``confident``). Off by default.
    skip_background
        Tiles of pure background are not run (:mod:`voxseg.inference.skip`). Off by default.
    """

    backend = "torch"

    def __init__(
        self,
        networks: Sequence[torch.nn.Module],
        plan: Plan,
        *,
        configuration: str | None = None,
        postprocessing: PostprocessingSpec | None = None,
        tta: bool = True,
        overlap: float = 0.5,
        precision: str = "auto",
        device: str = "cpu",
        threshold: float | None = None,
        batch_size: int | str = "auto",
        num_threads: int | None = None,
        tta_confident: bool = False,
        skip_background: bool = False,
    ):
        networks = list(networks)
        if not networks or not all(isinstance(n, torch.nn.Module) for n in networks):
            raise ConfigError("Predictor needs a non-empty list of torch networks (one per fold)")
        if precision not in PRECISION_CHOICES:
            raise ConfigError(f"unknown precision {precision!r} (choose from {', '.join(PRECISION_CHOICES)})")
        super().__init__(
            plan,
            configuration=configuration,
            postprocessing=postprocessing,
            tta=tta,
            overlap=overlap,
            threshold=threshold,
            batch_size=batch_size,
            skip_background=skip_background,
        )
        self.device = _device(device)
        if num_threads is not None:
            configure_threads(num_threads)
        wanted = precision
        if precision == "auto":
            wanted = "bf16" if AUTO_PRECISION_BF16 and _native_bf16(self.device) else "fp32"
        self.precision = resolve_precision(wanted, self.device)
        self.networks = networks
        members = [AutocastPredictor(net, precision=self.precision, device=self.device) for net in networks]
        axes = self.config.mirror_axes
        self.tta_confident = bool(tta_confident)
        level = CONFIDENT_PROBABILITY if self.tta_confident else None
        wrapped = [MirrorTTA(m, axes, confident=level) for m in members] if self.tta and axes else members
        self._predictor = Ensemble(wrapped, activation=self.activation)
        self._options = {
            "configuration": self.configuration,
            "postprocessing": self.postprocessing,
            "tta": self.tta,
            "tta_confident": self.tta_confident,
            "overlap": self.overlap,
            "precision": self.precision,
            "device": str(self.device),
            "threshold": self.threshold,
            "batch_size": self.batch_size,
            "skip_background": self.skip_background,
        }

    def first_folds(self, n: int = 1) -> Predictor:
        """A predictor with the first ``n`` fold networks only (the same modules, other options kept)."""
        if not isinstance(n, int) or n < 1:
            raise ConfigError(f"first_folds needs n >= 1, got {n!r}")
        if n >= len(self.networks):
            return self
        return self._rebuilt(self.networks[:n], self._options, None if self.folds is None else self.folds[:n])

    def with_options(self, options: PredictOptions) -> Predictor:
        """The same networks (not reloaded) predicting with other :class:`~voxseg.inference.options.PredictOptions`
        (folds and max_folds pick among the loaded networks)."""
        folds = self.folds if self.folds is not None else tuple(range(len(self.networks)))
        chosen = options.chosen_folds(folds)
        unknown = [f for f in chosen if f not in folds]
        if unknown:
            raise ConfigError(f"fold(s) {unknown} are not loaded (loaded: {list(folds)})")
        networks = [self.networks[folds.index(f)] for f in chosen]
        kwargs = {**options.predictor_kwargs(), "configuration": self.configuration}
        kwargs["postprocessing"] = self.postprocessing
        return self._rebuilt(networks, kwargs, chosen if self.folds is not None else None)

    def _rebuilt(self, networks: list, options: dict[str, Any], folds: tuple[int, ...] | None) -> Predictor:
        other = type(self)(networks, self.plan, **options)
        other.model_id, other.model_sha256, other.model_terms = self.model_id, self.model_sha256, self.model_terms
        other.model_card, other.folds = self.model_card, folds
        return other

    # ---- construction from files -----------------------------------------------------------
    @classmethod
    def from_work(
        cls,
        work: str | Path,
        *,
        configuration: str | None = None,
        folds: Sequence[int] | None = None,
        **options: Any,
    ) -> Predictor:
        """The trained folds of a work folder (``voxseg plan`` + ``voxseg train``).

        Weights come from ``runs/<cfg>/fold_<k>/checkpoint/model.safetensors``; ``folds`` default to
        every finished fold; the postprocessing defaults to ``crossval/<cfg>/postprocessing.json``
        when it exists. Other keyword options go to :class:`Predictor`.
        """
        from voxseg.workdir.layout import WorkDir

        wd = WorkDir(Path(work))
        plan = work_plan(wd, configuration)
        cfg = plan.configuration(configuration).name
        trained = wd.trained_folds(cfg)
        chosen = list(trained) if folds is None else [int(f) for f in folds]
        if not chosen:
            raise VoxsegError(
                f"{wd.root}: no trained fold of configuration {cfg!r} (runs/{cfg}/fold_*/run.json with status "
                f"finished); train first with `voxseg train {wd.root}`"
            )
        missing = [f for f in chosen if f not in trained]
        if missing:
            raise VoxsegError(
                f"{wd.root}: fold(s) {', '.join(map(str, missing))} of {cfg!r} are not trained "
                f"(trained: {', '.join(map(str, trained)) or 'none'}); pick trained folds with --folds"
            )
        if options.get("postprocessing") is None:
            post = wd.postprocessing_path(cfg)
            options["postprocessing"] = for_plan(
                PostprocessingSpec.load(post) if post.is_file() else PostprocessingSpec(), plan
            )
        files = [wd.checkpoint_dir(cfg, f) / "model.safetensors" for f in chosen]
        predictor = cls.from_weights(plan, files, configuration=cfg, **options)
        predictor.model_id = f"work:{wd.root.resolve()}#{cfg}"
        predictor.folds = tuple(chosen)
        return predictor

    @classmethod
    def from_weights(
        cls,
        plan: Plan,
        weight_files: Sequence[str | Path],
        *,
        configuration: str | None = None,
        postprocessing: PostprocessingSpec | None = None,
        **options: Any,
    ) -> Predictor:
        """Build the configuration's network once per safetensors file and load its weights."""
        from safetensors.torch import load_file

        from voxseg.nets import build_network

        config = plan.configuration(configuration)
        networks = []
        for path in map(Path, weight_files):
            if not path.is_file():
                raise VoxsegError(f"{path}: weight file not found (train the fold or check the model path)")
            net = build_network(config.network)
            try:
                net.load_state_dict(load_file(str(path), device="cpu"))
            except (RuntimeError, OSError, ValueError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise VoxsegError(
                    f"{path}: weights do not fit the plan's {config.network.name!r} network ({first[:200]}); "
                    "use the plan they were trained with"
                ) from None
            networks.append(net)
        return cls(networks, plan, configuration=config.name, postprocessing=postprocessing, **options)

    # ---- settings --------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """The options that shape a prediction (JSON-ready; recorded in batch manifests)."""
        return {
            "configuration": self.configuration,
            "folds": None if self.folds is None else list(self.folds),
            "networks": len(self.networks),
            "tta": self.tta,
            "tta_confident": self.tta_confident,
            "overlap": self.overlap,
            "precision": self.precision,
            "device": str(self.device),
            "threshold": self.threshold,
            "skip_background": self.skip_background,
            "postprocessing": self.postprocessing.to_json(),
            "model_sha256": self.model_sha256,
        }

    def __repr__(self) -> str:
        return (
            f"Predictor({self.model_id}, configuration={self.configuration!r}, networks={len(self.networks)}, "
            f"tta={self.tta}, overlap={self.overlap}, precision={self.precision!r}, device={str(self.device)!r})"
        )

    # ---- the pipeline's hooks --------------------------------------------------------------
    def patch_runner(self) -> PatchRunner:
        """The fold ensemble (mirror TTA per fold, bf16 autocast where asked) on ``device``, as a patch runner."""
        return torch_runner(self._predictor, self.device)

    def check_model(self) -> None:
        refuse_interactive(self.plan, self.model_id)


def _device(device: Any) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {device!r} (use cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} is not available (torch sees no CUDA GPU); use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {device!r} is not supported (use cpu, cuda or cuda:N)")
    return dev


def _native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_supports_bf16()
