"""The pre-flight check: validate the inputs and state the work before any model or image loads.

From image headers only (:func:`voxseg.io.headers.read_header`) and the model's plan (read from
its bundle or work folder without loading weights), for every case:

- validate: readable, channel count vs the model's channels, 2D/3D vs the model, one grid shape;
- state the work: shape after resampling to the model's spacing, sliding-window tiles (the
  tiling arithmetic of :mod:`voxseg.inference.tiling`), time on this machine from a measured network speed
  (:mod:`voxseg.inference.rate`), peak memory;
- warn when the spacing or field of view is far from the model's training domain, when a
  fixed-shape model sees only part of the image, or when an image records no spacing;
- refuse beyond the limits (:class:`PreflightLimits`) unless forced.

The CLI, :func:`voxseg.predict`, napari, the web app and the Ray engine all call it. torch-free.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxseg.errors import InputImageError, VoxsegError
from voxseg.fingerprint.domain import TrainingDomain
from voxseg.inference.case_notes import CaseNote, grouped_notes
from voxseg.inference.tiling import FLOAT16_ABOVE_BYTES, auto_batch_size, tile_grid
from voxseg.io.headers import ImageHeader, read_header
from voxseg.planning import ConfigurationPlan, Plan
from voxseg.preprocessing.pipeline import full_target_spacing
from voxseg.preprocessing.resampling import resampled_shape

if TYPE_CHECKING:
    from voxseg.inference.inputs import CaseInput
    from voxseg.io import Volume

__all__ = [
    "PreflightError",
    "PreflightLimits",
    "ModelFacts",
    "CaseWork",
    "CaseNote",
    "PreflightReport",
    "preflight",
    "SPACING_FACTOR",
    "EXTENT_FACTOR",
]

log = logging.getLogger(__name__)

#: Warn when an image's spacing lies this factor outside the training spacings on some axis.
SPACING_FACTOR = 2.0
#: Warn when an image's field of view (mm) lies this factor outside the training images' on some axis.
EXTENT_FACTOR = 2.0
#: Bytes per float32 voxel, and activations per tile voxel as a multiple of the first layer's width.
_F32 = 4
_ACTIVATION_FACTOR = 6


class PreflightError(VoxsegError):
    """The stated work is beyond a limit (time, memory); ``--force`` runs it anyway."""


@dataclass(frozen=True)
class PreflightLimits:
    """When the pre-flight refuses: an estimated time per case above ``max_minutes``, or a peak
    memory above ``max_memory_gb`` (None: the memory available now). ``force`` only warns."""

    max_minutes: float | None = 30.0
    max_memory_gb: float | None = None
    force: bool = False
    #: how the caller's user runs it anyway / changes a limit (the CLI's flags by default)
    force_hint: str = "pass --force"
    time_limit_hint: str = "--max-minutes to change the limit"
    memory_limit_hint: str = "--max-memory to change the limit"


@dataclass(frozen=True)
class ModelFacts:
    """What the pre-flight needs of a model, read without its weights."""

    reference: str
    plan: Plan
    configuration: str
    folds: int
    tta: bool = True
    overlap: float = 0.5
    batch_size: int | str = "auto"
    precision: str = "auto"
    device: str = "cpu"
    threads: int | None = None
    domain: TrainingDomain | None = None
    probabilities: bool = False  # the class probabilities are kept (written) too

    @property
    def config(self) -> ConfigurationPlan:
        return self.plan.configuration(self.configuration)

    @property
    def tiles_per_call(self) -> int:
        return auto_batch_size(self.config.patch_size) if self.batch_size == "auto" else int(self.batch_size)

    @property
    def training_domain(self) -> TrainingDomain:
        cfg = self.config
        return self.domain or TrainingDomain.from_plan(cfg.target_spacing, cfg.median_shape, cfg.patch_size)

    @classmethod
    def from_predictor(cls, predictor: Any, *, domain: TrainingDomain | None = None) -> ModelFacts:
        """From a loaded :class:`~voxseg.inference.predictor.Predictor` (or the onnxruntime one)."""
        networks = getattr(predictor, "networks", None) or getattr(predictor, "sessions", None) or [None]
        return cls(
            reference=str(getattr(predictor, "model_id", "custom")),
            plan=predictor.plan,
            configuration=getattr(predictor, "configuration", None) or predictor.plan.default_configuration,
            folds=len(networks),
            tta=bool(getattr(predictor, "tta", True)),
            overlap=float(getattr(predictor, "overlap", 0.5)),
            batch_size=getattr(predictor, "batch_size", "auto"),
            precision=str(getattr(predictor, "precision", "auto")),
            device=str(getattr(predictor, "device", "cpu")),
            domain=domain,
        )


@dataclass(frozen=True)
class CaseWork:
    """The stated work of one case."""

    case_id: str
    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    resampled_shape: tuple[int, ...]
    tiles: int
    network_calls: int
    peak_bytes: int
    seconds: float | None = None
    notes: tuple[CaseNote, ...] = ()

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(n.text for n in self.notes)


@dataclass(frozen=True)
class PreflightReport:
    """What :func:`preflight` found: per-case work, warnings, and the reasons to refuse."""

    model: ModelFacts
    cases: tuple[CaseWork, ...]
    call_seconds: float | None
    rate_cached: bool
    memory_available: int | None
    limits: PreflightLimits = field(default_factory=PreflightLimits)
    refusals: tuple[str, ...] = ()
    invalid: tuple[tuple[str, str], ...] = ()

    @property
    def warnings(self) -> tuple[str, ...]:
        """Each case's warnings; a finding shared by many cases is one line that counts them."""
        return tuple(grouped_notes([n for case in self.cases for n in case.notes], len(self.cases)))

    @property
    def seconds(self) -> float | None:
        if self.call_seconds is None:
            return None
        return sum(c.seconds or 0.0 for c in self.cases)

    @property
    def peak_bytes(self) -> int:
        return max((c.peak_bytes for c in self.cases), default=0)

    @property
    def ok(self) -> bool:
        return not self.refusals or self.limits.force

    def summary(self) -> str:
        """One line: ``3 cases, 27 tiles each at 32x32x32 after resampling to 0.2 mm, about 2 min on
        this machine, peak ~1.7 GB``."""
        cfg = self.model.config
        n = len(self.cases)
        tiles = sorted({c.tiles for c in self.cases})
        each = f"{tiles[0]} tiles{' each' if n > 1 else ''}" if len(tiles) == 1 else f"{tiles[0]}-{tiles[-1]} tiles"
        patch = "x".join(map(str, cfg.patch_size))
        spacing = "x".join(f"{s:g}" for s in cfg.target_spacing)
        sizes = sorted({"x".join(map(str, c.resampled_shape)) for c in self.cases})
        shape = sizes[0] if len(sizes) == 1 else f"{len(sizes)} shapes"
        when = "time unknown" if self.seconds is None else f"about {_duration(self.seconds)} on this machine"
        return (
            f"{n} case{'s' if n != 1 else ''}, {each} of {patch} ({shape} after resampling to {spacing} mm), "
            f"{when}, peak ~{_gb(self.peak_bytes)}"
        )

    def check(self) -> None:
        """Raise :class:`PreflightError` with the first refusal unless ``limits.force``."""
        if self.refusals and not self.limits.force:
            raise PreflightError(self.refusals[0])


