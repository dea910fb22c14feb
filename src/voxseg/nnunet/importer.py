"""``import_nnunet``: an nnU-Net v2 trained-model folder (or export zip) -> a voxseg bundle."""

from __future__ import annotations

import logging
import platform
import re
from collections.abc import Sequence
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from voxseg.bundle._util import sha256_bytes
from voxseg.bundle.card import make_card
from voxseg.bundle.export import write_bundle
from voxseg.bundle.load import CARD_NAME
from voxseg.bundle.manifest import BundleManifest
from voxseg.errors import BundleError, ConfigError
from voxseg.nnunet.checkpoint import NnunetCheckpoint, check_trainer, load_checkpoint
from voxseg.nnunet.model_folder import ModelFolder, opened_model
from voxseg.nnunet.plans import translate_plans
from voxseg.nnunet.plugin import NNUNET_EXACT
from voxseg.nnunet.postprocessing import read_postprocessing_pkl, translate_postprocessing
from voxseg.planning import Plan
from voxseg.postprocessing import PostprocessingSpec

__all__ = ["import_nnunet", "convert_weights"]

log = logging.getLogger(__name__)

POSTPROCESSING_CHOICES = ("auto", "none")


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("voxseg", "torch", "monai", "safetensors", "dynamic-network-architectures"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    out["python"] = platform.python_version()
    return out


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
    return (slug or "nnunet-model")[:64]


def convert_weights(plan: Plan, checkpoint: NnunetCheckpoint, *, where: str = "") -> bytes:
    """The checkpoint's weights as safetensors bytes for the plan's network (checked by loading them)."""
    from safetensors.torch import save

    from voxseg.nets import NetworkSpec
    from voxseg.nnunet.network import Transposed, build_raw, dedupe

    spec = NetworkSpec.from_json(plan.configuration().network)
    kwargs = {k: _tuples(v) for k, v in spec.kwargs.items()}
    raw = build_raw(spec.name, **kwargs)
    try:
        raw.load_state_dict(checkpoint.weights, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])[:300]
        raise BundleError(f"{where}: the weights do not fit the network of plans.json ({detail})") from None
    perm = kwargs.get("transpose")
    net = Transposed(dedupe(raw), perm) if perm is not None else dedupe(raw)
    tensors = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    data = save(tensors, metadata={"source": "nnU-Net v2"})
    if data[:1] == b"\x80":  # header length 0x..80: voxseg.bundle's pickle sniffing would refuse it; pad
        data = save(tensors, metadata={"source": "nnU-Net v2", "pad": "-" * 8})
    return data


def _configuration(model: ModelFolder, checkpoints: dict[int, NnunetCheckpoint]) -> str:
    seen = {c.configuration for c in checkpoints.values() if c.configuration}
    if model.configuration:
        seen.add(model.configuration)
    if len(seen) > 1:
        raise BundleError(f"{model.root}: folds disagree on the configuration ({', '.join(sorted(seen))})")
    if not seen:
        raise ConfigError(f"{model.root}: cannot tell the configuration (folder name or checkpoint); pass one")
    return seen.pop()


def _mirror_axes(checkpoints: dict[int, NnunetCheckpoint]) -> tuple[int, ...] | None:
    axes = {c.mirror_axes for c in checkpoints.values()}
    if len(axes) > 1:
        raise BundleError(f"folds disagree on inference_allowed_mirroring_axes ({sorted(map(str, axes))})")
    return axes.pop()


def _postprocessing(model: ModelFolder, plan: Plan, choice: str) -> PostprocessingSpec:
    if choice not in POSTPROCESSING_CHOICES:
        raise ConfigError(f"postprocessing must be one of {', '.join(POSTPROCESSING_CHOICES)}, got {choice!r}")
    if choice == "none" or model.postprocessing is None:
        return PostprocessingSpec()
    functions, kwargs = read_postprocessing_pkl(model.postprocessing)
    foreground = tuple(v for v in plan.class_values if v != 0)
    ndim = plan.configuration().spatial_dims if plan.data_ndim == 2 else 3
    return translate_postprocessing(
        functions, kwargs, foreground=foreground, ndim=ndim, where=str(model.postprocessing)
    )


