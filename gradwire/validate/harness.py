"""Start one worker per host namespace and collect what they measured.

:func:`run_workers` writes the job file, starts ``python -m gradwire.validate.worker`` in
every host of a :class:`~gradwire.validate.netns.ShapedNetwork` (gloo bound to the host's
veth through ``GLOO_SOCKET_IFNAME``, rank 0's namespace address as ``MASTER_ADDR``), waits
for all of them with a deadline, and returns each rank's JSON result. A worker that fails
or overruns ends the others (each worker is its own process group, ended by that id) and
raises :class:`ValidationRunError` with the tail of its log. Workers die with the driver
(parent-death signal) and the temporary folder is removed however the run ends; what a
killed driver left is removed by the next run (:mod:`gradwire.validate.hygiene`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gradwire.errors import GradWireError
from gradwire.validate.hygiene import child_preexec, new_tempdir
from gradwire.validate.netns import ShapedNetwork

_POLL_S = 0.2


class ValidationRunError(GradWireError):
    """A worker of a shaped-network run failed or ran past its deadline."""


def _end(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 5.0
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=5.0)


def run_workers(net: ShapedNetwork, job: dict[str, Any], *, timeout_s: float,
                port: int = 29500, nice: int = 0) -> list[dict[str, Any]]:
    """Run ``job`` (``{"tasks": [...]}``, see :mod:`gradwire.validate.worker`) on every host.

    ``nice`` < 0 raises the workers' CPU priority (root only): on a shared machine it keeps
    other processes' load from stretching the measured times.
    """
    k = net.n
    tmp = new_tempdir()
    try:
        return _run_in(net, job, tmp, k, timeout_s=timeout_s, port=port, nice=nice)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run_in(net: ShapedNetwork, job: dict[str, Any], tmp: str, k: int, *, timeout_s: float, port: int,
            nice: int) -> list[dict[str, Any]]:
    job_path = Path(tmp) / "job.json"
    job_path.write_text(json.dumps(job))
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        for h in net.hosts:
            log = open(Path(tmp) / f"rank{h.index}.log", "wb")
            logs.append(log)
            pre = ["nice", "-n", str(nice)] if nice else []
            argv = [*pre, sys.executable, "-m", "gradwire.validate.worker", "--rank", str(h.index),
                    "--world", str(k), "--master", net.hosts[0].addr, "--port", str(port),
                    "--job", str(job_path), "--out", tmp, "--timeout-s", str(timeout_s),
                    "--parent-pid", str(os.getpid())]
            env = {"GLOO_SOCKET_IFNAME": h.ifname, "OMP_NUM_THREADS": "1",
                   "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
            procs.append(subprocess.Popen(net.exec_argv(h.index, argv, env), stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True,
                                          preexec_fn=child_preexec))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            codes = [p.poll() for p in procs]
            if any(c not in (None, 0) for c in codes) or all(c == 0 for c in codes):
                break
            time.sleep(_POLL_S)
        codes = [p.poll() for p in procs]
    finally:
        _end(procs)
        for log in logs:
            log.close()
    if any(c != 0 for c in codes):
        bad = next((i for i, c in enumerate(codes) if c not in (None, 0)), 0)
        tail = (Path(tmp) / f"rank{bad}.log").read_text(errors="replace")[-3000:]
        why = "ran past" if codes[bad] is None else f"exited with {codes[bad]} before"
        raise ValidationRunError(
            f"worker rank {bad} {why} the {timeout_s:.0f} s deadline; its log ends with:\n{tail}"
        )
    return [json.loads((Path(tmp) / f"rank{i}.json").read_text()) for i in range(k)]
