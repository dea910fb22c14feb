"""voxseg._procs: children that die with their parent (real processes, real kill -9) and folder locks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from voxseg._procs import FolderBusyError, hold_folder

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not reaped, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pids, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def _parent(script: str) -> tuple[subprocess.Popen, list[int]]:
    """Run ``script`` in a parent process that prints its children's PIDs, one line, then sleeps."""
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE, env=ENV, text=True)
    line = proc.stdout.readline()
    assert line, "the parent process printed no PIDs"
    return proc, [int(p) for p in line.split()]


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")


@needs_proc
def test_pool_workers_die_when_the_parent_is_killed():
    proc, pids = _parent(
        """
        import multiprocessing, os, time
        from concurrent.futures import ProcessPoolExecutor
        from voxseg._procs import parent_watch
        if __name__ == "__main__":
            pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"), initializer=parent_watch())
            pids = {pool.submit(os.getpid).result() for _ in range(8)}
            for _ in range(2):
                pool.submit(time.sleep, 120)
            print(*pids, flush=True)
            time.sleep(120)
        """
    )
    assert pids and all(alive(p) for p in pids)
    proc.kill()
    proc.wait()
    assert wait_gone(pids) == [], "pool workers outlived their killed parent"


@needs_proc
def test_a_fate_shared_command_dies_with_its_parent():
    proc, pids = _parent(
        """
        import subprocess, time
        from voxseg._procs import fate_shared_command
        child = subprocess.Popen(fate_shared_command(["sleep", "120"]))
        time.sleep(0.5)
        print(child.pid, flush=True)
        time.sleep(120)
        """
    )
    (pid,) = pids
    assert alive(pid) and "sleep" in Path(f"/proc/{pid}/cmdline").read_text()  # exec'd in place
    proc.kill()
    proc.wait()
    assert wait_gone([pid]) == []


def test_a_child_whose_parent_is_already_gone_exits(tmp_path):
    # die_with_parent(PID that is not our parent) is the start-up race: the child must not run on
    code = "import os; from voxseg._procs import die_with_parent; die_with_parent(os.getppid() + 999999); print('ran')"
    out = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "ran" not in out.stdout


def test_a_held_folder_is_refused_with_the_holders_pid_and_freed_by_kill_9(tmp_path):
    code = f"""
        import time
        from voxseg._procs import hold_folder
        with hold_folder({str(tmp_path)!r}, what="test work"):
            print("held", flush=True)
            time.sleep(120)
        """
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, env=ENV, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        busy = rf"test work is running there already in PID {holder.pid}"
        with pytest.raises(FolderBusyError, match=busy), hold_folder(tmp_path, what="test work"):
            pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    with hold_folder(tmp_path, what="test work") as lock:  # the OS released the killed holder's lock
        assert lock.parent == tmp_path
