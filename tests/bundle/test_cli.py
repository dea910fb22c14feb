"""``voxseg export | install | models | bundle verify/show/entry`` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

from voxseg.bundle._util import sha256_file
from voxseg.cli.main import main

from .conftest import write_index


def test_export_verify_show_entry(work_folder, tmp_path, capsys):
    out = tmp_path / "tiny.zip"
    code = main(["export", str(work_folder), "-o", str(out), "--name", "tiny", "--version", "v3", "--folds", "0"])
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert f"sha256 {sha256_file(out)}" in printed
    assert main(["bundle", "verify", str(out)]) == 0
    assert "ok" in capsys.readouterr().out
    assert main(["bundle", "show", str(out)]) == 0
    assert "# tiny v3" in capsys.readouterr().out
    assert main(["bundle", "show", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["folds"] == [0]
    assert main(["bundle", "entry", str(out), "--url", "https://example.org/tiny.zip"]) == 0
    entry = json.loads(capsys.readouterr().out)["models"]["tiny"]["versions"]["v3"]
    assert entry["sha256"] == sha256_file(out) and entry["size"] == out.stat().st_size
    assert entry["task"] == "instances"  # the bundle's (its postprocessing makes instances): indexes list it


def test_install_models_and_env_folders(bundle_zip, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VOXSEG_CACHE", str(tmp_path / "cache"))
    assert main(["install", str(bundle_zip), "--models-dir", str(tmp_path / "models")]) == 0
    assert "tiny-nodules@v1 installed in" in capsys.readouterr().out
    index = write_index(
        tmp_path / "index.json",
        {"tiny-nodules": {"versions": {"v2": {"urls": [str(bundle_zip)], "sha256": sha256_file(bundle_zip)}}}},
    )
    monkeypatch.setenv("VOXSEG_INDEX", str(index))
    assert main(["models", "--json", "--models-dir", str(tmp_path / "models")]) == 0
    rows = json.loads(capsys.readouterr().out)
    rows = [r for r in rows if r["name"] == "tiny-nodules"]  # the package's built-in models are listed too
    assert [(r["version"], r["installed"], r["available"], r["latest"]) for r in rows] == [
        ("v1", True, False, False),
        ("v2", False, True, True),
    ]
    monkeypatch.setenv("VOXSEG_MODELS", str(tmp_path / "models"))
    assert main(["bundle", "show", "tiny-nodules@v1"]) == 0
    assert "# tiny-nodules v1" in capsys.readouterr().out


def test_errors_are_one_line_with_exit_1(bundle_zip, tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bundle_zip) as src, zipfile.ZipFile(bad, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name))
        dst.writestr("../../evil.txt", b"x")
    env_models = ["--models-dir", str(tmp_path / "m"), "--cache-dir", str(tmp_path / "c")]
    for args in (["install", str(bad), *env_models], ["bundle", "verify", str(bad)]):
        r = subprocess.run([sys.executable, "-m", "voxseg", *args], capture_output=True, text=True, timeout=120)
        assert r.returncode == 1, r.stderr
        assert "escapes the target folder" in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run(
        [sys.executable, "-m", "voxseg", "install", "no-such-model", "--offline", *env_models],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1 and "'no-such-model' is not in the index" in r.stderr


def _voxseg(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The CLI in a subprocess: its stdout is a pipe, as in ``voxseg models | grep ...``."""
    return subprocess.run(
        [sys.executable, "-m", "voxseg", *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )


def test_models_table_never_cuts_a_name(bundle_zip, tmp_path, monkeypatch):
    import os

    models = tmp_path / "models"
    assert main(["install", str(bundle_zip), "--models-dir", str(models), "--cache-dir", str(tmp_path / "c")]) == 0
    listing = json.loads(_voxseg("models", "--json", "--offline", "--models-dir", str(models)).stdout)
    names = {r["name"] for r in listing}
    assert "tiny-nodules" in names and "interactive-soft-tissue" in names  # installed + built-in
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    for columns in ("80", "60", None):  # a narrow terminal, a narrower one, a pipe with no width
        run_env = env if columns is None else {**env, "COLUMNS": columns}
        r = _voxseg("models", "--offline", "--models-dir", str(models), env=run_env)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert "…" not in r.stdout
        for name in names:  # every name whole, on one line
            assert any(name in line.split() for line in lines), (columns, name, r.stdout)
        if columns:
            assert max(len(line) for line in lines) <= int(columns)
    piped = _voxseg("models", "--offline", "--models-dir", str(models), env=env).stdout
    row = next(line for line in piped.splitlines() if line.split()[:1] == ["pet-mip-tumors"])
    assert "built-in" in row and "Tumours in 2D whole-body FDG-PET maximum-intensity projections" in row


def test_models_json_tells_builtin_source_and_license(bundle_zip, tmp_path):
    models = tmp_path / "models"
    assert main(["install", str(bundle_zip), "--models-dir", str(models), "--cache-dir", str(tmp_path / "c")]) == 0
    r = _voxseg("models", "--json", "--offline", "--models-dir", str(models))
    rows = {(row["name"], row["version"]): row for row in json.loads(r.stdout)}
    local = rows[("tiny-nodules", "v1")]
    assert (local["installed"], local["builtin"], local["available"]) == (True, False, False)
    assert local["source"] == str(bundle_zip.resolve()) and local["task"] == "instances"
    assert "license" in local
    builtin = rows[("pet-mip-tumors", "v1")]
    assert (builtin["installed"], builtin["builtin"], builtin["license"]) == (False, True, "CC-BY-4.0")
    assert builtin["source"].endswith("pet-mip-tumors-v1.zip") and builtin["task"] == "semantic"


def test_typo_of_a_local_model_suggests_it(bundle_zip, tmp_path):
    env_models = ["--models-dir", str(tmp_path / "m"), "--cache-dir", str(tmp_path / "c")]
    assert main(["install", str(bundle_zip), *env_models]) == 0  # tiny-nodules: from a zip, in no index
    r = _voxseg("install", "tiny-nodule", "--offline", *env_models)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "did you mean 'tiny-nodules'?" in r.stderr and "installed: tiny-nodules" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_models_lists_licence_and_intended_use(tmp_path):
    import json as _json

    from typer.testing import CliRunner

    from voxseg.cli.main import app

    args = ["models", "--models", str(tmp_path / "m"), "--cache", str(tmp_path / "c")]
    table = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "licence" in table.output and "CC-BY-4.0" in table.output, table.output
    rows = _json.loads(CliRunner().invoke(app, [*args, "--json"]).output)
    assert rows and all(r["license"] and r["intended_use"] for r in rows if r["builtin"])
