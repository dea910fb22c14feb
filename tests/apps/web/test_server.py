"""``voxseg web``: the command line, the Streamlit command it runs, and a real server on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from voxseg.apps.web.logic import ENV_MAX_UPLOAD_MB, ENV_MODEL, WebConfig
from voxseg.apps.web.server import APP_PATH, port_free, streamlit_command, url_for
from voxseg.cli.main import main

pytest.importorskip("streamlit", reason='the web app needs Streamlit: pip install "voxseg[web]"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_streamlit_command_binds_loopback_and_sets_the_upload_limit():
    cmd = streamlit_command(WebConfig(max_upload_mb=2.5), port=9999)
    assert cmd[:5] == [sys.executable, "-m", "streamlit", "run", str(APP_PATH)]
    flags = dict(zip(cmd[5::2], cmd[6::2], strict=True))
    assert flags["--server.address"] == "127.0.0.1" and flags["--server.port"] == "9999"
    assert flags["--server.maxUploadSize"] == "3"  # whole MB, rounded up; the app checks 2.5 MB itself
    assert flags["--browser.gatherUsageStats"] == "false" and flags["--server.headless"] == "true"
    assert url_for("0.0.0.0", 80) == "http://127.0.0.1:80" and url_for("::1", 81) == "http://[::1]:81"


def test_port_in_use_and_missing_model_are_usage_errors(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert not port_free("127.0.0.1", port)
        assert main(["web", "--port", str(port)]) == 2
    assert "is in use" in capsys.readouterr().err
    assert main(["web", "--model", str(tmp_path / "no" / "work"), "--port", str(free_port())]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["web", "--port", "0"]) == 2


@pytest.mark.slow
def test_voxseg_web_starts_a_server_on_loopback_and_prints_the_url(work_2d):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in (ENV_MODEL, ENV_MAX_UPLOAD_MB)}
    cmd = [sys.executable, "-m", "voxseg", "web", "--model", str(work_2d), "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        line = ""
        deadline = time.monotonic() + 90
        while "running at" not in line and time.monotonic() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line, line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=10) as resp:
            assert resp.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
            assert resp.status == 200 and b"<html" in resp.read().lower()
        with socket.socket() as s:  # bound to loopback only: not on the other addresses of this machine
            other = _non_loopback_address()
            if other is not None:
                assert s.connect_ex((other, port)) != 0
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _non_loopback_address() -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # no packet is sent; picks the outgoing interface
            addr = s.getsockname()[0]
    except OSError:
        return None
    return None if addr.startswith("127.") else addr