# ---- the check ---------------------------------------------------------------------------------
def preflight(
    cases: Sequence[CaseInput | Sequence[Volume | ImageHeader]],
    model: ModelFacts,
    *,
    limits: PreflightLimits = PreflightLimits(),
    cache_dir: str | Path | None = None,
    measure: bool = True,
    mask_given: bool = False,
) -> PreflightReport:
    """Check the inputs of a prediction and state its work, before anything heavy.

    Parameters
    ----------
    cases
        :class:`~voxseg.inference.inputs.CaseInput` (files: headers are read) or, for in-memory
        images, one list of Volumes (or :class:`ImageHeader`) per case.
    model
        The model's facts (:func:`voxseg.models.resolve.describe_model`).
    limits
        When to refuse.
    cache_dir
        Where the measured network speed is cached (None: measured, not stored).
    measure
        False: no time estimate (nothing imports torch).
    mask_given
        A mask input is given (it may fill a model channel named ``mask``).

    Raises
    ------
    InputImageError
        An input is unreadable or does not fit the model (channels, dimensionality, grids).
    """
    if not cases:
        raise InputImageError(None, "no input image", "give an image file, a folder or a list")
    call = cached = None
    if measure:
        from voxseg.inference.rate import call_seconds

        call, cached = call_seconds(
            model.config,
            in_channels=len(model.plan.channel_names),
            batch_size=model.tiles_per_call,
            tta=model.tta,
            precision=model.precision,
            device=model.device,
            threads=model.threads,
            cache_dir=cache_dir,
        )
    works, invalid = [], []
    for k, case in enumerate(cases):
        try:
            case_id, headers, has_mask = _headers(case, k, mask_given)
            works.append(_case_work(case_id, headers, model, has_mask, call))
        except InputImageError as exc:
            if len(cases) == 1 or (not works and len(invalid) == len(cases) - 1):
                raise  # nothing would run: refuse now
            invalid.append((getattr(case, "case_id", f"image {k}"), str(exc)))
    available = _available_memory()
    report = PreflightReport(model, tuple(works), call, bool(cached), available, limits)
    refusals = _refusals(report)
    report = PreflightReport(model, tuple(works), call, bool(cached), available, limits, refusals, tuple(invalid))
    return report


