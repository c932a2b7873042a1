"""1-bit SGD (Seide et al., Interspeech 2014; CNTK's quantizer) with error feedback.

On ``val = gradient + residual``, each column of a weight matrix (a tensor of two or more
dimensions viewed as ``[shape[0], -1]``; a column has ``shape[0]`` entries) or each bucket
of a vector is quantized with threshold 0: one bit per entry (1 if ``val >= 0``) and two
fp32 reconstruction values, the mean of the negative entries and the mean of the
non-negative ones (an empty side counts as 0). Decoding maps bit 0 to the first mean and
bit 1 to the second; the residual ``val - decoded`` is carried to the next call in the
worker's :class:`~gradwire.codecs.base.CodecState` (without it training diverges).
Wire format: all first means (fp32), all second means, then one bit per element in the
tensor's own (row-major) order. Cost: ``n`` bits plus 64 bits per column or bucket. On
CPU a numba kernel does the work in two passes (sums in float64); on CUDA it is torch. Tensors under ``min_numel`` elements
are sent unquantized (and leave the residual untouched).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numba
import numpy as np
import torch
import torch.nn.functional as F

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


@numba.njit(cache=True)
def _onebit_kernel(val, groups, by_column, m, bits, mean0, mean1, dec):  # type: ignore[no-untyped-def]
    """One worker on CPU: side sums per group (float64), the two means (float32), the bit
    of every element (natural order) and its decoded value. Group of element i: i % m
    (column of a row-major matrix with m columns) or i // m (bucket of m)."""
    n = val.shape[0]
    s0 = np.zeros(groups, dtype=np.float64)
    s1 = np.zeros(groups, dtype=np.float64)
    c0 = np.zeros(groups, dtype=np.int64)
    c1 = np.zeros(groups, dtype=np.int64)
    for i in range(n):
        g = i % m if by_column else i // m
        v = val[i]
        if v >= 0:
            s1[g] += v
            c1[g] += 1
        else:
            s0[g] += v
            c0[g] += 1
    for g in range(groups):
        mean0[g] = s0[g] / c0[g] if c0[g] > 0 else 0.0
        mean1[g] = s1[g] / c1[g] if c1[g] > 0 else 0.0
    for i in range(n):
        g = i % m if by_column else i // m
        if val[i] >= 0:
            bits[i] = 1
            dec[i] = mean1[g]
        else:
            bits[i] = 0
            dec[i] = mean0[g]


@numba.njit(cache=True)
def _onebit_decode(bits, by_column, m, mean0, mean1, out):  # type: ignore[no-untyped-def]
    for i in range(out.shape[0]):
        g = i % m if by_column else i // m
        out[i] = mean1[g] if bits[i] else mean0[g]


