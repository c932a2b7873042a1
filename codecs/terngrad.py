"""TernGrad (Wen et al., NeurIPS 2017): stochastic ternary levels {-1, 0, +1} times a scale.

Per tensor (the paper's layer-wise scaling): clip ``g`` to ``[-c*sigma, c*sigma]`` with
``sigma`` the standard deviation of ``g`` (population form) and ``c = clip = 2.5``; with
``scale = max|clipped|`` each entry becomes ``scale * sign * b_i``, ``b_i ~
Bernoulli(|clipped_i| / scale)`` -- unbiased for the clipped gradient. This is exactly
QSGDinf with one level (``s = 1``) and one bucket spanning the tensor, so it reuses the
qsgd kernels and wire format: one fp32 scale, then 2 bits per element. Tensors under
``min_numel`` elements are sent unquantized.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from gradwire.codecs.base import (
    CODECS,
    Codec,
    CodecState,
    Payload,
    check_finite,
    raw_decode,
    raw_payload,
    state_for,
)
from gradwire.codecs.cost import CodecWork, Work, raw_work, stream
from gradwire.codecs.qsgd import DEFAULT_MIN_NUMEL, QSGD, check_int
from gradwire.errors import ConfigError


@CODECS.register("terngrad")
class TernGrad(Codec):
    """Ternary stochastic quantization with gradient clipping (see module docstring)."""

    name = "terngrad"

    def __init__(self, *, clip: float = 2.5, min_numel: int = DEFAULT_MIN_NUMEL,
                 seed: int = 0) -> None:
        super().__init__(seed=seed)
        if isinstance(clip, bool) or not isinstance(clip, int | float) or not clip > 0:
            raise ConfigError(f"codec 'terngrad': clip={clip!r} is impossible; it must be > 0 "
                              "(a multiple of the gradient's standard deviation)")
        self.clip = float(clip)
        self.min_numel = check_int("min_numel", self.name, min_numel, 0)

    def params(self) -> dict[str, Any]:
        return {"clip": self.clip, "min_numel": self.min_numel}

    def _inner(self, n: int) -> QSGD:
        return QSGD(levels=1, bucket=max(1, n), norm="max", min_numel=0)

    def _clipped(self, rows: torch.Tensor) -> torch.Tensor:
        """Clip each row of ``rows`` ([K, n], fp32) at ``clip`` standard deviations."""
        bound = self.clip * rows.std(dim=1, correction=0, keepdim=True)
        return torch.minimum(torch.maximum(rows, -bound), bound)

    # --- cost model (gradwire.codecs.cost) ---------------------------------------------
    def work(self, shape: tuple[int, ...]) -> CodecWork:
        """A finiteness sum, the standard deviation, two clipping passes, then QSGDinf with
        one level and one bucket (max pass, quantize-and-pack pass at 2 bits)."""
        n = math.prod(shape)
        if n < self.min_numel or n == 0:
            return raw_work(n)
        wire = 4 + n * 2 / 8
        return CodecWork(
            encode=Work(bytes=stream(n, 4, 4, 8, 8, 4, 4) + wire, launches=11, calls=1, rng=n,
                        reduce=3 * n, pack=n),
            decode=Work(bytes=wire + stream(n, 4), launches=3, calls=1, pack=n),
        )

    def encode(self, tensor: torch.Tensor, state: CodecState | None = None) -> Payload:
        check_finite(tensor, self.name)
        n = tensor.numel()
        if n < self.min_numel or n == 0:
            return raw_payload(tensor, self.name)
        st = state_for(self, tensor, state)
        clipped = self._clipped(tensor.detach().reshape(1, n).to(torch.float32))
        p = self._inner(n).encode(clipped.reshape(tensor.shape), st)
        return Payload(p.data, p.nbits, tuple(tensor.shape), tensor.dtype, self.name)

    def decode(self, payload: Payload) -> torch.Tensor:
        n = payload.numel
        if n < self.min_numel or n == 0:
            return raw_decode(payload)
        inner = self._inner(n)
        return inner.decode(replace(payload, codec=inner.name, spec=""))

    def quantize(self, tensor: torch.Tensor, state: CodecState | None = None) -> torch.Tensor:
        st = state_for(self, tensor, state)
        return self.quantize_many(tensor.unsqueeze(0), [st])[0]

    def quantize_many(self, stacked: torch.Tensor, states: Sequence[CodecState]) -> torch.Tensor:
        if stacked.dim() < 1 or stacked.shape[0] != len(states):
            raise ConfigError("quantize_many: pass one state per row of the stacked tensor")
        check_finite(stacked, self.name)
        kk = stacked.shape[0]
        n = stacked[0].numel() if kk else 0
        if n < self.min_numel or n == 0:
            return stacked.detach().clone()
        clipped = self._clipped(stacked.detach().reshape(kk, n).to(torch.float32))
        out = self._inner(n).quantize_many(clipped, states)
        return out.to(stacked.dtype).reshape(stacked.shape)