def _headers(case: Any, k: int, mask_given: bool) -> tuple[str, list[ImageHeader], bool]:
    from voxseg.inference.inputs import CaseInput

    if isinstance(case, CaseInput):
        return (
            case.case_id,
            [read_header(p, series_uid=case.series_uid) for p in case.images],
            case.mask is not None or mask_given,
        )
    headers = []
    for item in case:
        headers.append(item if isinstance(item, ImageHeader) else ImageHeader.of_volume(item, f"image {k}"))
    return str(headers[0].path) if headers else f"image {k}", headers, mask_given


def _check_case(headers: list[ImageHeader], model: ModelFacts, has_mask: bool) -> None:
    names = [model.plan.channel_names[i] for i in sorted(model.plan.channel_names)]
    mask_channel = any(n.lower() == "mask" for n in names)
    counts = [h.channels for h in headers]
    if None not in counts:
        got = sum(c for c in counts if c is not None)
        if got != len(names) and not (mask_channel and has_mask and got == len(names) - 1):
            hint = " (the 'mask' channel may come from --mask)" if mask_channel else ""
            raise InputImageError(
                headers[0].path,
                f"the model expects {len(names)} channel(s) ({', '.join(names)}), this case has {got}",
                f"give one image per channel, in this order{hint}",
            )
    need = model.config.spatial_dims
    for h in headers:
        if h.ndim < need:
            raise InputImageError(
                h.path,
                f"a {h.ndim}D image of shape {h.shape}, but the model is {need}D",
                f"give a {need}D image",
            )
        if h.shape != headers[0].shape:
            raise InputImageError(
                h.path,
                f"shape {h.shape} differs from channel 0's {headers[0].shape}",
                "all channels of a case share one voxel grid",
            )


def _case_work(case_id: str, headers: list[ImageHeader], model: ModelFacts, has_mask: bool, call) -> CaseWork:
    _check_case(headers, model, has_mask)
    first, cfg = headers[0], model.config
    target = full_target_spacing(cfg.target_spacing, first.spacing)
    shape = resampled_shape(first.shape, first.spacing, target)
    nd = cfg.spatial_dims
    slices = math.prod(shape[: len(shape) - nd])
    grid_shape = tuple(cfg.fixed_shape) if cfg.fixed_shape is not None else shape[len(shape) - nd :]
    per_grid = math.prod(len(s) for s in tile_grid(grid_shape, cfg.patch_size, model.overlap))
    tiles = per_grid * slices
    calls = math.ceil(per_grid / model.tiles_per_call) * slices * model.folds
    seconds = None if call is None else calls * call
    notes = _warnings(case_id, headers, model, shape, target)
    return CaseWork(
        case_id, first.shape, first.spacing, shape, tiles, calls, _peak_bytes(headers, model, shape), seconds, notes
    )