@CODECS.register("onebit")
class OneBit(Codec):
    """1-bit quantization with two reconstruction values per column/bucket and error feedback."""

    name = "onebit"

    def __init__(self, *, bucket: int = 512, min_numel: int = DEFAULT_MIN_NUMEL,
                 error_feedback: bool = True, seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.bucket = check_int("bucket", self.name, bucket, 1)
        self.min_numel = check_int("min_numel", self.name, min_numel, 0)
        if not isinstance(error_feedback, bool):
            raise ConfigError(f"codec 'onebit': error_feedback must be true or false, got {error_feedback!r}")
        # error_feedback=False exists to show why 1-bit SGD needs it (training degrades)
        self.error_feedback = error_feedback

    @property
    def stateful(self) -> bool:  # type: ignore[override]
        return self.error_feedback

    def params(self) -> dict[str, Any]:
        p: dict[str, Any] = {"bucket": self.bucket, "min_numel": self.min_numel}
        if not self.error_feedback:
            p["error_feedback"] = False
        return p

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

    # --- cost model (gradwire.codecs.cost) -------------------------------------------------
    def work(self, shape: tuple[int, ...]) -> CodecWork:
        """Encode: a finiteness sum, ``g + e``, the two-pass quantizer (side sums, then bits
        and decoded values), ``e <- val - decoded``, bit packing. Decode: unpack, map bits to
        the two means."""
        n = math.prod(shape)
        if n < self.min_numel or n == 0:
            return raw_work(n)
        ef = (12, 12) if self.error_feedback else ()
        return CodecWork(
            encode=Work(bytes=stream(n, 4, 4 + 4 + 1 + 4, 1 + 1 / 8, *ef), launches=5 + len(ef),
                        calls=1, reduce=2 * n, pack=n),
            decode=Work(bytes=stream(n, 1 / 8 + 1, 1 + 4), launches=3, calls=1, pack=n),
        )

    # --- codec interface -----------------------------------------------------------------
    def _cpu(self, val: torch.Tensor, shape: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
        """numba path for one worker: (bits uint8, mean0, mean1, decoded) in natural order."""
        g, m, _ = self._layout(shape)
        by_column = len(shape) >= 2
        n = val.numel()
        bits = np.empty(n, dtype=np.uint8)
        dec = np.empty(n, dtype=np.float32)
        mean0 = np.empty(g, dtype=np.float32)
        mean1 = np.empty(g, dtype=np.float32)
        _onebit_kernel(val.reshape(-1).numpy(), g, by_column, g if by_column else m, bits,
                       mean0, mean1, dec)
        return (torch.from_numpy(bits), torch.from_numpy(mean0), torch.from_numpy(mean1),
                torch.from_numpy(dec).reshape(shape))

    def _torch(self, val: torch.Tensor, shape: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
        """Torch path for K workers (``val`` is [K, *shape]): bits, means ([K, G]), decoded."""
        pos, mean0, mean1 = self._means(self._group(val, shape), shape)
        decoded = self._ungroup(self._recon(pos, mean0, mean1), shape)
        bits = (val.reshape(val.shape[0], -1) >= 0).to(torch.uint8)
        return bits, mean0, mean1, decoded

    def encode(self, tensor: torch.Tensor, state: CodecState | None = None) -> Payload:
        check_finite(tensor, self.name)
        shape = tuple(tensor.shape)
        n = tensor.numel()
        if n < self.min_numel or n == 0:
            return raw_payload(tensor, self.name)
        st = state_for(self, tensor, state)
        val = ef_input(tensor, st).contiguous()
        if val.device.type == "cpu":
            bits, mean0, mean1, decoded = self._cpu(val, shape)
        else:
            b2, m0, m1, d2 = self._torch(val.unsqueeze(0), shape)
            bits, mean0, mean1, decoded = b2[0], m0[0], m1[0], d2[0]
        check_encoded_finite(torch.cat([mean0, mean1]), self.name, shape, "column/bucket means")
        if self.error_feedback:
            ef_update(st, val, decoded)
        g = mean0.numel()
        data = torch.cat([torch.cat([mean0, mean1]).view(torch.uint8), pack(bits, 1)])
        return Payload(data, 64 * g + n, shape, tensor.dtype, self.name)

    def decode(self, payload: Payload) -> torch.Tensor:
        shape = payload.shape
        n = payload.numel
        if n < self.min_numel or n == 0:
            return raw_decode(payload)
        g, m, _ = self._layout(shape)
        by_column = len(shape) >= 2
        expect_nbytes(payload, self.name, 8 * g + (n + 7) // 8, 64 * g + n)
        means = payload.data[: 8 * g].view(torch.float32)
        expect_finite(means, payload, self.name, "reconstruction value")
        bits = unpack(payload.data[8 * g :], n, 1)
        if payload.data.device.type == "cpu":
            out = np.empty(n, dtype=np.float32)
            _onebit_decode(bits.numpy(), by_column, g if by_column else m,
                           means[:g].numpy(), means[g:].numpy(), out)
            return torch.from_numpy(out).reshape(shape).to(payload.dtype)
        idx = torch.arange(n, device=bits.device)
        grp = idx % g if by_column else idx // m
        out_t = torch.where(bits > 0, means[g:][grp], means[:g][grp])
        return out_t.reshape(shape).to(payload.dtype)

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
        if val.device.type == "cpu":
            decoded = torch.stack([self._cpu(val[k].contiguous(), shape)[3]
                                   for k in range(val.shape[0])])
        else:
            decoded = self._torch(val, shape)[3]
        for k, st in enumerate(states):
            if self.error_feedback:
                ef_update(st, val[k], decoded[k])
        return decoded.to(stacked.dtype)
