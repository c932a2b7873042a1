"""The stated uncertainty of a point's input times, and seeded draws from it.

Every time the simulator reads has a declared source (DESIGN.md, "Where every time comes
from"), and each source states how far it can be off. This module turns those statements
into distributions of a multiplicative factor on the time, so that
:mod:`gradwire.verdict` can propagate them through the simulator by Monte Carlo:

* an **estimate** with a stated median held-out relative error ``m`` (the compute estimate
  of :mod:`gradwire.models.estimate`, a codec calibration file's cost model): the log of
  the factor is normal with ``sigma = m / 0.6745`` (the median of ``|N(0, sigma)|`` is
  ``0.6745 sigma``, so the drawn errors have the stated median);
* a **measurement** with a spread ``s = (max - min) / median`` over its repeats (codec
  times measured here, the profiled compute step): the log of the factor is uniform on
  ``+-log(1 + s/2)``, the truth anywhere in the measured range around the median;
* the **network's efficiency** (payload bytes per wire byte) drawn uniformly from a range:
  the scenario's ``verdict.network_efficiency``, by default ``network.efficiency`` times
  ``1 -+ 0.067`` (at most 1: no payload moves faster than the wire) -- the simulator's
  largest error on real gloo collectives over a shaped network (docs/validation.md: median
  2.2%, max 6.7%);
* a time given with no error (``model.measured``, a profile file, a cost model on
  datasheet constants) is drawn as exact and **named** as unstated, so a verdict never
  claims a certainty it was not given.

Errors are symmetric in the log, so a draw around an estimate is as likely to be the
truth as the estimate is to be a draw around the truth. Draws are seeded: compute and
network from ``(seed, 0)``, each codec's from ``(seed, 1, crc32(codec spec))``, so adding
a codec to a scenario leaves the others' draws as they were, and the same draw of compute
and network is applied to every codec of a point (common random numbers: compute is
shared by the baseline and the compressed options, so their times are correlated).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# median of |N(0, 1)|: a normal error with this sigma has median absolute value 1
MEDIAN_ABS_NORMAL = 0.6744897501960817
# docs/validation.md: the simulator's largest |error| on real collectives (K = 4, 1-50 MB)
NETWORK_ERROR = 0.067

KINDS = ("normal", "uniform", "exact", "unstated")


@dataclass(frozen=True)
class TimeError:
    """The relative error of one input time. The log of its factor is ``Normal(0, scale)``
    (``normal``), ``Uniform(-scale, scale)`` (``uniform``), or zero (``exact``, and
    ``unstated``: no error was given, which the verdict names)."""

    kind: str
    scale: float
    basis: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"TimeError.kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not (math.isfinite(self.scale) and self.scale >= 0):
            raise ValueError(f"TimeError.scale must be a finite number >= 0, got {self.scale!r}")

    @classmethod
    def stated_median(cls, median: float, what: str) -> TimeError:
        """From a stated median absolute relative error (NaN: none stated)."""
        if not median == median:
            return cls("unstated", 0.0, f"{what}: no stated error")
        if median <= 0:
            return cls("exact", 0.0, f"{what}: exact")
        return cls("normal", median / MEDIAN_ABS_NORMAL, f"{what} ±{median:.0%} median (stated)")

    @classmethod
    def spread(cls, spread: float, what: str) -> TimeError:
        """From the spread ``(max - min) / median`` of repeated measurements."""
        if not spread > 0:
            return cls("exact", 0.0, f"{what}: no spread")
        return cls("uniform", math.log1p(spread / 2), f"{what} spread {spread:.0%} (measured)")

    def factors(self, normal: np.ndarray, uniform: np.ndarray) -> np.ndarray:
        """Multiplicative factors from standard normal and uniform [0, 1) draws."""
        if self.kind == "normal":
            return np.exp(self.scale * normal)
        if self.kind == "uniform":
            return np.exp(self.scale * (2.0 * uniform - 1.0))
        return np.ones_like(normal)

    @property
    def stated(self) -> bool:
        return self.kind != "unstated"


EXACT = TimeError("exact", 0.0, "exact")


@dataclass(frozen=True)
class Draws:
    """``n`` joint draws of a point's inputs: factors on the compute times and on each
    codec's encode and decode times, and the network's efficiency."""

    n: int
    compute: np.ndarray
    efficiency: np.ndarray
    encode: dict[str, np.ndarray] = field(default_factory=dict)
    decode: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class PointUncertainty:
    """The errors of one point's inputs: compute (shared by every codec), each codec's
    encode and decode (by codec spec), and the network's efficiency range."""

    compute: TimeError
    encode: Mapping[str, TimeError]
    decode: Mapping[str, TimeError]
    network_efficiency: tuple[float, float]

    def draw(self, n: int, seed: int) -> Draws:
        """``n`` seeded draws (see the module docstring for the streams)."""
        if n < 1:
            raise ValueError(f"draws must be >= 1, got {n}")
        rng = np.random.default_rng([seed, 0])
        z, u = rng.standard_normal(n), rng.random(n)
        lo, hi = self.network_efficiency
        eff = lo + (hi - lo) * rng.random(n)
        enc: dict[str, np.ndarray] = {}
        dec: dict[str, np.ndarray] = {}
        for spec in self.encode:
            r = np.random.default_rng([seed, 1, zlib.crc32(spec.encode())])
            zz, uu = r.standard_normal((2, n)), r.random((2, n))
            enc[spec] = self.encode[spec].factors(zz[0], uu[0])
            dec[spec] = self.decode[spec].factors(zz[1], uu[1])
        return Draws(n, self.compute.factors(z, u), eff, enc, dec)

    def unstated(self) -> list[str]:
        """The inputs whose error was not given (drawn as exact)."""
        errs = [self.compute, *self.encode.values(), *self.decode.values()]
        return list(dict.fromkeys(e.basis for e in errs if not e.stated))

    def basis(self) -> str:
        """What the interval draws, in words."""
        parts = [self.compute.basis] if self.compute.kind in ("normal", "uniform") else []
        codec = [e for e in (*self.encode.values(), *self.decode.values()) if e.kind in ("normal", "uniform")]
        spreads = sorted(2 * math.expm1(e.scale) for e in codec if e.kind == "uniform")
        medians = sorted(e.scale * MEDIAN_ABS_NORMAL for e in codec if e.kind == "normal")
        if spreads:
            parts.append(f"codec times spread {spreads[0]:.0%}-{spreads[-1]:.0%} (measured)"
                         if spreads[-1] > spreads[0] else f"codec times spread {spreads[0]:.0%} (measured)")
        if medians:
            parts.append(f"codec cost model ±{medians[-1]:.0%} median (stated)")
        lo, hi = self.network_efficiency
        parts.append(f"network efficiency {lo:.2f}-{hi:.2f}" if hi > lo else f"network efficiency {lo:.2f}")
        unstated = self.unstated()
        if unstated:
            parts.append("not stated (drawn exact): " + "; ".join(unstated))
        return "; ".join(parts)


