"""Shared CLI helpers: console, progress bars, KEY=VALUE options."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from voxseg.errors import ConfigError

console = Console()
err_console = Console(stderr=True)


@contextlib.contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr; yields a ``progress(done, total)`` callback."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=False) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def parse_key_values(items: list[str] | None, what: str = "--option") -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``; a malformed item is a usage error."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{what} {item!r}: expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def parse_size(text: str | None) -> int | tuple[int, ...] | None:
    """``"64"`` -> 64, ``"32,64,64"`` -> (32, 64, 64)."""
    if text is None:
        return None
    try:
        parts = [int(p) for p in text.replace("x", ",").split(",") if p.strip()]
    except ValueError:
        raise ConfigError(f"--size {text!r}: expected an integer or comma-separated integers like 32,64,64") from None
    if not parts:
        raise ConfigError("--size is empty")
    return parts[0] if len(parts) == 1 else tuple(parts)
