"""napari tests: a real viewer under Xvfb (pytest-xvfb starts it), the voxseg manifest registered."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("napari", reason="needs the [napari] extra")
pytest.importorskip("pytestqt", reason="needs pytest-qt")

MANIFEST = Path(__file__).resolve().parents[3] / "src" / "voxseg" / "apps" / "napari" / "napari.yaml"


@pytest.fixture(scope="session")
def voxseg_plugin():
    """The voxseg npe2 manifest registered with napari (also without `pip install -e .` re-run)."""
    import npe2

    pm = npe2.PluginManager.instance()
    if "voxseg" not in pm:
        pm.register(npe2.PluginManifest.from_file(MANIFEST))
    return pm.get_manifest("voxseg")


from tests.bright_model import (  # noqa: E402,F401  (re-exported for the napari tests)
    BRIGHT_NET,
    ORIGIN,
    SPACING,
    SPHERES,
    spheres_image,
    write_bright_work,
)


@pytest.fixture(scope="session")
def bright_interactive_work(tmp_path_factory):
    """An interactive BrightNet work folder (plan.interactive set, 2 input channels)."""
    return write_bright_work(tmp_path_factory.mktemp("bright-interactive") / "bright-interactive", interactive=True)


@pytest.fixture(scope="session")
def bright_work(tmp_path_factory):
    """A work folder (plan.json + one finished fold) of the BrightNet model, 16³ patches."""
    return write_bright_work(tmp_path_factory.mktemp("bright") / "bright-model")
