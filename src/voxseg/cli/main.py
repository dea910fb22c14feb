"""The ``voxseg`` root command and error handling: user errors print one line and exit 1,
usage errors exit 2, Ctrl-C exits 130; only bugs show a traceback."""

from __future__ import annotations

import logging
import sys

import typer

from voxseg.cli import bundle as bundle_cli
from voxseg.cli import dataset as dataset_cli
from voxseg.cli._common import err_console
from voxseg.cli.bundle_test import test as bundle_test
from voxseg.cli.demo import demo
from voxseg.cli.evaluate import evaluate
from voxseg.cli.finetune import finetune
from voxseg.cli.info import info
from voxseg.cli.interactive import evaluate_interactive
from voxseg.cli.nnunet import import_nnunet
from voxseg.cli.plan import PlanCommand, plan
from voxseg.cli.points import points
from voxseg.cli.predict import predict
from voxseg.cli.train import crossval, train
from voxseg.cli.web import web
from voxseg.errors import ConfigError, VoxsegError

app = typer.Typer(
    name="voxseg",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="voxseg: train, package and run segmentation models for 2D/3D biomedical images.",
)
app.add_typer(dataset_cli.app, name="dataset")
app.command()(info)
app.command()(evaluate)
app.command(cls=PlanCommand)(plan)
app.command()(predict)
app.command()(train)
app.command()(crossval)
app.command()(finetune)
app.command()(bundle_cli.export)
app.command()(bundle_cli.install)
app.command()(bundle_cli.models)
bundle_cli.app.command("test")(bundle_test)
app.add_typer(bundle_cli.app, name="bundle")
app.command()(web)
app.command()(points)
app.command("import-nnunet")(import_nnunet)
app.command("evaluate-interactive")(evaluate_interactive)
app.command()(demo)


def _version_callback(value: bool) -> None:
    if value:
        import voxseg

        typer.echo(f"voxseg {voxseg.__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Show the version."
    ),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-vv for debug)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors."),
) -> None:
    """voxseg: train, package and run segmentation models for 2D/3D biomedical images."""
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    _setup_logging(level)


def _setup_logging(level: int) -> None:
    from rich.logging import RichHandler

    handler = RichHandler(console=err_console, show_time=False, show_path=False, markup=False)
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)
    logging.getLogger("voxseg").setLevel(level)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (also used as the console-script entry point)."""
    try:
        app(args=argv, prog_name="voxseg")  # standalone: typer handles --help and usage errors (exit 2)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except ConfigError as exc:
        err_console.print(f"[red]error:[/red] {_one_line(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    except VoxsegError as exc:
        err_console.print(f"[red]error:[/red] {_one_line(str(exc))}", highlight=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except OSError as exc:  # disk full, permission denied, ...: the user's environment, not a bug
        err_console.print(f"[red]error:[/red] {_one_line(str(exc))}", highlight=False, soft_wrap=True)
        return 1
    return 0


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
