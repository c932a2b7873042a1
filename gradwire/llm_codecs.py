"""Codec payloads of meta-only models: real encodings of a seeded synthetic gradient source.

A meta-only model (an LLM decoder, :mod:`gradwire.models.zoo.llama`) has no real gradients
here, and its tensors are too large to encode on the host. :func:`synthetic_codec_profile`
replaces :func:`gradwire.pipeline.codec_profile` for it, with a stated source:

* **the gradient**: i.i.d. normal values of standard deviation :data:`GRAD_STD`, drawn from a
  generator seeded by (scenario seed, tensor shape, rows drawn), so the same scenario and
  seed give the same bytes; real gradients are heavier-tailed and partly zero (embedding
  rows of tokens not in the batch), which changes the payload of a variable-length code
  (QSGD's Elias coding: overstated by 40-52% on a small decoder's real step,
  ``benchmarks/llm_synthetic_grads.py``) but not of a fixed-width one;
* **the size**: a tensor of at most :data:`SAMPLE_ELEMENTS` elements is encoded whole, at
  its real shape. A larger one of shape ``(R, *rest)`` is encoded at ``r`` and ``2r`` rows
  (``r`` = max(:data:`MIN_ROWS`, SAMPLE_ELEMENTS / row width)) and its payload bits are
  extended affinely to ``R`` rows: exact for every payload that is affine in the number of
  rows (casts, per-bucket and per-column scales, sign and top-k codes, PowerSGD's
  ``r (rows + cols)`` factors once ``r`` exceeds the rank), and the per-element rate of the
  sample otherwise. Tensors of one shape share one measurement (same source, same draw).

Encode and decode times come from the codec's cost model on the target GPU, on the full
shapes (:func:`gradwire.codec_costs.codec_times`), exactly as for any other model there.
Every row's ``codec_source`` says all this (:data:`SOURCE_LABEL`).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import torch

from gradwire.errors import CodecError

GRAD_STD = 1e-3
SAMPLE_ELEMENTS = 2**21
MIN_ROWS = 64
SOURCE_LABEL = (f"payload sizes from synthetic gradients (seeded i.i.d. normal, std {GRAD_STD:g}; "
                f"tensors over {SAMPLE_ELEMENTS:,} elements encoded at two row counts and "
                "extended affinely in rows): the model is meta-only")  # fmt: skip


def sample_rows(shape: tuple[int, ...]) -> tuple[int, int] | None:
    """The two row counts a tensor of ``shape`` is encoded at, or ``None`` when it is
    encoded whole."""
    n = 1
    for d in shape:
        n *= d
    if n <= SAMPLE_ELEMENTS or not shape:
        return None
    width = n // shape[0]
    r1 = max(MIN_ROWS, SAMPLE_ELEMENTS // width)
    return None if 2 * r1 >= shape[0] else (r1, 2 * r1)


def encoded_shapes(shapes: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """The shapes :func:`synthetic_codec_profile` encodes for tensors of ``shapes`` (once per
    distinct shape: whole, or its two row samples), for planning a run's cost."""
    out: list[tuple[int, ...]] = []
    for shape in dict.fromkeys(tuple(s) for s in shapes):
        rows = sample_rows(shape)
        out += [shape] if rows is None else [(r, *shape[1:]) for r in rows]
    return out


def synthetic_gradient(shape: tuple[int, ...], rows: int, seed: int) -> torch.Tensor:
    """``rows`` rows of a tensor of ``shape`` from the synthetic source (CPU float32)."""
    key = zlib.crc32(repr((tuple(shape), rows)).encode())
    gen = torch.Generator().manual_seed((seed * 0x9E3779B1 + key) % 2**63)
    return torch.randn((rows, *shape[1:]), generator=gen) * GRAD_STD


def payload_bits(codec: Any, shape: tuple[int, ...], seed: int, ranks: int, dev: str) -> tuple[int, ...]:
    """Bits of one tensor of ``shape`` for each of ``ranks`` ranks' codec states."""
    from gradwire.codecs.measure import fresh_state

    def bits_at(rows: int) -> list[int]:
        g = synthetic_gradient(shape, rows, seed).to(dev)
        out = [codec.encode(g, fresh_state(codec, g.device, seed)).nbits]
        out += [codec.encode(g, codec.new_state(dev, worker=r)).nbits for r in range(1, ranks)]
        return out

    rows = sample_rows(shape)
    if rows is None:
        return tuple(bits_at(shape[0] if shape else 1))
    (r1, r2), big = rows, shape[0]
    b1, b2 = bits_at(r1), bits_at(r2)
    return tuple(round(a + (b - a) * (big - r1) / (r2 - r1)) for a, b in zip(b1, b2, strict=True))


def synthetic_codec_profile(sc: Any, spec: str, wl: Any, dev: str, say: Callable[[str], None]) -> Any:
    """The :class:`~gradwire.pipeline.CodecProfile` of codec ``spec`` on meta-only workload ``wl``."""
    from gradwire.codec_costs import codec_times
    from gradwire.codecs import make_codec
    from gradwire.pipeline import CodecProfile, ParamCost

    codec = make_codec(spec, default_seed=sc.seed)
    by_shape: dict[tuple[int, ...], tuple[int, ...]] = {}
    for prm in wl.params:
        shape = tuple(prm.shape)
        if shape not in by_shape:
            try:
                by_shape[shape] = payload_bits(codec, shape, sc.seed, sc.measure.ranks, dev)
            except CodecError as exc:
                raise type(exc)(f"model {wl.model!r}, synthetic gradient of shape {shape}: {exc}") from None
    say(f"codec {spec}: {len(by_shape)} distinct shapes of synthetic gradients")
    shapes = [torch.empty(tuple(p.shape), device="meta") for p in wl.params]
    times = codec_times(sc, codec, shapes, dev, say)
    costs = []
    for i, prm in enumerate(wl.params):
        shape = tuple(prm.shape)
        bits = by_shape[shape]
        costs.append(ParamCost(prm.numel, bits, times.encode_s[i], times.decode_s[i],
                               tuple(codec.round_bits(b, shape) for b in bits)))
    return CodecProfile(spec, codec.name, codec.summable, tuple(costs), estimate=times.estimate,
                        exchange=codec.exchange, encode_call_s=times.encode_call_s,
                        decode_call_s=times.decode_call_s,
                        codec_source=f"{times.source}; {SOURCE_LABEL}")


__all__ = ["GRAD_STD", "MIN_ROWS", "SAMPLE_ELEMENTS", "SOURCE_LABEL", "encoded_shapes", "payload_bits", "sample_rows",
           "synthetic_codec_profile", "synthetic_gradient"]
