"""The intended house holds: import-linter's contracts (pyproject.toml) and no import cycle among files.

Both read every import statement of ``src/voxseg``, including those made inside functions.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("importlinter")


def test_import_linter_contracts_are_kept():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert exe, "lint-imports not found (pip install -c constraints.txt -e '.[dev]')"
    result = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout and "Contracts: 4 kept" in result.stdout


def test_no_import_cycle_among_files():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from import_cycles import cycles
    finally:
        sys.path.remove(str(ROOT / "tools"))
    assert cycles() == []


def test_cycle_finder_finds_a_cycle(tmp_path, monkeypatch):
    pkg = tmp_path / "loopy"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from loopy import b\n")
    (pkg / "b.py").write_text("from loopy import a\n")
    (pkg / "c.py").write_text("from loopy import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from import_cycles import cycles
    finally:
        sys.path.remove(str(ROOT / "tools"))
    assert cycles("loopy") == [["loopy.a", "loopy.b"]]
