"""Cohort inference on Ray: the local batch engine's per-case function in a pool of actors.

Each worker is a Ray actor that resolves the model once (:func:`voxseg.models.resolve.resolve_model`)
and predicts one case at a time with the local engine's per-case function
(:func:`voxseg.inference.batch.predict_case`), so outputs are written by the workers, atomically,
exactly as ``voxseg predict`` writes them. The driver alone writes ``predictions.json`` (the same
manifest and resume rules as the local engine), atomically, after every finished case: a killed
run loses no finished case and a re-run skips them.

A case that fails is tried once more (on whichever worker is free), then recorded as failed
without stopping the run. A worker that dies (killed, out of memory, node lost) costs the cases it
held (up to ``QUEUE_DEPTH``) one attempt each; they go back in the queue and a fresh actor takes the
dead one's place.

Workers read inputs and write outputs at the same paths as the driver: on a multi-node cluster,
inputs, outputs and the model live on a shared file system. ray is imported only inside functions
(``pip install 'voxseg[ray]'``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from voxseg.errors import ConfigError, VoxsegError
from voxseg.inference.batch import (
    MANIFEST_NAME,
    MANIFEST_SCHEMA_VERSION,
    BatchReport,
    CaseInput,
    check_writable,
    collect_inputs,
    is_current,
    load_manifest,
    one_line,
    output_ending,
    run_case,
    voxseg_version,
)
from voxseg.inference.options import PredictOptions
from voxseg.inference.outputs import check_batch_outputs
from voxseg.inference.preflight import PreflightLimits
from voxseg.io import write_json_atomic

__all__ = ["predict_folder_ray", "ray_session", "MAX_ATTEMPTS"]

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 2  # a failed case is tried once more, then recorded as failed
QUEUE_DEPTH = 2  # cases handed to an actor at a time: it starts the next one without a round trip
ACTOR_PREFIX = "voxseg-predict"


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--engine ray needs the ray package, which is not installed; install it with "
            "`pip install 'voxseg[ray]'` (or use --engine local)"
        ) from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None) -> Iterator[Any]:
    """Connect to Ray for the duration of a ``with`` block; yields the ``ray`` module.

    Parameters
    ----------
    address
        None: start a local Ray instance on 127.0.0.1 (no dashboard) and shut it down afterwards;
        ``"auto"``: the cluster started on this machine with ``ray start --head``; ``"ray://HOST:10001"``:
        a remote cluster through Ray Client. A session already open in this process is reused and
        left open.
    num_cpus
        CPUs of a local instance (default: all of this machine's).
    """
    ray = _import_ray()
    if ray.is_initialized():
        yield ray
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # offline machines: no usage report
    try:
        if address is None:
            ray.init(
                num_cpus=num_cpus or os.cpu_count() or 1,
                _node_ip_address="127.0.0.1",
                include_dashboard=False,
                logging_level=logging.WARNING,
            )
        else:
            ray.init(address=address, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = "a local Ray instance" if address is None else f"the Ray cluster at {address!r}"
        raise VoxsegError(
            f"cannot connect to {where} ({one_line(exc)[:300]}); start one with `ray start --head` "
            "and pass --address auto, or omit --address for a local instance"
        ) from None
    try:
        yield ray
    finally:
        ray.shutdown()


class _CaseWorker:
    """A Ray actor body: loads the model once, then predicts one case per call."""

    def __init__(self, model: str, threads: int, options: PredictOptions):
        from voxseg.inference.runtime import configure_allocator, configure_threads
        from voxseg.models.resolve import resolve_model

        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.predictor, self.error = None, None
        try:
            configure_allocator()
            configure_threads(threads)
            self.predictor = resolve_model(model, options.replace(num_threads=threads))
        except (VoxsegError, OSError, ValueError, RuntimeError, MemoryError) as exc:
            self.error = one_line(exc)

    def describe(self) -> tuple[str | None, dict[str, Any] | None, str | None]:
        """(model id, predictor settings, load error or None)."""
        if self.predictor is None:
            return None, None, self.error
        return self.predictor.model_id, self.predictor.settings(), None

    def run(self, case: CaseInput, output: str, options: dict[str, Any]) -> dict[str, Any]:
        if self.predictor is None:
            entry = _failed_entry(case, f"the worker could not load the model: {self.error}")
        else:
            entry = run_case(case, Path(output), self.predictor, *_case_args(options))
        return {**entry, "worker": self.worker}


def _case_args(options: dict[str, Any]) -> tuple:
    return (options["instances"], options["min_size"], options["min_volume"], options["probabilities"])


def _failed_entry(case: CaseInput, error: str) -> dict[str, Any]:
    """A manifest entry for a failed case, shaped like the local engine's."""
    return {
        "case": case.case_id,
        "status": "failed",
        "inputs": [{"role": f"channel {k}", "path": str(p)} for k, p in enumerate(case.images)],
        "output": None,
        "extra_outputs": [],
        "objects": None,
        "seconds": {},
        "error": error,
    }


class _Pool:
    """The actors of one run; replaces dead ones on demand and kills them all at the end."""

    def __init__(self, ray, model: str, *, threads: int, gpus: float, options: PredictOptions):
        self.ray, self.run_id, self.count = ray, uuid.uuid4().hex[:8], 0
        self.cls = ray.remote(_CaseWorker)
        self.args = (str(model), threads, options)
        self.options = {"num_cpus": threads, "num_gpus": gpus, "max_restarts": 0, "max_task_retries": 0}
        self.actors: list[Any] = []

    def spawn(self) -> Any:
        name = f"{ACTOR_PREFIX}-{self.run_id}-{self.count}"
        self.count += 1
        actor = self.cls.options(name=name, **self.options).remote(*self.args)
        self.actors.append(actor)
        return actor

    def discard(self, actor: Any) -> None:
        with contextlib.suppress(Exception):
            self.ray.kill(actor, no_restart=True)
        with contextlib.suppress(ValueError):
            self.actors.remove(actor)

    def close(self) -> None:
        for actor in list(self.actors):
            self.discard(actor)


def _threads_per_worker(ray, workers: int, num_threads: int | None) -> int:
    if num_threads is not None:
        return num_threads
    nodes = [n.get("Resources", {}).get("CPU", 0) for n in ray.nodes() if n.get("Alive", True)]
    total = sum(nodes) or 1
    return max(1, min(int(total // workers), int(max(nodes, default=1))))


def _describe(ray, actor) -> tuple[str, dict[str, Any]]:
    try:
        model_id, settings, error = ray.get(actor.describe.remote())
    except ray.exceptions.RayActorError as exc:
        raise VoxsegError(f"the first Ray worker died while loading the model ({one_line(exc)[:300]})") from None
    if error is not None:
        raise VoxsegError(error)
    return model_id, settings


def _check_options(workers: int, gpus_per_worker: float, num_threads: int | None, min_size, min_volume) -> None:
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"--workers must be a positive integer, got {workers!r}")
    if gpus_per_worker < 0:
        raise ConfigError(f"--gpus-per-worker must be >= 0, got {gpus_per_worker}")
    if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
        raise ConfigError(f"num_threads must be a positive integer, got {num_threads!r}")
    if min_size is not None and min_volume is not None:
        raise ConfigError("give either min_size (voxels) or min_volume (mm³), not both")


def _preflight(inputs, model, mask_dir, file_ending, limits, options: PredictOptions) -> None:
    from voxseg.models.api import preflight_files

    report = preflight_files(
        inputs,
        model,
        options,
        mask_dir=mask_dir,
        file_ending=file_ending,
        limits=limits if isinstance(limits, PreflightLimits) else None,
    )
    for warning in report.warnings:
        log.warning("%s", warning)
    log.info("pre-flight: %s", report.summary())
    report.check()


def predict_folder_ray(
    inputs: str | Path,
    out_dir: str | Path,
    model: str | Path,
    *,
    address: str | None = None,
    workers: int = 2,
    gpus_per_worker: float = 0.0,
    options: PredictOptions | None = None,
    instances: bool = False,
    min_size: int | None = None,
    min_volume: float | None = None,
    probabilities: bool = False,
    mask_dir: str | Path | None = None,
    file_ending: str | None = None,
    resume: bool = True,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    preflight: PreflightLimits | bool = True,
    **changes: Any,
) -> BatchReport:
    """Predict every case of ``inputs`` into ``out_dir`` on a pool of Ray actors.

    Parameters
    ----------
    inputs
        An image file, a folder (nnU-Net ``CASE_0000`` naming or plain files) or a .txt/.csv list,
        as for :func:`voxseg.inference.batch.predict_folder`.
    out_dir
        Output folder: ``CASE<ending>`` per case and the ``predictions.json`` manifest.
    model
        What ``voxseg predict -m`` accepts (a training work folder, a bundle); every worker
        resolves it itself, so it must be reachable at this path on every node.
    address
        None (a local Ray instance on 127.0.0.1, shut down afterwards), ``"auto"`` or
        ``"ray://HOST:PORT"``; see :func:`ray_session`.
    workers
        Actors, each holding one copy of the model.
    gpus_per_worker
        GPUs reserved per actor (fractions share a GPU); pass ``device="cuda"`` as well.
    options, changes
        How to predict (:class:`~voxseg.inference.options.PredictOptions`; ``changes`` are its
        fields), given to :func:`~voxseg.models.resolve.resolve_model` in each worker;
        ``num_threads`` is torch threads (and Ray CPUs) per actor (default: the cluster's CPUs /
        ``workers``), ``max_folds`` keeps the first N folds (``--fast``).
    instances, min_size, min_volume, probabilities, mask_dir, file_ending, resume, overwrite
        As for :func:`~voxseg.inference.batch.predict_folder` (the same output guard refuses outputs
        that are inputs or foreign files before Ray starts).
    preflight
        Run the pre-flight check (headers only) before Ray starts: True (default limits), a
        :class:`~voxseg.inference.preflight.PreflightLimits`, or False (the caller already did,
        as ``voxseg predict`` does).
    progress
        Called on the driver as ``progress(cases_finished, cases_total)``.

    Returns
    -------
    BatchReport
        ``report.ok`` is False when a case failed twice; failures are in the manifest too.
    """
    t0 = time.perf_counter()
    options = (options or PredictOptions()).replace(**changes)
    num_threads = options.num_threads
    _check_options(workers, gpus_per_worker, num_threads, min_size, min_volume)
    out = Path(out_dir).expanduser()
    cases = collect_inputs(inputs, file_ending=file_ending, mask_dir=mask_dir)
    manifest_path = out / MANIFEST_NAME
    check_batch_outputs(
        inputs,
        cases,
        out,
        mask_dir=mask_dir,
        file_ending=file_ending,
        instances=instances,
        probabilities=probabilities,
        overwrite=overwrite,
    )
    if preflight is not False:
        _preflight(inputs, model, mask_dir, file_ending, preflight, options)
    check_writable(out)
    old = load_manifest(manifest_path).get("cases", {}) if resume else {}
    case_options = {"instances": instances, "min_size": min_size, "min_volume": min_volume}
    case_options["probabilities"] = probabilities
    with ray_session(address) as ray:
        threads = _threads_per_worker(ray, workers, num_threads)
        pool = _Pool(ray, str(model), threads=threads, gpus=gpus_per_worker, options=options)
        try:
            model_id, predictor_settings = _describe(ray, pool.spawn())
            settings = {**predictor_settings, **case_options}
            manifest = {
                "schema_version": MANIFEST_SCHEMA_VERSION,
                "model": model_id,
                "settings": settings,
                "voxseg": voxseg_version(),
                "cases": dict(old),
            }
            run = _Run(ray, pool, out, file_ending, case_options, manifest, manifest_path, progress, len(cases))
            for case in cases:
                output = out / f"{case.case_id}{output_ending(case, file_ending)}"
                if resume and is_current(old.get(case.case_id), case, output, model_id, settings):
                    run.skip(case.case_id, old[case.case_id].get("objects"))
                else:
                    run.pending.append((case, 1))
            run.drain(min(workers, len(run.pending)))
        finally:
            pool.close()
    write_json_atomic(manifest_path, manifest)
    order = {c.case_id: k for k, c in enumerate(cases)}  # report in input order, as the local engine does
    return BatchReport(
        out,
        manifest_path,
        tuple(sorted(run.done, key=order.__getitem__)),
        tuple(run.skipped),
        tuple(sorted(run.failed, key=lambda f: order[f[0]])),
        round(time.perf_counter() - t0, 3),
        {k: run.objects[k] for k in sorted(run.objects, key=order.__getitem__)},
    )


class _Run:
    """The driver's queue: hands cases to free actors, records results, retries and replaces."""

    def __init__(
        self, ray, pool: _Pool, out: Path, file_ending, case_options, manifest, manifest_path, progress, total
    ):
        self.ray, self.pool, self.out, self.file_ending = ray, pool, out, file_ending
        self.case_options, self.manifest, self.manifest_path = case_options, manifest, manifest_path
        self.progress, self.total = progress, total
        self.pending: deque[tuple[CaseInput, int]] = deque()
        self.done: list[str] = []
        self.skipped: list[str] = []
        self.failed: list[tuple[str, str]] = []
        self.objects: dict[str, int | None] = {}

    def _tick(self) -> None:
        if self.progress is not None:
            self.progress(len(self.done) + len(self.skipped) + len(self.failed), self.total)

    def skip(self, case_id: str, objects: int | None) -> None:
        self.skipped.append(case_id)
        self.objects[case_id] = objects
        self._tick()

    def drain(self, workers: int) -> None:
        """Run every pending case on at most ``workers`` actors (the first one already exists).

        Each actor holds up to ``QUEUE_DEPTH`` cases (it runs them one after the other), so it
        starts its next case without waiting for the driver's round trip.
        """
        slots = [a for _ in range(QUEUE_DEPTH) for a in self.pool.actors]  # free places in actors' queues
        busy: dict[Any, tuple[Any, CaseInput, int]] = {}
        while self.pending or busy:
            while self.pending and len(self.pool.actors) < workers:  # every worker first, then deeper queues
                actor = self.pool.spawn()
                slots = [actor, *slots, *[actor] * (QUEUE_DEPTH - 1)]
            while self.pending and slots:
                actor = slots.pop(0)
                case, attempt = self.pending.popleft()
                output = self.out / f"{case.case_id}{output_ending(case, self.file_ending)}"
                busy[actor.run.remote(case, str(output), self.case_options)] = (actor, case, attempt)
            (ref,), _ = self.ray.wait(list(busy), num_returns=1)
            actor, case, attempt = busy.pop(ref)
            entry = self._result(ref, actor, case)
            if entry is not None:
                slots.append(actor)
            else:  # the actor died: a fresh one is spawned when a case needs it
                slots = [a for a in slots if a is not actor]
                entry = _failed_entry(case, "the worker process died while predicting this case")
            if entry["status"] != "ok" and attempt < MAX_ATTEMPTS:
                log.warning("%s: attempt %d failed (%s); trying again", case.case_id, attempt, entry["error"])
                self.pending.append((case, attempt + 1))
                continue
            self._record(case, entry, attempt)

    def _result(self, ref, actor, case: CaseInput) -> dict[str, Any] | None:
        """The case's manifest entry, or None when its actor died (the actor is discarded)."""
        exceptions = self.ray.exceptions
        try:
            return self.ray.get(ref)
        except exceptions.RayActorError as exc:
            log.warning("%s: worker died (%s)", case.case_id, one_line(exc)[:200])
            self.pool.discard(actor)
            return None
        except exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None) or exc
            return _failed_entry(case, one_line(cause)[:500])

    def _record(self, case: CaseInput, entry: dict[str, Any], attempts: int) -> None:
        entry = {**entry, "attempts": attempts, "model": self.manifest["model"], "settings": self.manifest["settings"]}
        self.manifest["cases"][case.case_id] = entry
        write_json_atomic(self.manifest_path, self.manifest)  # after every case: a killed run loses nothing
        if entry["status"] == "ok":
            self.done.append(case.case_id)
            self.objects[case.case_id] = entry["objects"]
        else:
            log.error("%s: failed after %d attempts: %s", case.case_id, attempts, entry["error"])
            self.failed.append((case.case_id, entry["error"]))
        self._tick()
