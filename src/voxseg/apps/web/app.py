"""The voxseg web app (Streamlit page). Start it with ``voxseg web [--model M]``.

A thin layout over :mod:`voxseg.apps.web.logic`: pick a model, upload an image, segment, look at
the overlay, the per-object table and the summary, download mask, table and report. The model is
loaded once per process and shared between sessions (``st.cache_resource``), which take turns on
it; each session runs one segmentation at a time, in a background thread that a page rerun (a
moved slider) does not cancel.
"""

from __future__ import annotations

import hashlib
import tempfile
import threading
from pathlib import Path

import numpy as np
import streamlit as st

from voxseg.apps.web import logic, prompts, render
from voxseg.apps.web.uploads import UPLOAD_KINDS, UploadedImage, check_upload, read_upload
from voxseg.errors import VoxsegError


@st.cache_resource(show_spinner="Loading the model...", max_entries=4)
def _load_model(reference: str) -> logic.LoadedModel:
    return logic.load_model(reference)


def _sidebar_model(config: logic.WebConfig) -> logic.LoadedModel | None:
    st.sidebar.header("Model")
    choices = logic.model_choices(config.model)
    if not choices:
        st.sidebar.warning(
            "No model installed. Start the app with `voxseg web --model WORK_FOLDER_OR_BUNDLE`, "
            "or install one with `voxseg install NAME`."
        )
        return None
    labels = [c.label for c in choices]
    picked = st.sidebar.selectbox("Segmentation model", labels, key="model_choice")
    choice = choices[labels.index(picked)]
    try:
        model = _load_model(choice.reference)
    except VoxsegError as exc:
        st.sidebar.error(f"Cannot load this model: {exc}")
        return None
    if model.terms:  # where people decide: the licence and intended use under the picker
        st.sidebar.caption(model.terms)
    with st.sidebar.expander("Model card", expanded=False):
        st.markdown(model.card)
    return model


def _sidebar_display() -> tuple[str, float]:
    st.sidebar.header("Overlay")
    mode = st.sidebar.radio("Style", render.OVERLAY_MODES, horizontal=True, key="overlay_mode")
    opacity = st.sidebar.slider("Opacity", 0.0, 1.0, 0.5, 0.05, key="overlay_opacity")
    return str(mode), float(opacity)


def _read(uploaded, config: logic.WebConfig) -> UploadedImage | None:
    """The upload read once per file (kept in the session), or None with an error shown."""
    ident = f"{uploaded.file_id}:{uploaded.name}:{uploaded.size}"
    cached = st.session_state.get("upload")
    if cached is not None and cached[0] == ident:
        if isinstance(cached[1], str):
            st.error(cached[1])
            return None
        return cached[1]
    try:
        check_upload(uploaded.name, uploaded.size, max_bytes=config.max_upload_bytes)
        with tempfile.TemporaryDirectory(prefix="voxseg-web-") as tmp:
            image = read_upload(uploaded.name, uploaded.getvalue(), Path(tmp) / "in", max_bytes=config.max_upload_bytes)
    except VoxsegError as exc:
        st.session_state["upload"] = (ident, str(exc))
        st.session_state.pop("result", None)
        st.error(str(exc))
        return None
    st.session_state["upload"] = (ident, image)
    st.session_state.pop("result", None)
    return image


def _upload(config: logic.WebConfig) -> UploadedImage | None:
    kinds = ", ".join(sorted(UPLOAD_KINDS))
    uploaded = st.file_uploader(
        f"Image to segment ({kinds}; a .zip of one DICOM series); at most {config.max_upload_mb:g} MB",
        key="upload_file",
    )
    if uploaded is None:
        st.session_state.pop("upload", None)
        st.session_state.pop("result", None)
        st.info("Upload a 2D image or a 3D volume to start.")
        return None
    image = _read(uploaded, config)
    if image is not None:
        shape = " x ".join(map(str, image.image.shape))
        spacing = ", ".join(f"{s:g}" for s in image.image.spacing)
        st.caption(
            f"{image.name}: {image.ndim}D, {shape} voxels, spacing {spacing} mm, {len(image.channels)} channel(s)"
        )
    return image


def _job_lock() -> threading.Lock:
    if "job_lock" not in st.session_state:
        st.session_state["job_lock"] = threading.Lock()
    return st.session_state["job_lock"]


def _start_job(model: logic.LoadedModel, image: UploadedImage) -> None:
    """Start this session's segmentation in the background (refused while one runs)."""
    lock = _job_lock()
    if not lock.acquire(blocking=False):
        st.warning("A segmentation is already running in this session; wait for it to finish.")
        return
    st.session_state.pop("result", None)
    key = (model.reference, st.session_state["upload"][0])
    st.session_state["job"] = logic.SegmentationJob(model, image, key=key, lock=lock).start()


