"""Open a dashboard in headless Chromium: check that every plot rendered, take a screenshot.

The dashboard page reports its own health (see :mod:`gradwire.report.dashboard`):
``#gw-status`` gets ``data-state="ok"`` and ``data-rendered=<n>`` once every
``Plotly.newPlot`` promise has resolved, and script errors or ``console.error`` /
``console.warn`` calls are written into ``#gw-errors``. :func:`check_page` loads the page
with Debian's ``chromium`` (``--dump-dom`` after a virtual-time budget, so timers run to
completion without waiting in real time) and reads those markers back;
:func:`screenshot` saves a PNG. Both run Chromium with networking features off and a
throw-away profile, so a check also proves the page needs nothing from the network.

``python -m gradwire.report.browser dashboard.html --screenshot shot.png`` does both from
the command line and exits non-zero when the page did not render cleanly.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from gradwire.errors import ConfigError

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
)
VIRTUAL_TIME_BUDGET_MS = 30_000
TIMEOUT_S = 90.0


def find_chromium() -> str | None:
    """Path of a Chromium binary (Debian's ``chromium``), or None when not installed."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class PageCheck:
    """What a headless load of a dashboard found."""

    state: str  # "ok", "error", or "pending" (the page never finished rendering)
    rendered: int  # plots holding a drawn plotly SVG
    expected: int  # plot containers on the page
    menu_steps: int = 0  # menu choices applied (with ``selftest=True``)
    errors: list[str] = field(default_factory=list)  # page-captured errors and warnings
    console: list[str] = field(default_factory=list)  # console lines from Chromium's log

    @property
    def ok(self) -> bool:
        return (
            self.state == "ok"
            and self.rendered == self.expected
            and not self.errors
            and not any(_is_console_error(c) for c in self.console)
        )


def _is_console_error(line: str) -> bool:
    return "Uncaught" in line or "Error" in line


def _run(chromium: str, args: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="gradwire-chromium-") as profile:
        return subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            env={**os.environ, "HOME": profile},  # no writes into the user's home
        )


def _chromium_or_error(chromium: str | None) -> str:
    found = chromium or find_chromium()
    if found is None:
        raise ConfigError(
            "chromium: no Chromium binary found; install it (Debian: apt-get install chromium) "
            "or pass its path"
        )
    return found


def check_page(
    page: str | Path,
    *,
    selftest: bool = False,
    chromium: str | None = None,
    timeout_s: float = TIMEOUT_S,
) -> PageCheck:
    """Load ``page`` headless and read the dashboard's render markers back from the DOM.

    ``selftest`` has the page apply every menu choice of every plot before reporting, so
    errors in what the menus switch to are caught as well.
    """
    path = Path(page).resolve()
    exe = _chromium_or_error(chromium)
    uri = path.as_uri() + ("#gw-selftest" if selftest else "")
    proc = _run(
        exe, [f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}", "--dump-dom", uri], timeout_s
    )
    dom = proc.stdout
    console = [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln]
    status = re.search(r"<div id=\"gw-status\"([^>]*)>", dom)
    attrs = status.group(1) if status else ""
    state = re.search(r'data-state="([^"]*)"', attrs)
    rendered = re.search(r'data-rendered="(\d+)"', attrs)
    steps = re.search(r'data-menu-steps="(\d+)"', attrs)
    errors_m = re.search(r"<pre id=\"gw-errors\"[^>]*>(.*?)</pre>", dom, re.S)
    errors = [
        html.unescape(e) for e in (errors_m.group(1).split("\n") if errors_m else []) if e.strip()
    ]
    if proc.returncode != 0:
        errors.append(f"chromium exited with status {proc.returncode}: {proc.stderr[-500:]}")
    return PageCheck(
        state=state.group(1) if state else "pending",
        rendered=int(rendered.group(1)) if rendered else 0,
        expected=len(re.findall(r"data-gw-figure=", dom)),
        menu_steps=int(steps.group(1)) if steps else 0,
        errors=errors,
        console=console,
    )


def screenshot(
    page: str | Path,
    png: str | Path,
    *,
    width: int = 1400,
    height: int = 2400,
    chromium: str | None = None,
    timeout_s: float = TIMEOUT_S,
) -> Path:
    """Save a ``width`` x ``height`` pixel PNG of ``page`` after it has rendered."""
    path = Path(page).resolve()
    out = Path(png).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    exe = _chromium_or_error(chromium)
    proc = _run(
        exe,
        [
            f"--screenshot={out}",
            f"--window-size={width},{height}",
            f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}",
            path.as_uri(),
        ],
        timeout_s,
    )
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(f"chromium could not screenshot {path}: {proc.stderr[-800:]}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m gradwire.report.browser",
        description="Check that a GradWire dashboard renders in headless Chromium.",
    )
    ap.add_argument("page", help="dashboard.html to open")
    ap.add_argument("--screenshot", help="also save a PNG here")
    ap.add_argument(
        "--menus", action="store_true", help="also apply every menu choice of every plot"
    )
    ap.add_argument("--width", type=int, default=1400, help="screenshot width in pixels")
    ap.add_argument("--height", type=int, default=2400, help="screenshot height in pixels")
    args = ap.parse_args(argv)
    try:
        result = check_page(args.page, selftest=args.menus)
        if args.screenshot:
            screenshot(args.page, args.screenshot, width=args.width, height=args.height)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    menus = f"; {result.menu_steps} menu choices applied" if args.menus else ""
    print(f"{result.rendered} of {result.expected} plots rendered{menus}; state {result.state}")
    for msg in result.errors:
        print(f"page error: {msg}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
