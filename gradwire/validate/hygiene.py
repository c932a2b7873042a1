"""Validation runs leave nothing behind: workers die with their parent, leftovers are removed.

A shaped-network run starts one worker process per host namespace, each in its own
process group (so one ``killpg`` ends a worker and anything it started), and a temporary
folder for the job and the workers' logs. If the driving process is killed outright
(``SIGKILL``: no handler runs), the workers must not go on waiting for each other until
gloo's timeout: each is started with the parent-death signal set
(``prctl(PR_SET_PDEATHSIG, SIGKILL)``, kept across the ``exec`` of ``ip netns exec`` /
``nice`` / ``env``, which replace themselves), and each checks at start that its parent is
still the process that started it (:func:`die_with_parent`). The temporary folder's name
carries the driver's pid (``gradwire-validate-<pid>-*``): :func:`remove_leftovers`, called
at the start of every run, removes the folders of drivers that are gone and ends workers
still running from them, and says what it removed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path

from gradwire.validate.netns import pid_alive

TMP_PREFIX = "gradwire-validate-"
_TMP_RE = re.compile(rf"^{TMP_PREFIX}(\d+)-")
_PR_SET_PDEATHSIG = 1


def _prctl_pdeathsig(sig: int) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux only)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def child_preexec() -> None:
    """``preexec_fn`` of a worker: die (SIGKILL) with the process that started it."""
    _prctl_pdeathsig(signal.SIGKILL)


def die_with_parent(parent_pid: int | None) -> None:
    """In a worker: keep the parent-death signal, and exit now if the parent is already gone
    (it may have died between ``fork`` and the ``prctl`` above)."""
    _prctl_pdeathsig(signal.SIGKILL)
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(3)


def new_tempdir() -> str:
    """A temporary folder named after this driver's pid (so a later run can tell it is stale)."""
    return tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-")


def _workers_of(folder: Path) -> list[int]:
    """Pids of validation workers whose job file lies in ``folder``."""
    pids = []
    needle = f"{folder}{os.sep}".encode()
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"gradwire.validate.worker" in cmd and needle in cmd:
            pids.append(int(entry.name))
    return pids


def remove_leftovers(tmp_root: str | None = None) -> list[str]:
    """Remove what killed runs left: their temporary folders, and workers still running from
    them. Returns one line per thing removed (empty when there was nothing)."""
    root = Path(tmp_root or tempfile.gettempdir())
    said: list[str] = []
    for folder in sorted(root.glob(f"{TMP_PREFIX}*")):
        m = _TMP_RE.match(folder.name)
        if not m or not folder.is_dir() or pid_alive(int(m.group(1))):
            continue
        for pid in _workers_of(folder):
            try:
                os.killpg(pid, signal.SIGKILL)  # each worker leads its own process group
            except (ProcessLookupError, PermissionError):
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    continue
            said.append(f"ended worker process {pid} left by a killed run (driver pid {m.group(1)})")
        shutil.rmtree(folder, ignore_errors=True)
        said.append(f"removed temporary folder {folder} left by a killed run (driver pid {m.group(1)})")
    return said