def _follow_job() -> None:
    """Show the running job's progress until it ends, then keep its result (a rerun resumes here)."""
    job = st.session_state.get("job")
    if job is None:
        return
    bar = st.progress(0.0, text="Segmenting...")
    while not job.wait(0.25):
        text = f"Segmenting... {job.done}/{job.total} tiles" if job.total else "Segmenting: waiting for the model..."
        bar.progress(job.fraction, text=text)
    bar.empty()
    st.session_state.pop("job", None)
    if job.error is not None:
        st.error(job.error)
        return
    st.session_state["result"] = (*job.key, job.result)


def _best_slices(labels: np.ndarray) -> list[int]:
    """Per axis, the slice with the most labelled voxels (the middle when there are none)."""
    fg = labels > 0
    if not fg.any():
        return [s // 2 for s in labels.shape]
    return [int(np.argmax(fg.sum(axis=tuple(a for a in range(fg.ndim) if a != ax)))) for ax in range(fg.ndim)]


def _show_overlay(image: UploadedImage, result: logic.SegmentationResult, mode: str, opacity: float, tag: str) -> None:
    labels = result.labels
    window = render.intensity_window(image.image)
    if image.ndim == 2:
        pic = render.render_slice(image.image, labels, mode=mode, opacity=opacity, window=window, size=640)
        st.image(pic, caption=f"Overlay: {image.name}")
        return
    best = _best_slices(np.asarray(labels.array))
    columns = st.columns(3)
    for axis, column in enumerate(columns):
        with column:
            n = image.image.shape[axis]
            index = st.slider(render.AXIS_NAMES[axis], 0, n - 1, best[axis], key=f"slice_{axis}_{tag}")
            pic = render.render_slice(
                image.image, labels, axis=axis, index=index, mode=mode, opacity=opacity, window=window, size=400
            )
            st.image(pic, caption=f"Overlay: {render.AXIS_NAMES[axis]} slice {index}")


def _metrics(image: UploadedImage, result: logic.SegmentationResult) -> None:
    summary = result.summary
    left, mid, right = st.columns(3)
    left.metric("Objects", summary.objects)
    mid.metric(f"Total {'volume' if image.ndim == 3 else 'area'} ({summary.unit})", f"{summary.total:,.1f}")
    right.metric("Time (s)", f"{result.seconds.get('total', 0.0):.2f}")


def _table(result: logic.SegmentationResult) -> None:
    st.subheader("Objects")
    if result.rows:
        st.dataframe(logic.table_records(result.rows, label_names=result.label_names), hide_index=True)
    else:
        st.write("No object found.")


def _show_results(model: logic.LoadedModel, image: UploadedImage, result: logic.SegmentationResult, display) -> None:
    mode, opacity = display
    tag = hashlib.sha1(f"{model.reference}|{st.session_state['upload'][0]}".encode()).hexdigest()[:10]
    st.subheader("Result")
    for warning in result.warnings:  # the pre-flight check's: spacing or field of view far from the model's
        st.warning(warning)
    if image.ndim == 2:
        left, right = st.columns([1, 1])
        with left:
            _show_overlay(image, result, mode, opacity, tag)
        with right:
            _metrics(image, result)
            _table(result)
            _downloads(model, image, result)
        return
    _metrics(image, result)
    _show_overlay(image, result, mode, opacity, tag)
    _table(result)
    _downloads(model, image, result)


def _downloads(model: logic.LoadedModel, image: UploadedImage, result: logic.SegmentationResult) -> None:
    mask_name = logic.mask_file_name(image)
    report_name = f"{image.stem}_report.png"
    cols = st.columns(3)
    cols[0].download_button(
        "Download mask",
        data=lambda: logic.mask_download(result.labels, image)[1],
        file_name=mask_name,
        mime="application/octet-stream",
        on_click="ignore",
        key="download_mask",
        help="The label map in the input's format and geometry (NIfTI for a DICOM series)",
    )
    cols[1].download_button(
        "Download table",
        data=lambda: logic.table_csv(result.rows, result.labels.ndim, label_names=result.label_names),
        file_name=f"{image.stem}_objects.csv",
        mime="text/csv",
        on_click="ignore",
        key="download_table",
        help="The per-object table as CSV",
    )
    cols[2].download_button(
        "Download report",
        data=lambda: logic.report_download(image, result, model)[1],
        file_name=report_name,
        mime="image/png",
        on_click="ignore",
        key="download_report",
        help="A PNG with the slices, the summary and the largest objects",
    )


def _clickable(picture: np.ndarray, key: str) -> dict | None:
    """The picture, clickable when streamlit-image-coordinates is installed; the click or None."""
    try:
        from streamlit_image_coordinates import streamlit_image_coordinates
    except ImportError:
        st.image(picture)
        return None
    return streamlit_image_coordinates(picture, key=key)


def _prompt_state(image: UploadedImage) -> prompts.Prompts:
    """This session's prompts, emptied when another image is uploaded."""
    ident = st.session_state["upload"][0]
    if st.session_state.get("prompts_for") != ident or "prompts" not in st.session_state:
        st.session_state["prompts"] = prompts.Prompts()
        st.session_state["prompts_for"] = ident
    return st.session_state["prompts"]


def _prompt_views(image: UploadedImage, state: prompts.Prompts, labels, display, positive: bool) -> None:
    """Three clickable slice views; a click becomes the next point or corrective click."""
    mode, opacity = display
    shape = image.image.shape
    window = render.intensity_window(image.image)
    for axis, column in enumerate(st.columns(3)):
        with column:
            index = st.slider(render.AXIS_NAMES[axis], 0, shape[axis] - 1, shape[axis] // 2, key=f"islice_{axis}")
            pic = render.render_slice(
                image.image, labels, axis=axis, index=index, mode=mode, opacity=opacity, window=window, size=400
            )
            pic = prompts.draw_prompts(pic, shape, axis, index, state)
            event = _clickable(pic, key=f"click_{axis}")
            if event and event != st.session_state.get(f"last_click_{axis}"):
                st.session_state[f"last_click_{axis}"] = event
                w, h = event.get("width") or pic.shape[1], event.get("height") or pic.shape[0]
                try:
                    voxel = prompts.click_to_voxel(shape, axis, index, event["x"], event["y"], w, h)
                except VoxsegError as exc:
                    st.warning(str(exc))
                    continue
                state.add(voxel, positive=positive)
                st.rerun()


def _typed_point(image: UploadedImage, state: prompts.Prompts, positive: bool) -> None:
    with st.expander("Add a point by its voxel coordinates (z, y, x)"):
        cols = st.columns(4)
        values = [
            cols[a].number_input(name, 0, image.image.shape[a] - 1, image.image.shape[a] // 2, key=f"typed_{name}")
            for a, name in enumerate("zyx")
        ]
        if cols[3].button("Add point", key="add_point"):
            state.add(tuple(int(v) for v in values), positive=positive)
            st.rerun()


def _run_prompts(model: logic.LoadedModel, image: UploadedImage, state: prompts.Prompts, action: str) -> None:
    lock = _job_lock()
    if not lock.acquire(blocking=False):
        st.warning("A segmentation is already running in this session; wait for it to finish.")
        return
    try:
        with st.spinner("Segmenting from the points..." if action == "segment" else "Refining..."):
            run = prompts.segment_points if action == "segment" else prompts.refine_clicks
            result = run(model, image, state)
    except VoxsegError as exc:
        st.error(" ".join(str(exc).split()))
        return
    finally:
        lock.release()
    st.session_state["result"] = (model.reference, st.session_state["upload"][0], result)


def _interactive(model: logic.LoadedModel, image: UploadedImage, display) -> None:
    """The interactive page: six extreme points, then corrective clicks, each answered with a mask."""
    if image.ndim != 3:
        st.error(f"{image.name}: a {image.ndim}D image; the interactive model {model.name!r} segments 3D volumes.")
        return
    state = _prompt_state(image)
    st.subheader("Click the object's six extreme points, then correct the mask with clicks")
    st.caption(
        "Points: the two ends of the object along z, y and x (yellow), on the slices that show them. "
        "After six points, clicks are corrections: green adds, magenta removes."
    )
    kind = st.radio("Corrective clicks", ("add (positive)", "remove (negative)"), horizontal=True, key="click_kind")
    positive = str(kind).startswith("add")
    st.info(state.status(image))
    stored = st.session_state.get("result")
    current = stored is not None and stored[0] == model.reference and stored[1] == st.session_state["upload"][0]
    labels = stored[2].labels if current else None
    _prompt_views(image, state, labels, display, positive)
    _typed_point(image, state, positive)
    cols = st.columns(4)
    if cols[0].button("Segment from points", type="primary", key="segment_points", disabled=not state.complete()):
        _run_prompts(model, image, state, "segment")
        st.rerun()
    if cols[1].button("Refine with clicks", key="refine_clicks", disabled=not state.clicks):
        _run_prompts(model, image, state, "refine")
        st.rerun()
    if cols[2].button("Undo last", key="undo_point"):
        state.undo()
        st.rerun()
    if cols[3].button("Clear", key="clear_points"):
        state.clear()
        st.session_state.pop("result", None)
        st.rerun()
    if current:
        _metrics(image, stored[2])
        _table(stored[2])
        _downloads(model, image, stored[2])


def main() -> None:
    st.set_page_config(page_title="voxseg", layout="wide")
    st.title("voxseg: segment an image")
    try:
        config = logic.WebConfig.from_env()
    except VoxsegError as exc:
        st.error(str(exc))
        return
    model = _sidebar_model(config)
    display = _sidebar_display()
    image = _upload(config)
    if model is None or image is None:
        return
    if model.interactive:
        _interactive(model, image, display)
        return
    if st.button("Segment", type="primary", key="segment"):
        _start_job(model, image)
    _follow_job()
    stored = st.session_state.get("result")
    if stored is not None and stored[0] == model.reference and stored[1] == st.session_state["upload"][0]:
        _show_results(model, image, stored[2], display)


main()
