"""K hosts as Linux network namespaces joined by a bridge, each link shaped with ``tbf``.

:class:`ShapedNetwork` builds, for ``hosts`` = K: one namespace per host
(``<prefix>h<i>``) and one switch namespace (``<prefix>sw``) holding a Linux bridge; a
veth pair per host (``<prefix>h<i>`` in the host, ``<prefix>p<i>`` on the bridge);
addresses ``10.199.X.(i+1)/24`` inside the host namespaces only (X derived from the
process id). Each host's egress is shaped with a token bucket filter (``tc qdisc ... tbf``)
to the link rate and, by default, so is the bridge port toward it, which makes the links
full-duplex at that rate like the simulator's star topology. Latency comes from the real
stack (the ``netem`` qdisc is not available on these kernels).

Nothing is created in the root namespace and no route leaves the created namespaces, so
traffic only ever goes to the created addresses. Teardown deletes the namespaces (which
deletes their veths and the bridge) and always runs: on normal exit, on exceptions, on
SIGINT/SIGTERM (handlers installed while the network exists) and at interpreter exit.
Leftovers of killed runs (the prefix embeds the creating process id) are removed when a
new network is built. Needs root (CAP_NET_ADMIN) and iproute2.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any

from gradwire.errors import ConfigError, GradWireError

PREFIX = "gwv"  # every object this module makes starts with it; the creating pid follows
_CMD_TIMEOUT_S = 20.0
_NAME_RE = re.compile(rf"^{PREFIX}(\d+)(sw|h\d+)$")


class NetnsUnavailable(GradWireError):
    """The machine cannot build namespaces (no root / CAP_NET_ADMIN, or no iproute2)."""


def _cap_net_admin() -> bool:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) & (1 << 12))  # CAP_NET_ADMIN = 12
    except OSError:
        return False
    return False


def netns_available() -> tuple[bool, str]:
    """``(True, "")`` when namespaces, veths, bridges and tbf can be made, else a reason."""
    if not os.path.exists("/proc/self/ns/net"):
        return False, "this system has no Linux network namespaces"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return False, "iproute2 ('ip' and 'tc') is not installed"
    if not _cap_net_admin():
        return False, "needs root (CAP_NET_ADMIN) to create network namespaces; run as root"
    return True, ""


def _run(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=_CMD_TIMEOUT_S)
    if check and proc.returncode != 0:
        raise NetnsUnavailable(f"command {' '.join(argv)!r} failed: {proc.stderr.strip()}")
    return proc


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_ours() -> list[str]:
    """Namespaces named by this module (any creating process)."""
    out = _run(["ip", "netns", "list"], check=False).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [n for n in names if _NAME_RE.match(n)]


def cleanup_stale() -> list[str]:
    """Delete namespaces left by runs whose creating process is gone; return their names."""
    removed = []
    for name in list_ours():
        m = _NAME_RE.match(name)
        if m and not pid_alive(int(m.group(1))):
            _run(["ip", "netns", "del", name], check=False)
            removed.append(name)
    return removed


@dataclass(frozen=True)
class Host:
    """One host of the shaped network: its namespace, interface and address."""

    index: int
    netns: str
    ifname: str
    addr: str


def tbf_burst_bytes(rate_bps: float) -> int:
    """Token-bucket depth: 200 µs at the rate, at least four 1514-byte frames.

    A deep bucket lets an idle link send a burst faster than its rate (a 1 ms bucket
    would hand a 1 MB transfer at 1 Gbit/s 12% for free); the kernel's high-resolution
    watchdog keeps small buckets at the rate, and tbf splits offloaded (GSO) packets that
    exceed the bucket into frames.
    """
    return int(max(4 * 1514, rate_bps / 8 * 200e-6))


class ShapedNetwork:
    """Context manager building K shaped hosts; see the module docstring."""

    def __init__(self, hosts: int, rate_bps: float, *, shape_downlinks: bool = True,
                 queue_latency_s: float = 0.05) -> None:
        if isinstance(hosts, bool) or not isinstance(hosts, int) or not 2 <= hosts <= 64:
            raise ConfigError(f"ShapedNetwork: hosts must be an integer in 2..64, got {hosts!r}")
        if not (isinstance(rate_bps, (int, float)) and 1e5 <= rate_bps <= 1e11):
            raise ConfigError(
                f"ShapedNetwork: rate_bps must be in 1e5..1e11 bit/s (e.g. 1e8 for 100 Mbit/s), "
                f"got {rate_bps!r}"
            )
        if not 0.001 <= queue_latency_s <= 1.0:
            raise ConfigError(f"ShapedNetwork: queue_latency_s must be in 0.001..1 s, got {queue_latency_s!r}")
        self.n = hosts
        self.rate_bps = float(rate_bps)
        self.shape_downlinks = shape_downlinks
        self.queue_latency_s = queue_latency_s
        pid = os.getpid()
        self.prefix = f"{PREFIX}{pid}"
        self.switch = f"{self.prefix}sw"
        subnet = 10 + pid % 240
        self.hosts = [
            Host(i, f"{self.prefix}h{i}", f"{self.prefix}h{i}", f"10.199.{subnet}.{i + 1}")
            for i in range(hosts)
        ]
        self._made: list[str] = []
        self._old_handlers: dict[int, Any] = {}
        self._up = False

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> ShapedNetwork:
        ok, why = netns_available()
        if not ok:
            raise NetnsUnavailable(why)
        self._install_handlers()
        atexit.register(self.teardown)
        try:
            cleanup_stale()
            self._build()
        except BaseException:
            self.teardown()
            raise
        self._up = True
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.teardown()

    def _install_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            self.teardown()
            raise KeyboardInterrupt(f"signal {signum}")

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old_handlers[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread: the finally clauses still tear down
                pass

    def _restore_handlers(self) -> None:
        for sig, old in self._old_handlers.items():
            try:
                signal.signal(sig, old)
            except (ValueError, TypeError):
                pass
        self._old_handlers.clear()

    def teardown(self) -> None:
        """Delete every namespace this network made (idempotent)."""
        for name in reversed(self._made):
            _run(["ip", "netns", "del", name], check=False)
        self._made.clear()
        self._up = False
        self._restore_handlers()
        try:
            atexit.unregister(self.teardown)
        except Exception:
            pass

    # ------------------------------------------------------------------ building
    def _ns(self, ns: str, *argv: str) -> None:
        _run(["ip", "netns", "exec", ns, *argv])

    def _build(self) -> None:
        for ns in [self.switch] + [h.netns for h in self.hosts]:
            _run(["ip", "netns", "add", ns])
            self._made.append(ns)
        sw = self.switch
        self._ns(sw, "ip", "link", "add", "br0", "type", "bridge")
        self._ns(sw, "ip", "link", "set", "lo", "up")
        for h in self.hosts:
            port = f"{self.prefix}p{h.index}"
            # Both ends are created directly inside their namespaces: nothing touches root.
            _run(["ip", "link", "add", h.ifname, "netns", h.netns, "type", "veth",
                  "peer", "name", port, "netns", sw])
            self._ns(sw, "ip", "link", "set", port, "master", "br0")
            self._ns(sw, "ip", "link", "set", port, "up")
            self._ns(h.netns, "ip", "link", "set", "lo", "up")
            self._ns(h.netns, "ip", "addr", "add", f"{h.addr}/24", "dev", h.ifname)
            self._ns(h.netns, "ip", "link", "set", h.ifname, "up")
        self._ns(sw, "ip", "link", "set", "br0", "up")
        self.set_rate(self.rate_bps)

    def set_rate(self, rate_bps: float) -> None:
        """Shape every link to ``rate_bps`` bit/s (replaces the previous qdiscs)."""
        self.rate_bps = float(rate_bps)
        burst = tbf_burst_bytes(rate_bps)
        lat_ms = max(1, round(self.queue_latency_s * 1000))
        spec = ["tbf", "rate", f"{int(rate_bps)}bit", "burst", str(burst), "latency", f"{lat_ms}ms"]
        for h in self.hosts:
            self._ns(h.netns, "tc", "qdisc", "replace", "dev", h.ifname, "root", *spec)
            if self.shape_downlinks:
                self._ns(self.switch, "tc", "qdisc", "replace", "dev", f"{self.prefix}p{h.index}",
                         "root", *spec)

    # ------------------------------------------------------------------ using
    def exec_argv(self, i: int, argv: list[str], env: dict[str, str] | None = None) -> list[str]:
        """``argv`` run inside host ``i``'s namespace, with ``env`` prepended via ``env``."""
        h = self.hosts[i]
        pre = ["env", *[f"{k}={v}" for k, v in (env or {}).items()]] if env else []
        return ["ip", "netns", "exec", h.netns, *pre, *argv]

    def __repr__(self) -> str:
        return f"ShapedNetwork(hosts={self.n}, rate_bps={self.rate_bps:g}, prefix={self.prefix!r})"
