"""Phantom registry and the writer that turns a generator into an nnU-Net v2 dataset.

A phantom is a :class:`PhantomSpec`: metadata (channels, labels, default size and spacing,
documented options) plus ``generate(rng, shape, options) -> PhantomCase``. Case ``i`` of seed ``s``
is generated from ``numpy.random.default_rng([s, i])``, so it is the same whatever ``--cases``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voxseg.dataset.layout import DatasetSpec, DatasetWriter
from voxseg.errors import ConfigError
from voxseg.io import Volume
from voxseg.registry import Registry

__all__ = ["PhantomCase", "PhantomSpec", "PHANTOMS", "make_phantom", "generate_case", "parse_options"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhantomCase:
    """One generated case: channel images (one geometry) and the label image."""

    images: list[Volume]
    label: Volume
    info: dict[str, Any] = field(default_factory=dict)  # e.g. {"objects": 3}; written nowhere, for tests


Generator = Callable[[np.random.Generator, tuple[int, ...], Mapping[str, Any]], PhantomCase]


@dataclass(frozen=True)
class PhantomSpec:
    """A registered phantom dataset.

    ``options`` maps each accepted option name to ``(default, description)``; values given on
    the command line as strings are converted to the default's type.
    """

    name: str
    description: str
    channel_names: dict[int, str]
    labels: dict[str, int]
    default_shape: tuple[int, ...]
    default_cases: int
    generate: Generator
    options: dict[str, tuple[Any, str]] = field(default_factory=dict)

    @property
    def ndim(self) -> int:
        return len(self.default_shape)


PHANTOMS: Registry[PhantomSpec] = Registry("phantom")


def parse_options(spec: PhantomSpec, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Merge user options over the defaults, converting strings to the default's type."""
    out = {k: default for k, (default, _) in spec.options.items()}
    for key, value in (options or {}).items():
        if key not in spec.options:
            known = ", ".join(sorted(spec.options)) or "none"
            raise ConfigError(f"phantom {spec.name!r} has no option {key!r} (options: {known})")
        default = spec.options[key][0]
        try:
            if isinstance(value, str) and isinstance(default, bool):
                out[key] = value.strip().lower() in ("1", "true", "yes", "on")
            elif isinstance(value, str) and default is not None:
                out[key] = type(default)(value)
            else:
                out[key] = value
        except ValueError:
            raise ConfigError(f"phantom option {key}={value!r}: expected a {type(default).__name__}") from None
    return out


def _shape(spec: PhantomSpec, size: int | Sequence[int] | None) -> tuple[int, ...]:
    if size is None:
        return spec.default_shape
    shape = (int(size),) * spec.ndim if isinstance(size, (int, np.integer)) else tuple(int(s) for s in size)
    if len(shape) != spec.ndim:
        raise ConfigError(
            f"phantom {spec.name!r} is {spec.ndim}D; --size needs 1 or {spec.ndim} values, got {len(shape)}"
        )
    if min(shape) < 16:
        raise ConfigError(f"phantom size {shape} is too small (at least 16 per axis)")
    return shape


def generate_case(
    name: str,
    index: int,
    *,
    seed: int = 0,
    size: int | Sequence[int] | None = None,
    options: Mapping[str, Any] | None = None,
) -> PhantomCase:
    """Generate case ``index`` of phantom ``name`` in memory (deterministic for seed and index)."""
    spec = PHANTOMS.get(name)
    rng = np.random.default_rng([int(seed), int(index)])
    return spec.generate(rng, _shape(spec, size), parse_options(spec, options))


def make_phantom(
    name: str,
    out_dir: str | Path,
    *,
    cases: int | None = None,
    seed: int = 0,
    size: int | Sequence[int] | None = None,
    options: Mapping[str, Any] | None = None,
    file_ending: str = ".nii.gz",
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write phantom ``name`` as an nnU-Net v2 dataset in ``out_dir``; return ``out_dir``.

    Parameters
    ----------
    name
        A registered phantom (``voxseg.PHANTOMS.names()``).
    cases
        Number of training cases (default: the phantom's default).
    seed
        Seed; case ``i`` depends only on ``(seed, i)``, size and options.
    size
        One int per axis, or one for all axes; default the phantom's default shape.
    options
        Phantom-specific options (see ``PHANTOMS.get(name).options``).
    progress
        Called as ``progress(done, total)`` after each case.
    """
    spec = PHANTOMS.get(name)
    n = spec.default_cases if cases is None else int(cases)
    if n < 1:
        raise ConfigError(f"--cases must be at least 1, got {n}")
    opts = parse_options(spec, options)
    shape = _shape(spec, size)
    labels = dict(spec.labels)
    if opts.get("annotated_slices"):
        labels["ignore"] = max(labels.values()) + 1
    ds_spec = DatasetSpec(
        name=f"phantom_{name}",
        channel_names=dict(spec.channel_names),
        labels=labels,
        file_ending=file_ending,
        description=f"voxseg synthetic phantom '{name}' (seed {seed}): {spec.description}",
        extra={"voxseg_phantom": {"name": name, "seed": int(seed), "shape": list(shape), "options": opts}},
    )
    out = Path(out_dir)
    first = spec.generate(np.random.default_rng([int(seed), 0]), shape, opts)  # bad options fail before any write
    with DatasetWriter(out, ds_spec) as writer:
        for i in range(n):
            case = first if i == 0 else spec.generate(np.random.default_rng([int(seed), i]), shape, opts)
            writer.add_case(f"{name.replace('-', '_')}_{i:03d}", case.images, case.label)
            if progress is not None:
                progress(i + 1, n)
    log.info("wrote %d %s cases to %s", n, name, out)
    return out
