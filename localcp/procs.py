"""Starting and stopping the control plane's daemons, each with a pid file and a log."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from localcp.layout import FILES


class StartupError(RuntimeError):
    """A daemon exited or did not become ready in time."""


def pid_file(name: str) -> Path:
    return FILES.pids / f"{name}.pid"


def log_file(name: str) -> Path:
    return FILES.logs / f"{name}.log"


def running_pid(name: str) -> int | None:
    """The pid of a daemon we started, if it is still alive."""
    try:
        pid = int(pid_file(name).read_text())
    except (FileNotFoundError, ValueError):
        return None
    # A zombie child of this process: reap it.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        # The third field of /proc/PID/stat is the state; a zombie (Z) still answers
        # kill(0) but has exited, whoever is late reaping it.
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return None
    return None if state == "Z" else pid


def start(
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
) -> int:
    """Start a daemon in its own session, so it outlives `make up` and a terminal's ^C;
    one already running is left as it is (so `make up` can be run again)."""
    running = running_pid(name)
    if running is not None:
        return running
    FILES.pids.mkdir(parents=True, exist_ok=True)
    FILES.logs.mkdir(parents=True, exist_ok=True)
    with log_file(name).open("ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    pid_file(name).write_text(str(proc.pid))
    return proc.pid


def wait_until(
    name: str,
    ready: Callable[[], bool],
    timeout: float,
    what: str,
) -> None:
    """Poll `ready` until it holds; fail early, with the log's tail, if the daemon died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running_pid(name) is None:
            raise StartupError(f"{name} exited while waiting for {what}:\n{tail(name)}")
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise StartupError(f"timed out after {timeout:.0f}s waiting for {what}:\n{tail(name)}")


def tail(name: str, lines: int = 30) -> str:
    try:
        return "\n".join(log_file(name).read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def stop(name: str, grace: float = 10.0) -> None:
    """SIGTERM the daemon's whole process group, then SIGKILL it after `grace` seconds."""
    pid = running_pid(name)
    if pid is not None:
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while running_pid(name) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if running_pid(name) is not None:
            _signal_group(pid, signal.SIGKILL)
            deadline = time.monotonic() + grace
            while running_pid(name) is not None and time.monotonic() < deadline:
                time.sleep(0.05)
    pid_file(name).unlink(missing_ok=True)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
