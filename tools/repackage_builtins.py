"""Add ONNX networks and the golden test to the built-in model zips, without retraining.

For each zip of ``src/voxseg/bundle/models/`` listed in ``src/voxseg/bundle/index.json``: open it
(every sha256 checked); keep its weights and metrics byte for byte; export every fold's weights to
``model_fold_K.onnx``; build the golden test from the model's first fresh phantom case with
foreground (``metrics.fresh_phantoms``: seed 1000, never seen in training), cropped to one network
patch; record provenance and intended use (the card's Provenance section is rewritten); rewrite the
zip and update its index entry (sha256, size). An interactive model's golden test is the six
extreme points of the case's largest object (torch backends only: onnxruntime does not run prompts).

Usage::

    python tools/repackage_builtins.py [--model NAME@VERSION] [--check] [--provenance-only]

``--check`` runs ``voxseg bundle test`` on each repackaged zip afterwards. ``--provenance-only``
keeps every file but ``bundle.json`` and the card byte for byte and records the training data's
provenance: the training phantoms are regenerated exactly as ``tools/train_builtin_models.py``
made them (same recipe, seed 0), fingerprinted as ``voxseg plan`` does, and the fingerprint's
sha256 and the training domain (spacing and size ranges, used by the pre-flight check) are written. Needs the ``[onnx]``
extra (``onnx``, ``onnxruntime``) and torch.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
INDEX = REPO / "src" / "voxseg" / "bundle" / "index.json"
MAX_ZIP_BYTES = 10 * 1024 * 1024
INTENDED_USE = (
    "demonstration and tests of voxseg only: trained on synthetic phantoms, not on real data; "
    "not for research results or clinical decisions"
)  # tests/test_builtin_models.py: "well under 10 MB"

log = logging.getLogger("repackage_builtins")


def fresh_case(manifest):
    """(images, label, description) of the first fresh phantom case with foreground."""
    from voxseg.dataset.phantoms import generate_case

    fresh = manifest.metrics["fresh_phantoms"]
    for row in fresh["per_case"]:
        case = generate_case(
            fresh["phantom"], row["index"], seed=fresh["seed"], size=fresh["size"], options=fresh["options"]
        )
        label = np.asarray(case.label.array)
        if np.any(label > 0):
            return list(case.images), label, f"phantom {fresh['phantom']} case {row['index']} (seed {fresh['seed']})"
    raise SystemExit(f"{manifest.reference}: no fresh phantom case with foreground")


def repackage(zip_path: Path) -> Path:
    from voxseg.bundle import open_bundle
    from voxseg.bundle.attach import attach_golden, attach_onnx
    from voxseg.bundle.export import write_bundle

    bundle = open_bundle(zip_path)
    m = bundle.manifest
    keep = {rel: bundle.read(rel) for rel in m.files if not rel.startswith("golden/") and not rel.endswith(".onnx")}
    weights = {f: bundle.read(m.weights_file(f)) for f in m.folds}
    files: dict[str, bytes | Path] = dict(keep)
    files.update(attach_onnx(m, weights))
    images, label, where = fresh_case(m)
    m, golden = attach_golden(m, weights, images, label, source=where)
    files.update(golden)
    import dataclasses

    if not m.intended_use:
        m = dataclasses.replace(m, intended_use=INTENDED_USE)
    if not m.provenance:
        from voxseg.bundle.attach import provenance

        fresh = m.metrics.get("fresh_phantoms", {})
        data = f"voxseg phantom {fresh.get('phantom')} (seed 0, tools/train_builtin_models.py)"
        m = dataclasses.replace(m, provenance=provenance(m, training_data=data))
    from voxseg.bundle.card import replace_provenance
    from voxseg.bundle.load import CARD_NAME

    files[CARD_NAME] = replace_provenance(bundle.card, m).encode("utf-8")
    write_bundle(m, files, zip_path)
    size = zip_path.stat().st_size
    if size >= MAX_ZIP_BYTES:
        raise SystemExit(f"{zip_path}: {size} bytes, over the {MAX_ZIP_BYTES} byte limit of built-in models")
    return zip_path


def training_provenance(name: str, version: str, scratch: Path) -> tuple[str, object]:
    """(sha256 of the training data's fingerprint.json, TrainingDomain) of a built-in, rebuilt from its recipe."""
    sys.path.insert(0, str(REPO / "tools"))
    from train_builtin_models import RECIPES, TRAIN_SEED, make_data

    from voxseg.bundle._util import sha256_file
    from voxseg.fingerprint import compute_fingerprint
    from voxseg.fingerprint.domain import TrainingDomain

    recipe = next((r for r in RECIPES.values() if (r.name, r.version) == (name, version)), None)
    if recipe is None:
        raise SystemExit(f"{name}@{version}: no recipe in tools/train_builtin_models.py")
    data = make_data(recipe, scratch)
    fingerprint = compute_fingerprint(data, seed=TRAIN_SEED)
    path = scratch / "fingerprints" / f"{recipe.work_name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    fingerprint.save(path)
    return sha256_file(path), TrainingDomain.from_fingerprint(fingerprint)


def record_provenance(zip_path: Path, name: str, version: str, scratch: Path) -> Path:
    """Rewrite ``bundle.json`` and the card's Provenance section only (see ``--provenance-only``)."""
    import dataclasses

    from voxseg.bundle import open_bundle
    from voxseg.bundle.card import replace_provenance
    from voxseg.bundle.export import write_bundle
    from voxseg.bundle.load import CARD_NAME

    bundle = open_bundle(zip_path)
    m = bundle.manifest
    files: dict[str, bytes | Path] = {rel: bundle.read(rel) for rel in m.files}
    digest, domain = training_provenance(name, version, scratch)
    m = dataclasses.replace(
        m, training_domain=domain, provenance={**dict(m.provenance), "data_fingerprint_sha256": digest}
    )
    files[CARD_NAME] = replace_provenance(bundle.card, m).encode("utf-8")
    write_bundle(m, files, zip_path)
    return zip_path


def update_index(name: str, version: str, zip_path: Path) -> None:
    from voxseg.bundle import open_bundle
    from voxseg.bundle._util import sha256_file
    from voxseg.io import write_json_atomic

    index = json.loads(INDEX.read_text())
    entry = index["models"][name]["versions"][version]
    entry["sha256"], entry["size"] = sha256_file(zip_path), zip_path.stat().st_size
    m = open_bundle(zip_path).manifest
    entry["license"], entry["intended_use"] = m.license, m.intended_use
    write_json_atomic(INDEX, index)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="all", help="NAME@VERSION or all")
    parser.add_argument("--check", action="store_true", help="run the golden test on each zip afterwards")
    parser.add_argument(
        "--provenance-only", action="store_true", help="record the training data's fingerprint and domain only"
    )
    parser.add_argument("--scratch", default="/tmp/voxseg-builtin-provenance", help="where training phantoms go")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    index = json.loads(INDEX.read_text())
    for name, model in index["models"].items():
        for version, entry in model["versions"].items():
            if args.model not in ("all", f"{name}@{version}"):
                continue
            zip_path = INDEX.parent / entry["urls"][0]
            t0 = time.perf_counter()
            if args.provenance_only:
                record_provenance(zip_path, name, version, Path(args.scratch))
            else:
                repackage(zip_path)
            update_index(name, version, zip_path)
            log.info("%s@%s: %d bytes in %.1f s", name, version, zip_path.stat().st_size, time.perf_counter() - t0)
            if args.check:
                from voxseg.bundle import open_bundle
                from voxseg.bundle.golden import run_golden

                bundle = open_bundle(zip_path)
                for result in run_golden(bundle):
                    log.info("  %s", result.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
