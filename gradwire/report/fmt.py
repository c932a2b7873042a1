"""Number formatting shared by the terminal table and the dashboard's summary table.

Times arrive in seconds and are shown with a unit chosen per value (µs, ms or s) so that
both a 40 µs decode and a 3 s iteration read naturally; speedups are shown as ``2.31×``
and a missing reference (NaN) as an em dash.
"""

from __future__ import annotations

import math

MISSING = "—"


def fmt_time(seconds: float) -> str:
    """``seconds`` with 3 significant digits in µs, ms or s."""
    if seconds is None or math.isnan(seconds):
        return MISSING
    a = abs(seconds)
    if a == 0.0:
        return "0 ms"
    if a < 1e-3:
        return f"{seconds * 1e6:.3g} µs"
    if a < 1.0:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def fmt_speedup(x: float) -> str:
    """A speedup ratio such as ``2.31×``; NaN (no reference row at that point) is a dash."""
    if x is None or math.isnan(x) or math.isinf(x):
        return MISSING
    return f"{x:.2f}×"


def fmt_bits(x: float) -> str:
    if x is None or math.isnan(x):
        return MISSING
    return f"{x:.3g}"


def fmt_ratio(x: float) -> str:
    if x is None or math.isnan(x) or math.isinf(x):
        return MISSING
    return f"{x:.3g}×"


def fmt_bytes(n: float) -> str:
    """Bytes in SI multiples (kB = 1000 B), 3 significant digits."""
    if n is None or math.isnan(n):
        return MISSING
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.3g} B"