def import_nnunet(
    source: str | Path,
    out: str | Path,
    *,
    name: str | None = None,
    version: str = "v1",
    folds: Sequence[int] | None = None,
    checkpoint: str = "final",
    configuration: str | None = None,
    postprocessing: str = "auto",
    description: str = "",
    license: str = "",
    authors: Sequence[str] = (),
    onnx: bool = False,
) -> Path:
    """Convert an nnU-Net v2 trained model into a voxseg bundle (``.zip`` or folder).

    Parameters
    ----------
    source
        The ``Trainer__Plans__configuration`` folder, a folder above it holding one model, or the
        zip written by ``nnUNetv2_export_model_to_zip``.
    out
        ``NAME.zip`` or a new folder (see :func:`voxseg.bundle.export.write_bundle`).
    name, version
        Bundle name (default: the dataset name) and version.
    folds
        Folds to include (default: every ``fold_K`` with the chosen checkpoint).
    checkpoint
        ``"final"`` (``checkpoint_final.pth``) or ``"best"``.
    configuration
        Needed only when ``source`` holds several models (an export zip of several configurations).
    postprocessing
        ``"auto"``: translate ``postprocessing.pkl`` when present (unknown content is refused);
        ``"none"``: ignore it.
    description, license, authors
        Written into ``bundle.json`` and the model card.
    onnx
        Also write ``model_fold_K.onnx`` (needs the ``[onnx]`` extra), so that the torch-free
        backends (onnxruntime, OpenVINO) can run the imported model.

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    BundleError
        Missing files or folds, unsupported architecture/trainer/normalization, a checkpoint or
        postprocessing file holding pickled objects outside the allow-lists.
    """
    with opened_model(source, configuration=configuration, folds=folds, checkpoint=checkpoint) as model:
        if model.trainer:
            check_trainer(model.trainer, str(model.root))
        loaded = {fold: load_checkpoint(path) for fold, path in sorted(model.checkpoints.items())}
        cfg = _configuration(model, loaded)
        plan = translate_plans(model.plans, model.dataset, cfg, mirror_axes=_mirror_axes(loaded))
        files: dict[str, bytes | Path] = {
            BundleManifest.weights_file(fold): convert_weights(plan, ck, where=str(model.checkpoints[fold]))
            for fold, ck in loaded.items()
        }
        post = _postprocessing(model, plan, postprocessing)
        trainer = next(iter(loaded.values())).trainer
        manifest = BundleManifest(
            name=name or _slug(plan.dataset_name),
            version=version,
            task="instances" if post.makes_instances else "semantic",
            plan=plan,
            configuration=cfg,
            folds=tuple(sorted(loaded)),
            files={rel: sha256_bytes(data) for rel, data in files.items() if isinstance(data, bytes)},
            description=description or f"imported from nnU-Net v2 ({trainer}__{model.plans_name}__{cfg})",
            license=license or str(model.dataset.get("licence") or model.dataset.get("license") or ""),
            authors=tuple(authors),
            modality=", ".join(plan.channel_names[i] for i in sorted(plan.channel_names)),
            postprocessing=post,
            metrics={},
            versions=_versions(),
            created=datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
            arithmetic=NNUNET_EXACT,
        )
        notes = _card_notes(model, trainer, cfg)
        files[CARD_NAME] = make_card(manifest, notes=notes, dataset=model.dataset).encode("utf-8")
        if onnx:  # for the torch-free backends (voxseg predict --backend onnxruntime|openvino|auto)
            from voxseg.bundle.attach import attach_onnx

            weights = {f: files[BundleManifest.weights_file(f)] for f in manifest.folds}
            files.update(attach_onnx(manifest, weights))
        path = write_bundle(manifest, files, out)
    log.info("imported nnU-Net %s (%s, folds %s) to %s", model.root.name, cfg, list(manifest.folds), path)
    return path


def _card_notes(model: ModelFolder, trainer: str, cfg: str) -> str:
    lines: list[Any] = [
        f"Imported with `voxseg import-nnunet` from the nnU-Net v2 model `{model.root.name}` "
        f"(trainer {trainer}, plans {model.plans_name or '?'}, configuration {cfg}).",
        "Preprocessing, mirroring axes and postprocessing were translated from plans.json, the checkpoints and "
        "postprocessing.pkl; see docs/nnunet.md for what is exact and what differs.",
    ]
    return "\n\n".join(lines)
