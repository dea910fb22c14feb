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
