"""``voxseg web``: start the web app (Streamlit) and print its URL."""

from __future__ import annotations

import signal

import typer

from voxseg.cli._common import console, err_console


def _exit_on_term(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def web(
    model: str = typer.Option(
        None, "--model", "-m", help="Work folder, bundle folder/.zip, or installed NAME or NAME@VERSION, offered first."
    ),
    port: int = typer.Option(8501, "--port", "-p", help="Port to listen on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (default: this computer only)."),
    max_upload_mb: int = typer.Option(1024, "--max-upload-mb", help="Largest accepted upload, in MB."),
) -> None:
    """Start the web app: upload an image, segment it, download mask, object table and report."""
    from voxseg.apps.web.logic import WebConfig
    from voxseg.apps.web.server import start_server, url_for, wait_ready

    config = WebConfig(model=model, max_upload_mb=max_upload_mb)
    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(
            f"warning: binding {host}: anyone who can reach this address can upload images and run the model",
            highlight=False,
        )
    process = start_server(config, host=host, port=port)
    # kill -TERM stops the server too (kill -9: the server's parent-death signal does, see voxseg._procs)
    previous = signal.signal(signal.SIGTERM, _exit_on_term)
    url = url_for(host, port)
    try:
        wait_ready(process, url)
        console.print(f"voxseg web is running at {url}  (Ctrl-C to stop)", highlight=False)
        code = process.wait()
    except BaseException:
        process.terminate()
        try:
            process.wait(timeout=10)
        except Exception:
            process.kill()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    if code not in (0, -2, 130):
        raise typer.Exit(code)
