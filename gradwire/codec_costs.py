"""Where a scenario's codec times come from: host measurement, calibration file, or model.

:func:`codec_times` is the codec-measuring part of :func:`gradwire.pipeline.prepare`. In
order of precedence:

1. ``codec.costs`` names a calibration file (``run_sim.py calibrate-codecs``): the codec's
   declared work (:meth:`Codec.work`) priced with the file's measured constants. The file
   must come from the device the scenario asks about (``model.target_device``, or this
   host when there is none).
2. ``model.target_device`` is set: a calibration shipped for that GPU in
   ``models/codec_costs/<NAME>.json`` when there is one, else the datasheet constants of
   :func:`gradwire.codecs.cost.gpu_defaults` (an estimate, flagged as such).
3. Otherwise the codecs run on the device at hand and are timed there, through the
   on-disk cache of :mod:`gradwire.codecs.host_cache`, so the same scenario gives the same
   numbers on every run and sweep resume.

A host CPU's time is never rescaled into a GPU's. ``codec.per_tensor_overhead_us`` adds a
stated cost per tensor to every encode and decode whatever the source (another
framework's implementation: a Python loop over tensors, unfused operations); the
identity (fp32), which runs no codec, pays none.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from gradwire.codecs.base import Codec
from gradwire.scenarios.schema import Scenario


@dataclass(frozen=True)
class CodecTimes:
    """Per tensor encode/decode seconds, per-call (per bucket) seconds, and their source."""

    encode_s: tuple[float, ...]
    decode_s: tuple[float, ...]
    encode_call_s: float
    decode_call_s: float
    source: str
    estimate: bool
    # their uncertainty (gradwire.uncertainty): the spread of host measurements,
    # ``(max - min) / median`` weighted by time, and a cost model's stated median held-out
    # relative error of encode and of decode (NaN: a model with no stated error)
    encode_spread: float = 0.0
    decode_spread: float = 0.0
    encode_error: float = 0.0
    decode_error: float = 0.0


def _weighted(spread: Sequence[float], seconds: Sequence[float]) -> float:
    total = sum(seconds)
    return float(sum(s * t for s, t in zip(spread, seconds, strict=True)) / total) if total > 0 else 0.0


def _shipped(profile: str) -> Path | None:
    from gradwire.codecs.calibrate import shipped_calibration

    return shipped_calibration(profile)


def codec_times(sc: Scenario, codec: Codec, gradients: Sequence[torch.Tensor], device: str,
                log: Callable[[str], None] | None = None) -> CodecTimes:
    """The codec's times on ``gradients`` (in backward order) for scenario ``sc``."""
    from gradwire.codecs.calibrate import check_device, load_calibration
    from gradwire.codecs.cost import Work, gpu_defaults

    say = log or (lambda _m: None)
    extra = sc.codec.per_tensor_overhead_us * 1e-6
    note = f", +{sc.codec.per_tensor_overhead_us:g} us per tensor (stated)" if extra else ""
    target = sc.model.target_device
    cal_path: Path | None = Path(sc.codec.costs) if sc.codec.costs is not None else None
    if cal_path is None and target is not None:
        cal_path = _shipped(target)
    works = [codec.work(tuple(g.shape)) for g in gradients]
    if all(w.encode == Work() and w.decode == Work() for w in works):
        # the identity runs no codec at all, so no implementation's overhead applies to it
        zeros = tuple(0.0 for _ in gradients)
        return CodecTimes(zeros, zeros, 0.0, 0.0, f"declared: {codec.spec()} runs no codec work",
                          False)
    if cal_path is None and target is None:
        from gradwire.codecs.host_cache import measure_cached

        ht = measure_cached(codec, gradients, device=device, repeats=sc.measure.repeats,
                            seed=sc.seed, log=say)
        return CodecTimes(tuple(t + extra for t in ht.encode_s), tuple(t + extra for t in ht.decode_s),
                          0.0, 0.0, ht.source() + note, False,
                          encode_spread=_weighted(ht.encode_spread, ht.encode_s),
                          decode_spread=_weighted(ht.decode_spread, ht.decode_s))
    spec = codec.spec()
    if cal_path is not None:
        cal = load_calibration(cal_path)
        check_device(cal, target_device=target, host_device=device)
        enc = [cal.seconds(spec, "encode", w.encode) for w in works]
        dec = [cal.seconds(spec, "decode", w.decode) for w in works]
        refined = " (codec refined)" if spec in cal.refine else ""
        return CodecTimes(tuple(e[0] + extra for e in enc), tuple(d[0] + extra for d in dec),
                          max((e[1] for e in enc), default=0.0), max((d[1] for d in dec), default=0.0),
                          cal.source() + refined + note, False,
                          encode_error=cal.error(spec, "encode"), decode_error=cal.error(spec, "decode"))
    assert target is not None  # the remaining case: a GPU asked about, no file
    consts = gpu_defaults(target, memory_efficiency=sc.model.memory_efficiency,
                          compute_efficiency=sc.model.compute_efficiency)
    return CodecTimes(
        tuple(consts.seconds(w.encode.per_tensor()) + extra for w in works),
        tuple(consts.seconds(w.decode.per_tensor()) + extra for w in works),
        max((consts.seconds(w.encode.per_call()) for w in works), default=0.0),
        max((consts.seconds(w.decode.per_call()) for w in works), default=0.0),
        f"model ({target} datasheet constants, models/devices.yaml; no calibration file){note}",
        True,
        encode_error=float("nan"),
        decode_error=float("nan"),
    )