def _warnings(case_id, headers, model, shape, target) -> tuple[CaseNote, ...]:
    first, cfg, out = headers[0], model.config, []
    for h in headers:
        if not h.spacing_known:
            out.append(
                CaseNote(
                    "no_spacing",
                    h.path.name,
                    f"no spacing recorded; taken as 1 mm per pixel (the model works at {_mm(target)} mm; "
                    "give the spacing in a ",
                    f"{h.path.name}.json",
                    " sidecar)",
                    case=case_id,
                )
            )
    domain = model.training_domain
    nd = len(domain.spacing_min)
    spacing, extent = first.spacing[-nd:], [n * s for n, s in zip(first.shape, first.spacing, strict=True)][-nd:]
    trained = "trained at" if domain.source == "fingerprint" else "works at"
    if _outside(spacing, domain.spacing_min, domain.spacing_max, SPACING_FACTOR):
        out.append(
            CaseNote(
                "spacing",
                case_id,
                "spacing ",
                f"{_mm(first.spacing)} mm",
                f" is far from the model's ({trained} {_range(domain.spacing_min, domain.spacing_max)} mm)",
                f": resampled to {'x'.join(map(str, shape))} voxels",
            )
        )
    if _outside(extent, domain.extent_min, domain.extent_max, EXTENT_FACTOR):
        seen = "training images" if domain.source == "fingerprint" else "typical training image"
        out.append(
            CaseNote(
                "field_of_view",
                case_id,
                "field of view ",
                f"{_mm(extent, 0)} mm",
                f" is far from the model's {seen} ({_range(domain.extent_min, domain.extent_max, 0)} mm)",
            )
        )
    if cfg.fixed_shape is not None:
        fixed = tuple(cfg.fixed_shape)
        inner = shape[len(shape) - len(fixed) :]
        if any(s > f for s, f in zip(inner, fixed, strict=True)):
            box = [f * t for f, t in zip(fixed, target[len(target) - len(fixed) :], strict=True)]
            seen = math.prod(min(1.0, f / s) for s, f in zip(inner, fixed, strict=True))
            size = _mm([n * s for n, s in zip(first.shape, first.spacing, strict=True)], 0)
            out.append(
                CaseNote(
                    "fixed_input",
                    case_id,
                    f"the model has a fixed {_mm(box, 0)} mm input; this ",
                    f"{size} mm",
                    " image is centre-cropped to it",
                    f": only ~{seen:.0%} of the image (after cropping to nonzero voxels) is segmented",
                )
            )
    return tuple(out)


def _outside(values, low, high, factor: float) -> bool:
    return any(v > hi * factor or v < lo / factor for v, lo, hi in zip(values, low, high, strict=True))


def _peak_bytes(headers: list[ImageHeader], model: ModelFacts, shape: tuple[int, ...]) -> int:
    """Inputs + resampled volume + class probabilities (accumulated, weights, restored) + tiles.

    The probabilities accumulate in float16 above :data:`~voxseg.inference.tiling.FLOAT16_ABOVE_BYTES`, as the
    Predictor does; with more than two classes and no probabilities kept, the classes go back to the
    input grid one at a time (a running argmax: two float32 volumes and the labels), not all at once.
    """
    channels = len(model.plan.channel_names)
    classes = max(2, model.plan.num_classes)
    original = math.prod(headers[0].shape)
    resampled = math.prod(shape)
    patch = math.prod(model.config.patch_size) * model.tiles_per_call
    width = int(model.config.network.kwargs.get("filters", model.config.network.kwargs.get("channels", [32]))[0])
    acc = 2 if classes * resampled * _F32 > FLOAT16_ABOVE_BYTES else _F32
    restore = classes * original * acc if classes <= 2 or model.probabilities else original * (2 * _F32 + 1)
    volumes = _F32 * (channels * original + channels * resampled + resampled) + acc * classes * resampled + restore
    tiles = patch * (channels + classes + _ACTIVATION_FACTOR * width) * (2 if model.tta else 1)
    return int(volumes + _F32 * tiles)


def _refusals(report: PreflightReport) -> tuple[str, ...]:
    out, limits = [], report.limits
    worst = max(report.cases, key=lambda c: c.seconds or 0.0)
    if limits.max_minutes is not None and worst.seconds is not None and worst.seconds > 60 * limits.max_minutes:
        out.append(
            f"{worst.case_id}: {worst.tiles} tiles after resampling to {'x'.join(map(str, worst.resampled_shape))} "
            f"voxels would take about {_duration(worst.seconds)} on this machine (limit {limits.max_minutes:g} min); "
            f"check the image's spacing and the model, or {limits.force_hint} ({limits.time_limit_hint})"
        )
    budget = report.memory_available if limits.max_memory_gb is None else int(limits.max_memory_gb * 1e9)
    big = max(report.cases, key=lambda c: c.peak_bytes)
    if budget is not None and big.peak_bytes > budget:
        out.append(
            f"{big.case_id}: prediction needs ~{_gb(big.peak_bytes)} of memory, "
            f"{_gb(budget)} {'available' if limits.max_memory_gb is None else 'allowed'}; "
            f"use a smaller image or another machine, or {limits.force_hint} ({limits.memory_limit_hint})"
        )
    return tuple(out)


def _available_memory() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


# ---- formatting --------------------------------------------------------------------------------
def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{max(1, round(n / 1e6))} MB"


def _mm(values: Sequence[float], digits: int = 3) -> str:
    return "x".join(f"{round(v, digits):g}" for v in values)


def _range(low: Sequence[float], high: Sequence[float], digits: int = 3) -> str:
    return _mm(low, digits) if tuple(low) == tuple(high) else f"{_mm(low, digits)} to {_mm(high, digits)}"
