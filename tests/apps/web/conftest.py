"""Fixtures of the web app tests: one tiny trained work folder per test session."""

from __future__ import annotations

import locale
from pathlib import Path

import pytest

from tests.apps.web.helpers import make_work_2d


@pytest.fixture(scope="session")
def work_2d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work folder with one finished fold of a small 2D U-Net trained on pet-mip phantoms."""
    return make_work_2d(tmp_path_factory.mktemp("web") / "work")


@pytest.fixture(autouse=True)
def _restore_locale():
    """Writing a DICOM series with SimpleITK (GDCM) sets the process locale to "C", after which
    ``subprocess.run(text=True)`` in later tests decodes as ASCII; put the locale back."""
    saved = locale.setlocale(locale.LC_ALL, None)
    yield
    if locale.setlocale(locale.LC_ALL, None) != saved:
        locale.setlocale(locale.LC_ALL, saved)
