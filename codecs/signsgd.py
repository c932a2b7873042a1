"""signSGD (one sign bit per element) and EF-signSGD (scaled signs with error feedback).

Without error feedback (Bernstein et al., 2018) a worker sends ``sign(g)`` (``sgn(0) =
+1``), ``n`` bits; one payload decodes to ``+-1`` (the learning rate carries the
magnitude) and :meth:`SignSGD.aggregate` is the majority vote ``sign(sum_k sign(g_k))``,
with 0 where the vote ties. With ``error_feedback=True`` (Karimireddy et al., ICML 2019,
Algorithm 1): ``p = g + e``; send ``(||p||_1 / n) * sign(p)`` as one fp32 scale plus
``n`` bits; ``e <- p - sent``; workers' payloads are averaged. Tensors under
``min_numel`` elements are sent unquantized.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from gradwire.codecs.base import (
    CODECS,
    Codec,
    CodecState,
    Payload,
    check_encoded_finite,
    check_finite,
    ef_input,
    ef_update,
    expect_finite,
    expect_nbytes,
    raw_decode,
    raw_payload,
    state_for,
)
from gradwire.codecs.bitpack import pack, unpack
from gradwire.codecs.cost import CodecWork, Work, raw_work, stream
from gradwire.codecs.qsgd import DEFAULT_MIN_NUMEL, check_int
from gradwire.errors import ConfigError


@CODECS.register("signsgd")
class SignSGD(Codec):
    """Sign compression, optionally with EF-signSGD's scale and error feedback."""

    name = "signsgd"

    def __init__(self, *, error_feedback: bool = False, min_numel: int = DEFAULT_MIN_NUMEL,
                 seed: int = 0) -> None:
        super().__init__(seed=seed)
        if not isinstance(error_feedback, bool):
            raise ConfigError(
                f"codec 'signsgd': error_feedback must be true or false, got {error_feedback!r}"
            )
        self.error_feedback = error_feedback
        self.min_numel = check_int("min_numel", self.name, min_numel, 0)

    @property
    def stateful(self) -> bool:  # type: ignore[override]
        return self.error_feedback

    def params(self) -> dict[str, Any]:
        return {"error_feedback": self.error_feedback, "min_numel": self.min_numel}

    def _values(self, val: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Bits (val >= 0) and the per-row scale for rows of ``val`` ([K, n])."""
        pos = val >= 0
        if self.error_feedback:
            scale = val.abs().sum(dim=1) / val.shape[1]
        else:
            scale = torch.ones(val.shape[0], device=val.device)
        return pos, scale

    @staticmethod
    def _recon(pos: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        s = scale.unsqueeze(1)
        return torch.where(pos, s, -s)

    # --- cost model (gradwire.codecs.cost) ---------------------------------------------
    def work(self, shape: tuple[int, ...]) -> CodecWork:
        """Encode: a finiteness sum, the sign test, a byte cast, bit packing; with error
        feedback also ``g + e``, the L1 norm, the scaled signs and ``e <- p - sent``.
        Decode: unpack to int32, test, select +-scale."""
        n = math.prod(shape)
        if n < self.min_numel or n == 0:
            return raw_work(n)
        ef = (12, 8 + 4, 1 + 4, 12) if self.error_feedback else ()
        return CodecWork(
            encode=Work(bytes=stream(n, 4, 4 + 1, 1 + 1, 1 + 1 / 8, *ef), launches=5 + len(ef),
                        calls=1, reduce=n * (2 if self.error_feedback else 1), pack=n),
            decode=Work(bytes=stream(n, 1 / 8 + 4, 4 + 1, 1 + 4), launches=4, calls=1, pack=n),
        )

    def encode(self, tensor: torch.Tensor, state: CodecState | None = None) -> Payload:
        check_finite(tensor, self.name)
        n = tensor.numel()
        if n < self.min_numel or n == 0:
            return raw_payload(tensor, self.name)
        shape = tuple(tensor.shape)
        if self.error_feedback:
            st = state_for(self, tensor, state)
            val = ef_input(tensor, st).reshape(1, n)
        else:
            val = tensor.detach().reshape(1, n)
        pos, scale = self._values(val)
        bits = pack(pos.reshape(-1).to(torch.uint8), 1)
        if not self.error_feedback:
            return Payload(bits, n, shape, tensor.dtype, self.name)
        check_encoded_finite(scale, self.name, shape, "scale (mean magnitude)")
        ef_update(st, val.reshape(shape), self._recon(pos, scale).reshape(shape))
        data = torch.cat([scale.to(torch.float32).view(torch.uint8), bits])
        return Payload(data, 32 + n, shape, tensor.dtype, self.name)

    def decode(self, payload: Payload) -> torch.Tensor:
        n = payload.numel
        if n < self.min_numel or n == 0:
            return raw_decode(payload)
        head = 4 if self.error_feedback else 0
        expect_nbytes(payload, self.name, head + (n + 7) // 8, 8 * head + n)
        if self.error_feedback:
            scale = payload.data[:4].view(torch.float32)
            expect_finite(scale, payload, self.name, "scale", nonneg=True)
            bits = payload.data[4:]
        else:
            scale = torch.ones(1, device=payload.data.device)
            bits = payload.data
        pos = (unpack(bits, n, 1) > 0).reshape(1, n)
        return self._recon(pos, scale).to(payload.dtype).reshape(payload.shape)

    def quantize(self, tensor: torch.Tensor, state: CodecState | None = None) -> torch.Tensor:
        st = state_for(self, tensor, state)
        return self.quantize_many(tensor.unsqueeze(0), [st])[0]

    def quantize_many(self, stacked: torch.Tensor, states: Sequence[CodecState]) -> torch.Tensor:
        if stacked.dim() < 1 or stacked.shape[0] != len(states):
            raise ConfigError("quantize_many: pass one state per row of the stacked tensor")
        check_finite(stacked, self.name)
        kk = stacked.shape[0]
        n = math.prod(stacked.shape[1:])
        if n < self.min_numel or n == 0:
            return stacked.detach().clone()
        if self.error_feedback:
            val = torch.stack([ef_input(stacked[k], st).reshape(n) for k, st in enumerate(states)])
        else:
            val = stacked.detach().reshape(kk, n).to(torch.float32)
        pos, scale = self._values(val)
        decoded = self._recon(pos, scale)
        if self.error_feedback:
            for k, st in enumerate(states):
                ef_update(st, val[k].reshape(stacked.shape[1:]),
                          decoded[k].reshape(stacked.shape[1:]))
        return decoded.to(stacked.dtype).reshape(stacked.shape)

    def aggregate(
        self, tensors: Sequence[torch.Tensor], states: Sequence[CodecState]
    ) -> torch.Tensor:
        """Majority vote without error feedback; the mean of decoded payloads with it."""
        if self.error_feedback or (tensors and tensors[0].numel() < self.min_numel):
            return super().aggregate(tensors, states)
        if len(tensors) != len(states) or not tensors:
            raise ConfigError("aggregate: one state per tensor is required (at least one worker)")
        votes = self.quantize_many(torch.stack(list(tensors)), states).to(torch.float32).sum(0)
        return torch.sign(votes).to(tensors[0].dtype)
