"""Scenario points as the reports see them: swept axes and readable point labels.

A sweep's rows carry their scenario values in ``Row.params`` by path (e.g.
``cluster.bandwidth_Gbps``). The swept axes are the paths that take more than one value
across the rows; a point is labelled by its values on those axes
(``workers=8, bandwidth_Gbps=10``) rather than by its opaque ``point_id``. Values may be
numbers, text or lists, so comparison and ordering tolerate mixed types.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Any

from gradwire.results import Row


def hashable(v: Any) -> Hashable:
    """Scenario values may be lists or dicts; they are compared by their text then."""
    try:
        hash(v)
    except TypeError:
        return repr(v)
    return v  # type: ignore[no-any-return]


def sort_key(v: Any) -> tuple[int, float, str]:
    """Numbers in numeric order before everything else in text order (mixed types allowed)."""
    if isinstance(v, bool):
        return (1, 0.0, str(v))
    if isinstance(v, int | float) and not (isinstance(v, float) and math.isnan(v)):
        return (0, float(v), "")
    return (1, 0.0, str(v))


def fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def point_values(row: Row) -> dict[str, Any]:
    """A row's scenario values by path, with ``workers`` always present."""
    values = dict(row.params)
    values.setdefault("workers", row.workers)
    return values


def swept_axes(rows: Sequence[Row]) -> dict[str, list[Any]]:
    """Scenario paths taking more than one value across ``rows``, with their sorted values.

    Paths come from each row's ``params`` (plus ``workers``); the order is that of first
    appearance so that ties between axes are broken the same way every time.
    """
    seen: dict[str, dict[Hashable, Any]] = {}
    for r in rows:
        for k, v in point_values(r).items():
            seen.setdefault(k, {}).setdefault(hashable(v), v)
    return {k: sorted(vals.values(), key=sort_key) for k, vals in seen.items() if len(vals) > 1}


def short_names(paths: Sequence[str]) -> dict[str, str]:
    """Each path's last component (``cluster.bandwidth_Gbps`` -> ``bandwidth_Gbps``),
    unless two paths share it; then both keep their full path."""
    last = [p.rsplit(".", 1)[-1] for p in paths]
    return {p: (s if last.count(s) == 1 else p) for p, s in zip(paths, last, strict=True)}


def point_labels(rows: Sequence[Row]) -> dict[int, str]:
    """A readable label per point: its values on the swept axes, in axis order.

    Without swept axes (a single point) the label is the row's ``point_id``.
    """
    axes = list(swept_axes(rows))
    names = short_names(axes)
    labels: dict[int, str] = {}
    for r in rows:
        if r.point in labels:
            continue
        vals = point_values(r)
        text = ", ".join(f"{names[a]}={fmt_value(vals.get(a))}" for a in axes)
        labels[r.point] = text or r.point_id or f"point {r.point}"
    return labels
