"""1-bit SGD (Seide et al., Interspeech 2014; CNTK's quantizer) with error feedback.

On ``val = gradient + residual``, each column of a weight matrix (a tensor of two or more
dimensions viewed as ``[shape[0], -1]``; a column has ``shape[0]`` entries) or each bucket
of a vector is quantized with threshold 0: one bit per entry (1 if ``val >= 0``) and two
fp32 reconstruction values, the mean of the negative entries and the mean of the
non-negative ones (an empty side counts as 0). Decoding maps bit 0 to the first mean and
bit 1 to the second; the residual ``val - decoded`` is carried to the next call in the
worker's :class:`~gradwire.codecs.base.CodecState` (without it training diverges).
Cost: ``n`` bits plus 64 bits per column or bucket. Tensors under ``min_numel`` elements
are sent unquantized (and leave the residual untouched).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from gradwire.codecs.base import (
    CODECS,
    Codec,
    CodecState,
    Payload,
    check_finite,
    ef_input,
    ef_update,
    raw_decode,
    raw_payload,
    state_for,
)
from gradwire.codecs.bitpack import pack, unpack
from gradwire.codecs.qsgd import DEFAULT_MIN_NUMEL, check_int

from gradwire.errors import ConfigError


@CODECS.register("onebit")
class OneBit(Codec):
    """1-bit quantization with two reconstruction values per column/bucket and error feedback."""

    name = "onebit"
    stateful = True

    def __init__(self, *, bucket: int = 512, min_numel: int = DEFAULT_MIN_NUMEL,
                 seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.bucket = check_int("bucket", self.name, bucket, 1)
        self.min_numel = check_int("min_numel", self.name, min_numel, 0)

    def params(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "min_numel": self.min_numel}

    # --- grouping: [K, *shape] <-> [K, groups, m] --------------------------------------
    def _layout(self, shape: tuple[int, ...]) -> tuple[int, int, int]:
        """(groups, group length m, padding): columns for matrices, buckets for vectors."""
        n = math.prod(shape)
        if len(shape) >= 2:
            return n // shape[0], shape[0], 0
        nb = -(-n // self.bucket)
        return nb, self.bucket, nb * self.bucket - n

    def _group(self, val: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        kk = val.shape[0]
        g, m, pad = self._layout(shape)
        if len(shape) >= 2:
            return val.reshape(kk, m, g).transpose(1, 2)
        return F.pad(val.reshape(kk, -1), (0, pad)).reshape(kk, g, m)

    def _ungroup(self, grouped: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        kk = grouped.shape[0]
        n = math.prod(shape)
        if len(shape) >= 2:
            return grouped.transpose(1, 2).reshape(kk, *shape)
        return grouped.reshape(kk, -1)[:, :n].reshape(kk, *shape)

    def _means(self, grouped: torch.Tensor, shape: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
        """Bits (val >= 0) and the two reconstruction values per group, shape [K, G]."""
        _, m, pad = self._layout(shape)
        pos = grouped >= 0
        sum1 = torch.where(pos, grouped, 0.0).sum(dim=2)
        sum0 = grouped.sum(dim=2) - sum1
        cnt1 = pos.sum(dim=2).to(torch.float32)
        if pad:  # padded zeros of the last bucket count as non-negative: take them out
            cnt1[:, -1] -= pad
        cnt0 = m - pad * (torch.arange(cnt1.shape[1], device=cnt1.device) == cnt1.shape[1] - 1)
        cnt0 = cnt0.to(torch.float32) - cnt1
        mean1 = torch.where(cnt1 > 0, sum1 / cnt1.clamp(min=1), 0.0)
        mean0 = torch.where(cnt0 > 0, sum0 / cnt0.clamp(min=1), 0.0)
        return pos, mean0, mean1

    @staticmethod
    def _recon(pos: torch.Tensor, mean0: torch.Tensor, mean1: torch.Tensor) -> torch.Tensor:
        return torch.where(pos, mean1.unsqueeze(2), mean0.unsqueeze(2))

    # --- codec interface -----------------------------------------------------------------
    def encode(self, tensor: torch.Tensor, state: CodecState | None = None) -> Payload:
        check_finite(tensor, self.name)
        shape = tuple(tensor.shape)
        n = tensor.numel()
        if n < self.min_numel or n == 0:
            return raw_payload(tensor, self.name)
        st = state_for(self, tensor, state)
        val = ef_input(tensor, st).unsqueeze(0)
        grouped = self._group(val, shape)
        pos, mean0, mean1 = self._means(grouped, shape)
        ef_update(st, val[0], self._ungroup(self._recon(pos, mean0, mean1), shape)[0])
        g = mean0.shape[1]
        bits = self._ungroup_bits(pos, shape)
        data = torch.cat([torch.cat([mean0[0], mean1[0]]).view(torch.uint8),
                          pack(bits.to(torch.uint8), 1)])
        return Payload(data, 64 * g + n, shape, tensor.dtype, self.name)

    def _ungroup_bits(self, pos: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """Bits in group order (column by column, or bucket by bucket), padding dropped."""
        n = math.prod(shape)
        return pos[0].reshape(-1)[:n]

    def decode(self, payload: Payload) -> torch.Tensor:
        shape = payload.shape
        n = payload.numel
        if n < self.min_numel or n == 0:
            return raw_decode(payload)
        g, m, pad = self._layout(shape)
        means = payload.data[: 8 * g].view(torch.float32)
        bits = unpack(payload.data[8 * g :], n, 1) > 0
        pos = F.pad(bits, (0, pad)).reshape(1, g, m)
        out = self._ungroup(self._recon(pos, means[:g].reshape(1, g), means[g:].reshape(1, g)),
                            shape)
        return out[0].to(payload.dtype)

    def quantize(self, tensor: torch.Tensor, state: CodecState | None = None) -> torch.Tensor:
        st = state_for(self, tensor, state)
        return self.quantize_many(tensor.unsqueeze(0), [st])[0]

    def quantize_many(self, stacked: torch.Tensor, states: Sequence[CodecState]) -> torch.Tensor:
        if stacked.dim() < 1 or stacked.shape[0] != len(states):
            raise ConfigError("quantize_many: pass one state per row of the stacked tensor")
        check_finite(stacked, self.name)
        shape = tuple(stacked.shape[1:])
        n = math.prod(shape)
        if n < self.min_numel or n == 0:
            return stacked.detach().clone()
        val = torch.stack([ef_input(stacked[k], st) for k, st in enumerate(states)])
        pos, mean0, mean1 = self._means(self._group(val, shape), shape)
        decoded = self._ungroup(self._recon(pos, mean0, mean1), shape)
        for k, st in enumerate(states):
            ef_update(st, val[k], decoded[k])
        return decoded.to(stacked.dtype)
