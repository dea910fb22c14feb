"""Fixtures: a tiny trained work folder (real plan, real training loop), its bundle, and a real
HTTP server on 127.0.0.1 serving files from a folder."""

from __future__ import annotations

import http.server
import json
import threading
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from voxseg.io import Volume, write_json_atomic
from voxseg.planning import ConfigurationPlan, Normalization, Plan
from voxseg.postprocessing import PostprocessingSpec, Step
from voxseg.workdir.layout import WorkDir

NETWORK = {
    "name": "unet",
    "kwargs": {
        "spatial_dims": 3,
        "in_channels": 1,
        "out_channels": 2,
        "channels": [4, 8],
        "strides": [2],
        "num_res_units": 0,
    },
}


def tiny_plan() -> Plan:
    cfg = ConfigurationPlan("3d", (1.0, 1.0, 1.0), (16, 16, 16), 2, NETWORK, mirror_axes=(0, 1, 2))
    return Plan(
        dataset_name="Dataset001_tiny",
        channel_names={0: "CT"},
        labels={"background": 0, "nodule": 1},
        normalization=(Normalization("zscore"),),
        configurations={"3d": cfg},
        default_configuration="3d",
    )


def _cases(root: Path, n: int = 2) -> list[str]:
    from voxseg.preprocessing import preprocess_case
    from voxseg.preprocessing.store import write_preprocessed

    rng = np.random.default_rng(0)
    prefixes = []
    for i in range(n):
        lab = np.zeros((16, 20, 20), np.uint8)
        c = rng.integers(6, 12, 3)
        lab[c[0] - 3 : c[0] + 3, c[1] - 4 : c[1] + 4, c[2] - 4 : c[2] + 4] = 1
        img = Volume(rng.normal(0, 1, lab.shape).astype(np.float32) + 2 * lab + 5, (1, 1, 1))
        case = preprocess_case(
            [img], Volume(lab, (1, 1, 1)), target_spacing=(1, 1, 1), normalization=[Normalization("zscore")]
        )
        write_preprocessed(root / f"case_{i}", case)
        prefixes.append(str(root / f"case_{i}"))
    return prefixes


def _fake_run(work: WorkDir, fold: int, net) -> None:
    """A finished run as ``voxseg train`` leaves it, with freshly initialised weights (fast)."""
    from safetensors.torch import save_file

    from voxseg.bundle._util import sha256_file

    ckpt = work.checkpoint_dir("3d", fold)
    ckpt.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(ckpt / "model.safetensors"))
    write_json_atomic(ckpt / "state.json", {"sha256": {"model.safetensors": sha256_file(ckpt / "model.safetensors")}})
    write_json_atomic(work.run_dir("3d", fold) / "run.json", {"status": "finished", "fold": fold})


def make_work(root: Path, folds=(0, 1), *, trained: bool = False) -> Path:
    """A work folder with a plan, two folds, a chosen postprocessing and a CV summary.

    ``trained=True`` runs the real training loop (a few seconds); otherwise the folds hold
    freshly initialised weights written the way a checkpoint is.
    """
    import torch

    from voxseg.nets import build_network

    work = WorkDir(root)
    plan = tiny_plan()
    plan.save(work.plan_path)
    write_json_atomic(work.dataset_path, {"name": "tiny", "numTraining": 2, "description": "two spheres"})
    for fold in folds:
        torch.manual_seed(fold)
        net = build_network(plan.configuration("3d").network)
        if trained:
            from voxseg.training.config import TrainConfig
            from voxseg.training.loop import train

            cases = _cases(work.preprocessed_dir("3d"))
            config = TrainConfig(epochs=1, iterations_per_epoch=1, batch_size=2, augmentation="none", seed=1)
            train(work.run_dir("3d", fold), net, cases, patch_size=(16, 16, 16), config=config, meta={"fold": fold})
        else:
            _fake_run(work, fold, net)
    PostprocessingSpec(final=(Step.of("instances", min_size=5),)).save(work.postprocessing_path("3d"))
    summary = {
        "per_class": {"1": {"dice": {"mean": 0.8125, "std": 0.05, "n": 2, "n_infinite": 0}}},
        "foreground_mean": {"dice": 0.8125},
    }
    write_json_atomic(work.crossval_dir("3d") / "summary.json", summary)
    return root


@pytest.fixture(scope="session")
def work_folder(tmp_path_factory) -> Path:
    return make_work(tmp_path_factory.mktemp("work") / "WORK")


@pytest.fixture(scope="session")
def bundle_zip(work_folder, tmp_path_factory) -> Path:
    from voxseg.bundle import export_bundle

    out = tmp_path_factory.mktemp("bundles") / "tiny-v1.zip"
    return export_bundle(work_folder, out, name="tiny-nodules", version="v1", description="tiny test model")


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves files, honouring ``Range: bytes=N-`` (206); ``/drop/NAME`` announces NAME's full size
    but sends half and hangs up (a range request there is served in full); ``/slow/NAME`` sends
    NAME in ten pieces over a second. Every request's path and
    ``Range`` header are appended to the server's ``requests`` list."""

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        self.server.requests.append((self.path, self.headers.get("Range")))
        if self.path.startswith("/slow/"):  # the whole file, in 10 pieces 0.1 s apart
            self._slow(Path(self.directory) / self.path[len("/slow/") :])
            return
        drop = self.path.startswith("/drop/")
        name = self.path[len("/drop/") :] if drop else self.path.lstrip("/")
        rng = self.headers.get("Range")
        if not (drop or rng):
            super().do_GET()
            return
        file = Path(self.directory) / name
        if not file.is_file():
            self.send_error(404)
            return
        data = file.read_bytes()
        if rng:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            self.wfile.write(data[start:])
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True

    def _slow(self, file: Path) -> None:
        data = file.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        step = len(data) // 10 + 1
        for i in range(0, len(data), step):
            self.wfile.write(data[i : i + step])
            self.wfile.flush()
            time.sleep(0.1)


class Server:
    """A real HTTP server on 127.0.0.1 (ephemeral port) in a thread."""

    def __init__(self, folder: Path):
        self.folder = folder
        handler = partial(_Handler, directory=str(folder))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.requests = []
        self.requests = self.httpd.requests
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server(tmp_path):
    folder = tmp_path / "www"
    folder.mkdir()
    srv = Server(folder)
    yield srv
    srv.stop()


def write_index(path: Path, models: dict) -> Path:
    path.write_text(json.dumps({"schema_version": 1, "models": models}), encoding="utf-8")
    return path
