"""tools/clean_room.py (the install matrix ``make test`` runs) keeps up with pyproject.toml's extras.

The matrix itself installs eight venvs (minutes): ``make clean-room`` runs it, not this file.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib")


def _clean_room():
    spec = importlib.util.spec_from_file_location("clean_room", ROOT / "tools" / "clean_room.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("clean_room", module)  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def test_every_user_facing_extra_has_a_row():
    cr = _clean_room()
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    user_facing = {name for name in extras if name != "dev" and not name.endswith("-test")}
    rows = {row.name: row for row in cr.ROWS}
    assert set(rows) == {"base"} | user_facing
    assert rows["base"].extra is None and "demo" in {c[1] for c in rows["base"].checks if c[0] == "voxseg"}
    # nnunet goes in without its dependencies, exactly as pyproject (and the Makefile) pin it
    assert rows["nnunet"].extra is None and rows["nnunet"].no_deps == (cr.NNUNET_PACKAGE,)
    assert extras["nnunet"] == [cr.NNUNET_PACKAGE]
    assert all(rows[name].extra == name for name in user_facing - {"nnunet"})


def test_unknown_row_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        _clean_room().main(["base", "gui"])
    assert exit_.value.code == 2 and "unknown row(s) gui" in capsys.readouterr().err
