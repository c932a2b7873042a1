"""Measure what a codec costs on one tensor: exact payload bits and median encode/decode time.

The iteration simulator calls :func:`measure_codec` once per parameter gradient; the
times are wall-clock seconds on the tensor's device (CUDA work is synchronised before the
clock is read), medians over ``repeats`` runs after ``warmup`` unrecorded ones. Every run
starts from a fresh state seeded with ``seed``, so a stateful codec (error feedback, warm
start) is timed on the same work each time and the bit count is reproducible.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

from gradwire.codecs.base import Codec, CodecState, new_generator
from gradwire.errors import ConfigError


@dataclass(frozen=True)
class CodecCost:
    """One codec on one tensor: ``nbits`` on the wire, median seconds to encode and decode."""

    nbits: int
    encode_s: float
    decode_s: float
    numel: int
    # (max - min) / median of the recorded repeats: how much the timings spread
    encode_spread: float = 0.0
    decode_spread: float = 0.0

    @property
    def bits_per_element(self) -> float:
        return self.nbits / max(1, self.numel)

    @property
    def compression_ratio(self) -> float:
        """``32 n / nbits``: how many times smaller than fp32."""
        return 32 * self.numel / max(1, self.nbits)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fresh_state(codec: Codec, device: torch.device, seed: int) -> CodecState:
    """A worker-0 state whose generator is seeded with ``seed``."""
    state = codec.new_state(device)
    state.generator = new_generator(seed, device)
    return state


def measure_codec(
    codec: Codec, tensor: torch.Tensor, *, repeats: int = 3, warmup: int = 1, seed: int = 0
) -> CodecCost:
    """Encode and decode ``tensor`` ``warmup + repeats`` times; report median times."""
    if repeats < 1:
        raise ConfigError(f"measure_codec: repeats={repeats} must be >= 1")
    if warmup < 0:
        raise ConfigError(f"measure_codec: warmup={warmup} must be >= 0")
    dev = tensor.device
    enc: list[float] = []
    dec: list[float] = []
    nbits = -1
    for i in range(warmup + repeats):
        state = fresh_state(codec, dev, seed)
        _sync(dev)
        t0 = time.perf_counter()
        payload = codec.encode(tensor, state)
        _sync(dev)
        t1 = time.perf_counter()
        codec.decode(payload)
        _sync(dev)
        t2 = time.perf_counter()
        if i >= warmup:
            enc.append(t1 - t0)
            dec.append(t2 - t1)
        nbits = payload.nbits
    me, md = statistics.median(enc), statistics.median(dec)
    return CodecCost(nbits, me, md, tensor.numel(),
                     (max(enc) - min(enc)) / me if me else 0.0, (max(dec) - min(dec)) / md if md else 0.0)


def measure_accumulate(tensor: torch.Tensor, *, repeats: int = 3, warmup: int = 1) -> float:
    """Median seconds to add one decoded gradient of ``tensor``'s size into a float32 sum.

    After a gather a rank decodes every rank's payload and sums them: this is the cost of
    one such addition (``acc += decoded``: two reads and one write of float32 per element),
    timed on the tensor's device like the codec's own encode and decode.
    """
    if repeats < 1:
        raise ConfigError(f"measure_accumulate: repeats={repeats} must be >= 1")
    dev = tensor.device
    x = tensor.detach().to(torch.float32).reshape(-1)
    acc = torch.zeros_like(x)
    times: list[float] = []
    for i in range(warmup + repeats):
        _sync(dev)
        t0 = time.perf_counter()
        acc.add_(x)
        _sync(dev)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)