def compute_error(workload: Any) -> TimeError:
    """The error of a workload's compute times (a :class:`gradwire.pipeline.WorkloadSummary`)."""
    source = str(workload.compute_source)
    if source.startswith("estimate"):
        return TimeError.stated_median(float(workload.compute_error), "compute estimate")
    if float(workload.compute_spread) > 0:
        return TimeError.spread(float(workload.compute_spread), "compute")
    if source.startswith("measured here"):
        return TimeError("exact", 0.0, "compute: measured once")
    what = "compute given in the scenario" if source.startswith("given") else "compute from a profile file"
    return TimeError("unstated", 0.0, what)


def codec_errors(profile: Any) -> tuple[TimeError, TimeError]:
    """Encode and decode errors of a :class:`gradwire.pipeline.CodecProfile`."""
    if profile.exchange.in_place or str(profile.codec_source).startswith("declared"):
        return EXACT, EXACT
    what = f"{profile.spec}"
    if profile.encode_error != 0 or profile.decode_error != 0:
        errs = tuple(TimeError.stated_median(float(e), f"{what} cost model")
                     for e in (profile.encode_error, profile.decode_error))
        unstated = TimeError("unstated", 0.0, "codec cost model on datasheet constants")
        return errs[0] if errs[0].stated else unstated, errs[1] if errs[1].stated else unstated
    return (TimeError.spread(float(profile.encode_spread), f"{what} encode"),
            TimeError.spread(float(profile.decode_spread), f"{what} decode"))


def network_range(efficiency: float, stated: Sequence[float] | None) -> tuple[float, float]:
    """The efficiency range drawn: the scenario's ``verdict.network_efficiency`` or
    ``efficiency x (1 -+ NETWORK_ERROR)``, at most 1."""
    if stated is not None:
        return float(min(stated)), float(max(stated))
    return efficiency * (1 - NETWORK_ERROR), min(1.0, efficiency * (1 + NETWORK_ERROR))


def point_uncertainty(workload: Any, profiles: Mapping[str, Any], efficiency: float,
                      stated_range: Sequence[float] | None = None) -> PointUncertainty:
    """The errors of a point whose workload and codec profiles (by spec) are given."""
    enc: dict[str, TimeError] = {}
    dec: dict[str, TimeError] = {}
    for spec, prof in profiles.items():
        enc[spec], dec[spec] = codec_errors(prof)
    return PointUncertainty(compute_error(workload), enc, dec, network_range(efficiency, stated_range))


__all__ = [
    "EXACT",
    "MEDIAN_ABS_NORMAL",
    "NETWORK_ERROR",
    "Draws",
    "PointUncertainty",
    "TimeError",
    "codec_errors",
    "compute_error",
    "network_range",
    "point_uncertainty",
]
