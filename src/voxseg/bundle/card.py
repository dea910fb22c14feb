"""The model card (``README.md`` of a bundle), generated from the manifest: what the model was
trained on, its cross-validation figures, intended use and limitations. No torch here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from voxseg.bundle.manifest import BundleManifest
from voxseg.workdir.quality import partial_scope

__all__ = ["make_card", "cv_table", "provenance_lines", "replace_provenance"]

_DEFAULT_LIMITATIONS = (
    "Cross-validation figures are measured on the training data's own distribution; expect lower "
    "accuracy on images from other scanners, protocols or species. Not a medical device: not for "
    "clinical decisions."
)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "–" if value is None else str(value)


def _summary(metrics: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ``{per_class, foreground_mean}`` part of a cross-validation summary, wherever it sits."""
    if "per_class" in metrics or "foreground_mean" in metrics:
        return metrics
    inner = metrics.get("summary")
    return inner if isinstance(inner, Mapping) else {}


def cv_table(manifest: BundleManifest) -> list[str]:
    """Markdown rows of the cross-validation figures per class (mean ± std), or a sentence."""
    summary = _summary(manifest.metrics)
    per_class = summary.get("per_class")
    if not isinstance(per_class, Mapping) or not per_class:
        return ["No cross-validation figures were recorded for this model."]
    names = {str(v): k for k, v in manifest.plan.labels.items()}
    metric_names = sorted({m for v in per_class.values() if isinstance(v, Mapping) for m in v})
    rows = ["| class | " + " | ".join(metric_names) + " |", "|---" * (len(metric_names) + 1) + "|"]
    for label, values in per_class.items():
        cells = []
        for m in metric_names:
            stat = values.get(m) if isinstance(values, Mapping) else None
            if isinstance(stat, Mapping):
                mean, std = stat.get("mean"), stat.get("std")
                cells.append(_fmt(mean) + (f" ± {std:.3f}" if isinstance(std, float) else ""))
            else:
                cells.append(_fmt(stat))
        rows.append(f"| {names.get(str(label), label)} ({label}) | " + " | ".join(cells) + " |")
    overall = summary.get("foreground_mean")
    if isinstance(overall, Mapping) and overall:
        rows.append("")
        rows.append("Mean over foreground classes: " + ", ".join(f"{k} {_fmt(v)}" for k, v in overall.items()) + ".")
    scope = partial_scope(manifest.metrics)
    if scope:
        rows.append("")
        rows.append(
            f"Scored on {scope} only ({manifest.metrics.get('cases', '?')} cases): "
            "an estimate, not a cross-validation of every case."
        )
    return rows


def make_card(manifest: BundleManifest, *, notes: str | None = None, dataset: Mapping[str, Any] | None = None) -> str:
    """The model card text.

    Parameters
    ----------
    notes
        Free text from the author (intended use, known failure modes); printed under its own heading.
    dataset
        The work folder's ``dataset.json`` (name, case count, description), when known.
    """
    m, plan, cfg = manifest, manifest.plan, manifest.config
    dataset = dataset or {}
    channels = ", ".join(
        f"{plan.channel_names[i]} ({n.scheme})"
        for i, n in zip(sorted(plan.channel_names), plan.normalization, strict=True)
    )
    labels = ", ".join(f"{k} = {v}" for k, v in plan.labels.items())
    cases = dataset.get("numTraining")
    lines = [
        f"# {m.name} {m.version}",
        "",
        m.description or "A voxseg segmentation model.",
        "",
        "## Model",
        "",
        f"- Task: {m.task}" + (f", modality {m.modality}" if m.modality else ""),
        f"- Input channels: {channels}",
        f"- Labels: {labels}",
        f"- Configuration `{m.configuration}`: {cfg.spatial_dims}D network `{cfg.network.name}`, "
        f"target spacing {list(cfg.target_spacing)}, patch {list(cfg.patch_size)}"
        + (f", fixed input shape {list(cfg.fixed_shape)}" if cfg.fixed_shape else ""),
        f"- Folds in the ensemble: {list(m.folds)} (predictions averaged)",
        f"- Postprocessing: {_postprocessing(m)}",
        "",
        "## Training data",
        "",
        f"Dataset `{plan.dataset_name}`"
        + (f", {cases} training cases" if cases is not None else "")
        + (f": {dataset['description']}" if dataset.get("description") else "."),
        "",
        "## Cross-validation",
        "",
        *cv_table(m),
        "",
        "## Intended use",
        "",
        f"Automatic segmentation of images like the training data ({channels}), with `voxseg predict -m "
        f"{m.name}` or `voxseg.models.load_predictor({m.name!r})`.",
        "",
    ]
    if notes:
        lines += ["## Notes", "", notes.strip(), ""]
    lines += ["## Limitations", "", _DEFAULT_LIMITATIONS, ""]
    lines += provenance_lines(m)
    return "\n".join(lines)


