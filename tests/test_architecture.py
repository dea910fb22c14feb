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


MAX_FUNCTION_LINES = 60


def _code_lines(lines: list[str], node) -> int:
    """Lines of code in a function's body: no signature, docstring, blank or comment lines."""
    import ast

    body = node.body
    skip = set()
    first = body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        skip = set(range(first.lineno, first.end_lineno + 1))
    count = 0
    for number in range(body[0].lineno, node.end_lineno + 1):
        text = lines[number - 1].strip()
        count += bool(number not in skip and text and not text.startswith("#"))
    return count


def test_no_function_is_longer_than_sixty_lines_of_code():
    import ast

    long = []
    for path in sorted((ROOT / "src" / "voxseg").rglob("*.py")):
        text = path.read_text()
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = _code_lines(lines, node)
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "split these functions: " + "; ".join(long)
