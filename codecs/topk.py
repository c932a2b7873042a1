"""Top-k sparsification with error feedback (Stich et al. 2018; Lin et al., DGC 2018).

``val = g + e``; the ``k = ceil(ratio * n)`` entries of largest magnitude are sent as
int32 indices (ascending) followed by their fp32 values, ``64 k`` bits; ``e`` keeps
every entry that was not sent. Ties in magnitude are broken by ``torch.topk``
(deterministic for a given device). Tensors under ``min_numel`` elements are sent
unquantized.
"""

from __future__ import annotations

import math
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
    payload_error,
    raw_decode,
    raw_payload,
    state_for,
)
from gradwire.codecs.cost import CodecWork, Work, raw_work, stream
from gradwire.codecs.qsgd import DEFAULT_MIN_NUMEL, check_int
from gradwire.errors import ConfigError


@CODECS.register("topk")
class TopK(Codec):
    """Keep the ``ratio`` fraction of largest-magnitude entries; error feedback keeps the rest."""

    name = "topk"
    stateful = True

    def __init__(self, *, ratio: float = 0.01, min_numel: int = DEFAULT_MIN_NUMEL,
                 seed: int = 0) -> None:
        super().__init__(seed=seed)
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 < ratio <= 1:
            raise ConfigError(f"codec 'topk': ratio={ratio!r} is impossible; it must be in (0, 1]")
        self.ratio = float(ratio)
        self.min_numel = check_int("min_numel", self.name, min_numel, 0)

    def params(self) -> dict[str, Any]:
        return {"ratio": self.ratio, "min_numel": self.min_numel}

    def k_for(self, n: int) -> int:
        """Entries sent for a tensor of ``n`` elements."""
        return min(n, max(1, math.ceil(self.ratio * n)))

    def _select(self, val: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        flat = val.reshape(-1)
        idx = torch.topk(flat.abs(), self.k_for(flat.numel()), sorted=False).indices
        idx = idx.sort().values
        values = flat[idx]
        decoded = torch.zeros_like(flat).index_put_((idx,), values)
        return idx, values, decoded.reshape(val.shape)

    # --- cost model (gradwire.codecs.cost) ---------------------------------------------
    def work(self, shape: tuple[int, ...]) -> CodecWork:
        """Encode: a finiteness sum, ``g + e``, ``|val|``, then the selection of ``k`` of
        ``n`` magnitudes (charged as selection work, not as a streaming pass) and the sort of
        the ``k`` indices, the gather, the dense decoded tensor and ``e <- val - decoded``.
        Decode: a zero tensor and a scatter of ``k`` values."""
        n = math.prod(shape)
        if n < self.min_numel or n == 0:
            return raw_work(n)
        k = self.k_for(n)
        return CodecWork(
            encode=Work(bytes=stream(n, 4, 12, 8, 4, 12) + 64 * k, launches=10, calls=1,
                        reduce=n, select=n + k),
            decode=Work(bytes=stream(n, 4) + 24 * k, launches=4, calls=1),
        )

    def encode(self, tensor: torch.Tensor, state: CodecState | None = None) -> Payload:
        check_finite(tensor, self.name)
        n = tensor.numel()
        if n < self.min_numel or n == 0:
            return raw_payload(tensor, self.name)
        st = state_for(self, tensor, state)
        val = ef_input(tensor, st)
        idx, values, decoded = self._select(val)
        check_encoded_finite(values, self.name, tuple(tensor.shape), "values")
        ef_update(st, val, decoded)
        data = torch.cat([idx.to(torch.int32).view(torch.uint8), values.view(torch.uint8)])
        return Payload(data, 64 * idx.numel(), tuple(tensor.shape), tensor.dtype, self.name)

    def decode(self, payload: Payload) -> torch.Tensor:
        n = payload.numel
        if n < self.min_numel or n == 0:
            return raw_decode(payload)
        k = self.k_for(n)
        expect_nbytes(payload, self.name, 8 * k, 64 * k)
        idx = payload.data[: 4 * k].view(torch.int32).to(torch.int64)
        values = payload.data[4 * k : 8 * k].view(torch.float32)
        if bool(((idx < 0) | (idx >= n)).any()) or bool((idx[1:] <= idx[:-1]).any()):
            raise payload_error(payload, self.name, f"indices are not increasing positions in 0..{n - 1}")
        expect_finite(values, payload, self.name, "value")
        out = torch.zeros(n, dtype=torch.float32, device=payload.data.device)
        out.index_put_((idx,), values)
        return out.to(payload.dtype).reshape(payload.shape)

    def quantize(self, tensor: torch.Tensor, state: CodecState | None = None) -> torch.Tensor:
        check_finite(tensor, self.name)
        if tensor.numel() < self.min_numel or tensor.numel() == 0:
            return tensor.detach().clone()
        st = state_for(self, tensor, state)
        val = ef_input(tensor, st)
        _, _, decoded = self._select(val)
        ef_update(st, val, decoded)
        return decoded.to(tensor.dtype)