def provenance_lines(m: BundleManifest) -> list[str]:
    """The card's "Provenance" section: licence, intended use, authors, versions, training data
    fingerprint, plan, parent model, golden test."""
    p = m.provenance
    summary = _summary(m.metrics).get("foreground_mean")
    cv = ", ".join(f"{k} {_fmt(v)}" for k, v in summary.items()) if isinstance(summary, Mapping) else ""
    if not cv and isinstance(m.metrics.get("mean_dice"), float):
        cv = f"dice {m.metrics['mean_dice']:.3f}"
    lines = [
        "## Provenance",
        "",
        f"- License: {m.license or 'not stated'}",
        f"- Intended use: {m.intended_use or 'not stated'}",
        f"- Authors: {', '.join(m.authors) or 'not stated'}",
        f"- Created: {m.created or 'unknown'} with " + ", ".join(f"{k} {v}" for k, v in m.versions.items()),
    ]
    if p:
        data = p.get("training_data") or "not recorded"
        lines.append(
            f"- Training data: {data}; fingerprint sha256 {p.get('data_fingerprint_sha256') or 'not recorded'}"
        )
        lines.append(f"- Plan sha256: {p.get('plan_sha256') or 'not recorded'}")
        lines.append(f"- Fine-tuned from: {p.get('parent') or 'none (trained from scratch)'}")
        lines += _finetune_lines(p.get("finetune"))
    if cv:
        lines.append(f"- Cross-validation (mean over foreground classes): {cv}")
    if m.golden is not None:
        lines.append(
            f"- Golden test: {m.golden.get('source', 'a recorded case')}; run it with `voxseg bundle test {m.name}`"
        )
    lines += ["- Weights: safetensors (no pickles); every file's sha256 is in `bundle.json`.", ""]
    return lines


def _finetune_lines(record: Any) -> list[str]:
    """The fine-tuning record (``provenance.finetune``): cases seen and held-out validation."""
    if not isinstance(record, Mapping):
        return []
    cases = record.get("cases") or {}
    val = record.get("validation") or {}
    if isinstance(val.get("before"), (int, float)) and isinstance(val.get("after"), (int, float)):
        held = ", ".join(val.get("held_out", []))
        dice = f"held-out Dice {val['before']:.3f} before, {val['after']:.3f} after ({held})"
    else:
        dice = str(val.get("note") or "no held-out case")
    return [f"- Fine-tuning: {len(cases)} case(s) (sha256 in bundle.json), {record.get('minutes', '?')} min; {dice}"]


def replace_provenance(card: str, m: BundleManifest) -> str:
    """``card`` with its "Provenance" section (to the end) replaced by :func:`provenance_lines`."""
    head = card.split("\n## Provenance", 1)[0].rstrip("\n")
    return head + "\n\n" + "\n".join(provenance_lines(m))


def _postprocessing(m: BundleManifest) -> str:
    spec = m.postprocessing
    if spec.is_identity:
        return "none"
    parts = [f"class {label}: " + ", ".join(_step(s) for s in steps) for label, steps in spec.classes]
    if spec.final:
        parts.append(("then " if parts else "") + ", ".join(_step(s) for s in spec.final))
    return "; ".join(parts)


def _step(step) -> str:
    params = ", ".join(f"{k}={v}" for k, v in step.params if v is not None)
    return f"{step.op}({params})" if params else step.op
