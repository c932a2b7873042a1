"""Unit conversion at the scenario edge: ``_Gbps``, ``_us``, ``_ms``, ``_MB`` keys -> SI.

Scenario files speak the units people use (``bandwidth_Gbps: 10``, ``latency_us: 2``);
everything past this module speaks SI with the unit in the name (``bandwidth_Bps``,
``latency_s``). A bit is 1/8 byte; a Gbit is 1e9 bits; a MB is 1e6 bytes.
"""

from __future__ import annotations

from typing import Any

_SUFFIXES: dict[str, tuple[str, float]] = {
    "_Gbps": ("_Bps", 1e9 / 8),
    "_Mbps": ("_Bps", 1e6 / 8),
    "_us": ("_s", 1e-6),
    "_ms": ("_s", 1e-3),
    "_MB": ("_bytes", 1e6),
}


def si_key(key: str) -> str:
    """``bandwidth_Gbps`` -> ``bandwidth_Bps``; keys without a unit suffix are unchanged."""
    for suffix, (si, _) in _SUFFIXES.items():
        if key.endswith(suffix):
            return key[: -len(suffix)] + si
    return key


def si_value(key: str, value: Any) -> Any:
    for suffix, (_, factor) in _SUFFIXES.items():
        if key.endswith(suffix) and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value) * factor
    return value


def user_key(si_name: str) -> str:
    """The scenario spelling of an SI parameter name (for messages listing what is allowed)."""
    if si_name.endswith("_Bps"):
        return si_name[: -len("_Bps")] + "_Gbps"
    if si_name.endswith("_s"):
        return si_name[: -len("_s")] + "_us"
    if si_name.endswith("_bytes"):
        return si_name[: -len("_bytes")] + "_MB"
    return si_name


def to_si(params: dict[str, Any]) -> dict[str, Any]:
    return {si_key(k): si_value(k, v) for k, v in params.items()}


def cluster_params(cluster: Any) -> dict[str, Any]:
    """The SI keyword parameters of a cluster section's topology builder."""
    extra = dict(getattr(cluster, "model_extra", None) or {})
    params = to_si(extra)
    if getattr(cluster, "graph_file", None) is not None:
        params["path"] = cluster.graph_file
    return params
