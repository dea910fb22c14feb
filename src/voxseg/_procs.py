"""Worker processes that die with their parent, and work folders that one run holds at a time.

Every process voxseg starts to help the one the user started (preprocessing workers of
``voxseg plan``, DataLoader workers of ``voxseg train``, DDP ranks, the Streamlit server of
``voxseg web``) runs :func:`die_with_parent` first, so that ``kill -9`` of the command leaves no
process behind that keeps writing into the work folder:

- on Linux the kernel sends the child ``SIGKILL`` when its parent ends
  (``prctl(PR_SET_PDEATHSIG, SIGKILL)``, through ctypes);
- the child then checks that its parent is still the process that started it (the parent may have
  died between the start and the ``prctl`` call) and exits at once if not;
- elsewhere a daemon thread polls ``os.getppid()`` and ends the process when the parent changes.

For a program that is not Python (or not ours), :func:`fate_shared_command` wraps its command line
in ``python -m voxseg._procs PID -- COMMAND...``, which sets the same signal and then ``exec``\\ s it.

:func:`hold_folder` takes an exclusive lock (``filelock``) on a folder's lock file for one run and
names the PID holding it when another run tries; the operating system drops the lock when the
process ends, however it ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from voxseg.errors import VoxsegError
from voxseg.io.safe_json import read_json

__all__ = ["LOCK_NAME", "FolderBusyError", "die_with_parent", "parent_watch", "fate_shared_command", "hold_folder"]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
LOCK_NAME = ".voxseg.lock"  # a folder's lock file (and LOCK_NAME + ".owner": who holds it)


class FolderBusyError(VoxsegError):
    """Another voxseg process is working in the folder (it holds the folder's lock)."""


def _set_parent_death_signal() -> bool:
    """Ask Linux to SIGKILL this process when its parent ends; False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watchdog(parent_pid: int, poll_seconds: float) -> None:
    while True:
        time.sleep(poll_seconds)
        if os.getppid() != parent_pid:
            os._exit(1)


def die_with_parent(parent_pid: int, *, poll_seconds: float = 1.0) -> None:
    """Make this (child) process end when the process ``parent_pid`` that started it ends.

    Call it first thing in a child process (a pool's ``initializer``, a DataLoader's
    ``worker_init_fn``, a ``Process`` target); see the module docstring.
    """
    linux = _set_parent_death_signal()
    if os.getppid() != parent_pid:  # the parent ended before the signal was set
        os._exit(1)
    if not linux:
        watch = threading.Thread(target=_watchdog, args=(parent_pid, poll_seconds), name="voxseg-parent", daemon=True)
        watch.start()


def parent_watch() -> Callable[..., None]:
    """A picklable initializer for worker processes of *this* process: ``die_with_parent(os.getpid())``.

    It accepts (and ignores) a worker id, so it serves as a DataLoader ``worker_init_fn`` too.
    """
    return functools.partial(_init_worker, os.getpid())


def _init_worker(parent_pid: int, *_: object) -> None:
    die_with_parent(parent_pid)


def fate_shared_command(command: Sequence[str]) -> list[str]:
    """``command`` wrapped so that it ends when this process ends (see the module docstring)."""
    return [sys.executable, "-m", "voxseg._procs", str(os.getpid()), "--", *command]


def _run_fate_shared(argv: Sequence[str]) -> int:
    parent, command = int(argv[0]), list(argv[2:] if argv[1:2] == ["--"] else argv[1:])
    if _set_parent_death_signal():
        if os.getppid() != parent:
            return 1
        os.execvp(command[0], command)  # the signal setting survives exec
    child = subprocess.Popen(command)
    forward = lambda signum, _frame: child.send_signal(signum)  # noqa: E731
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while child.poll() is None:
        if os.getppid() != parent:
            child.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=10)
            child.kill()
            return 1
        time.sleep(0.5)
    return int(child.returncode)


def _owner(lock_path: Path) -> str:
    try:
        data = read_json(lock_path.with_name(lock_path.name + ".owner"))
        return f"PID {int(data['pid'])} ({data.get('command', 'voxseg')}, since {data.get('since', '?')})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextlib.contextmanager
def hold_folder(folder: str | Path, *, what: str, lock_name: str = LOCK_NAME) -> Iterator[Path]:
    """Hold ``folder/lock_name`` exclusively for the ``with`` block (``what``: the work, for messages).

    Raises
    ------
    FolderBusyError
        Another process holds it: the message names its PID.
    """
    from filelock import FileLock, Timeout

    from voxseg.io import write_json_atomic

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / lock_name
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        who = _owner(path)
        raise FolderBusyError(
            f"{folder}: {what} is running there already in {who}; wait for it to end or stop it "
            "(its lock is released when it ends, also when it is killed)"
        ) from None
    owner = path.with_name(path.name + ".owner")
    try:
        command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:2]])
        write_json_atomic(owner, {"pid": os.getpid(), "command": command, "since": time.strftime("%Y-%m-%d %H:%M:%S")})
        yield path
    finally:
        with contextlib.suppress(OSError):
            owner.unlink()
        lock.release()


if __name__ == "__main__":
    sys.exit(_run_fate_shared(sys.argv[1:]))
