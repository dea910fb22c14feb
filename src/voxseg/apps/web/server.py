"""Starting the web app: Streamlit's own CLI in a subprocess, bound to 127.0.0.1 unless told otherwise.

The app's settings travel as environment variables (:meth:`WebConfig.to_env`); Streamlit's
settings (address, port, upload limit, no telemetry, no file watcher) as its command-line flags.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from voxseg._procs import fate_shared_command
from voxseg.apps.web.logic import WebConfig
from voxseg.errors import ConfigError, VoxsegError

__all__ = ["APP_PATH", "DEFAULT_HOST", "DEFAULT_PORT", "streamlit_command", "start_server", "wait_ready", "port_free"]

log = logging.getLogger(__name__)

APP_PATH = Path(__file__).with_name("app.py")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501


def _require_streamlit() -> None:
    if importlib.util.find_spec("streamlit") is None:
        raise VoxsegError('the web app needs Streamlit: pip install "voxseg[web]"')


def port_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def streamlit_command(config: WebConfig, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> list[str]:
    """The ``python -m streamlit run app.py ...`` command line for these settings."""
    upload_mb = max(1, int(-(-config.max_upload_mb // 1)))  # Streamlit takes whole MB: round up
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP_PATH),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--server.maxUploadSize",
        str(upload_mb),
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
        "--browser.gatherUsageStats",
        "false",
        "--global.developmentMode",
        "false",
        "--client.toolbarMode",
        "minimal",
        "--theme.base",
        "dark",
    ]


def _check(config: WebConfig, host: str, port: int) -> None:
    if not 0 < port < 65536:
        raise ConfigError(f"--port must be in 1..65535, got {port}")
    if config.model and not Path(config.model).expanduser().exists() and any(c in config.model for c in "/\\"):
        raise ConfigError(f"--model {config.model}: no such folder or file (give a work folder, bundle or NAME)")
    if not port_free(host, port):
        raise ConfigError(f"{host}:{port} is in use (another voxseg web?); pick another with --port")


def start_server(
    config: WebConfig,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    env: Mapping[str, str] | None = None,
    quiet: bool = False,
) -> subprocess.Popen:
    """Start the Streamlit server process (not waiting for it); see :func:`wait_ready`.

    Raises
    ------
    VoxsegError
        Streamlit not installed; ConfigError for a bad port, a port in use or a missing ``--model``.
    """
    _require_streamlit()
    _check(config, host, port)
    environ = {**os.environ, **(env or {}), **config.to_env()}
    out = subprocess.DEVNULL if quiet else None
    log.info("starting %s", " ".join(streamlit_command(config, host=host, port=port)))
    # the server ends with this process, also when it is killed (kill -9 included): no orphan keeps the port
    command = fate_shared_command(streamlit_command(config, host=host, port=port))
    return subprocess.Popen(command, env=environ, stdout=out, stderr=out)


def url_for(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def wait_ready(process: subprocess.Popen, url: str, *, timeout: float = 60.0) -> None:
    """Wait until the server answers its health check; raise if it exits or times out."""
    deadline = time.monotonic() + timeout
    health = url.rstrip("/") + "/_stcore/health"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise VoxsegError(f"the web server exited with code {process.returncode} before it was ready (see above)")
        try:
            with urllib.request.urlopen(health, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    raise VoxsegError(f"the web server did not answer at {url} within {timeout:.0f} s")
