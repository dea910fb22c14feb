"""Fabricated fingerprints: planning rules are tested without reading any image."""

from __future__ import annotations

from collections.abc import Sequence

from voxseg.fingerprint import CaseFingerprint, ChannelStats, Fingerprint, modality_of


def fake_fingerprint(
    spacings: Sequence[Sequence[float]],
    shapes: Sequence[Sequence[int]],
    *,
    crop_shapes: Sequence[Sequence[int]] | None = None,
    channels: dict[int, str] | None = None,
    labels: dict[str, int] | None = None,
    stats: ChannelStats | None = None,
) -> Fingerprint:
    channels = channels or {0: "MRI"}
    labels = labels or {"background": 0, "tumor": 1}
    crop_shapes = crop_shapes or shapes
    stats = stats or ChannelStats(
        mean=50.0, std=10.0, min=0.0, max=100.0, median=50.0, percentile_00_5=5.0, percentile_99_5=95.0, count=1000
    )
    cases = tuple(
        CaseFingerprint(f"c{i:03d}", tuple(sp), tuple(sh), tuple(cr), {0: 100, 1: 10}, (stats,) * len(channels))
        for i, (sp, sh, cr) in enumerate(zip(spacings, shapes, crop_shapes, strict=True))
    )
    return Fingerprint(
        dataset_name="fake",
        channel_names=channels,
        labels=labels,
        modalities=tuple(modality_of(channels[c]) for c in sorted(channels)),
        cases=cases,
        intensity=(stats,) * len(channels),
    )


def uniform(spacing: Sequence[float], shape: Sequence[int], n: int = 10, **kw) -> Fingerprint:
    return fake_fingerprint([spacing] * n, [shape] * n, **kw)
