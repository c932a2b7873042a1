"""NUQSGD: nonuniform, exponentially spaced levels with unbiased stochastic rounding.

After L2 normalisation of a bucket (NUQSGD paper, Ramezani-Kebrya et al., JMLR 2021,
eq. (3)-(4)), ``r_i = |v_i| / ||v||_2`` lies in ``[0, 1]`` and is rounded to one of its
two neighbouring levels in ``0 = l_0 < l_1 < ... < l_L = 1`` with ``l_j = p^(L - j)``
(paper form; ``p = multiplier = 1/2`` gives ``0, 2^-(L-1), ..., 1/4, 1/2, 1``), upward with
probability ``(r_i - l_j) / (l_{j+1} - l_j)``, so the estimate stays unbiased; values
below ``l_1`` round between 0 and ``l_1``. This is the paper's level set, not the public
code's signed ``+-p^j`` set without a zero level.

Bits: ``bits=b`` gives ``L = 2^(b-1) - 1`` nonzero levels, so an element is one sign bit
plus ``b - 1`` bits of level index (4 bits -> L = 7); ``levels=L`` sets ``L`` directly.
Wire format: one fp32 norm per bucket, then the fixed-width codes ``(neg << mbits) |
index``. Tensors under ``min_numel`` elements are sent unquantized.
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
    check_finite,
    expect_finite,
    expect_nbytes,
    payload_error,
    raw_decode,
    raw_payload,
    state_for,
)
from gradwire.codecs.bitpack import pack, unpack
from gradwire.codecs.cost import CodecWork, Work, raw_work, stream
from gradwire.codecs.qsgd import (
    DEFAULT_MIN_NUMEL,
    check_int,
    finite_scales,
    resolve_levels,
)
from gradwire.codecs.rng import draw_key, key_parts, u24, uniform24
from gradwire.errors import ConfigError


@numba.njit(cache=True)
def _codes_kernel(x, scales, table, d, mbits, k1, k2, out):  # type: ignore[no-untyped-def]
    n = x.shape[0]
    top = table.shape[0] - 1
    sign = 1 << mbits
    for b in range(scales.shape[0]):
        sc = scales[b] if scales[b] > numba.float32(0.0) else numba.float32(1.0)
        for i in range(b * d, min(n, (b + 1) * d)):
            v = x[i]
            r = abs(v) / sc
            # j = index of the last level <= r (binary search; table[0] = 0 <= r)
            lo = 0
            hi = top + 1
            while hi - lo > 1:
                mid = (lo + hi) >> 1
                if table[mid] <= r:
                    lo = mid
                else:
                    hi = mid
            j = lo if lo < top else top - 1
            p = (r - table[j]) / (table[j + 1] - table[j])
            idx = j + 1 if u24(i, k1, k2) < p else j
            if idx > top:
                idx = top
            out[i] = idx | sign if v < 0 else idx


@numba.njit(cache=True)
def _dequant_kernel(codes, scales, table, d, mbits, out):  # type: ignore[no-untyped-def]
    n = codes.shape[0]
    mask = (1 << mbits) - 1
    for b in range(scales.shape[0]):
        sc = scales[b]
        for i in range(b * d, min(n, (b + 1) * d)):
            c = codes[i]
            q = table[c & mask] * sc
            out[i] = -q if ((c >> mbits) and q > 0) else q


@CODECS.register("nuqsgd")
class NUQSGD(Codec):
    """Nonuniform QSGD with exponentially spaced levels (see module docstring)."""

    name = "nuqsgd"

    def __init__(
        self,
        *,
        bits: int | None = None,
        levels: int | None = None,
        bucket: int = 512,
        multiplier: float = 0.5,
        min_numel: int = DEFAULT_MIN_NUMEL,
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed)
        bits, lv = resolve_levels(self.name, bits, levels, max_bits=17, max_levels=2**16)
        if isinstance(multiplier, bool) or not isinstance(multiplier, int | float) or not (
            0.0 < float(multiplier) < 1.0
        ):
            raise ConfigError(
                f"codec 'nuqsgd': multiplier={multiplier!r} is impossible; it must be in (0, 1)"
            )
        self.bits = bits
        self.levels = lv
        self.bucket = check_int("bucket", self.name, bucket, 1)
        self.multiplier = float(multiplier)
        self.min_numel = check_int("min_numel", self.name, min_numel, 0)
        self.mbits = lv.bit_length()
        # l_0 = 0, l_j = p^(L-j): computed in float64, stored as the float32 values used.
        powers = [self.multiplier ** (lv - j) for j in range(1, lv + 1)]
        table = np.array([0.0, *powers], dtype=np.float32)
        if np.any(np.diff(table) <= 0):
            raise ConfigError(
                f"codec 'nuqsgd': levels={lv} with multiplier={multiplier} underflow float32 "
                "(two levels coincide); use fewer levels or a multiplier closer to 1"
            )
        self.table = table

    def params(self) -> dict[str, Any]:
        p: dict[str, Any] = {}
        if self.bits is not None:
            p["bits"] = self.bits
        p.update(levels=self.levels, bucket=self.bucket, multiplier=self.multiplier,
                 min_numel=self.min_numel)
        return p

    def level_values(self) -> torch.Tensor:
        """The normalised levels ``l_0 = 0 < l_1 < ... < l_L = 1`` (float32)."""
        return torch.from_numpy(self.table.copy())

    # --- codes: numba on CPU, torch elsewhere ------------------------------------------
    def _codes(self, x: torch.Tensor, scales: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Codes ``(neg << mbits) | index`` of the rows of ``x`` ([K, n] -> int32 [K, n])."""
        kk, n = x.shape
        d = self.bucket
        if x.device.type == "cpu":
            out = np.empty((kk, n), dtype=np.int32)
            xn, sn = x.numpy(), scales.contiguous().numpy()
            for k in range(kk):
                k1, k2 = key_parts(int(keys[k]))
                _codes_kernel(xn[k], sn[k], self.table, d, self.mbits, k1, k2, out[k])
            return torch.from_numpy(out)
        return codes_torch(x, scales, self.table, d, self.mbits, keys)

    def _dequant(self, codes: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        kk, n = codes.shape
        if codes.device.type == "cpu":
            out = np.empty((kk, n), dtype=np.float32)
            cn, sn = codes.contiguous().numpy(), scales.contiguous().numpy()
            for k in range(kk):
                _dequant_kernel(cn[k], sn[k], self.table, self.bucket, self.mbits, out[k])
            return torch.from_numpy(out)
        return self._dequant_torch(codes, scales)

    def _dequant_torch(self, codes: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        """Torch twin of the numba dequantizer (CUDA path and test oracle)."""
        kk, n = codes.shape
        nb = scales.shape[1]
        table = torch.from_numpy(self.table).to(codes.device)
        c = F.pad(codes, (0, nb * self.bucket - n)).reshape(kk, nb, self.bucket)
        q = table[c & ((1 << self.mbits) - 1)] * scales.unsqueeze(2)
        q = torch.where(((c >> self.mbits) > 0) & (q > 0), -q, q)
        return q.reshape(kk, -1)[:, :n]

    # --- cost model (gradwire.codecs.cost) ---------------------------------------------
    def work(self, shape: tuple[int, ...]) -> CodecWork:
        """As fixed-width QSGD: a norm pass, a code pass (read x, write int32 codes) with one
        random number per element, packing; decode unpacks to int32 and dequantizes."""
        n = math.prod(shape)
        if n < self.min_numel or n == 0:
            return raw_work(n)
        wire = 4 * -(-n // self.bucket) + n * (self.mbits + 1) / 8
        return CodecWork(
            encode=Work(bytes=stream(n, 4, 4 + 4, 4) + wire, launches=6, calls=1, rng=n,
                        reduce=n, pack=n),
            decode=Work(bytes=wire + stream(n, 4, 4 + 4), launches=4, calls=1, pack=n),
        )

    def encode(self, tensor: torch.Tensor, state: CodecState | None = None) -> Payload:
        n = tensor.numel()
        if n < self.min_numel or n == 0 or not tensor.is_floating_point():
            check_finite(tensor, self.name)
            return raw_payload(tensor, self.name)
        st = state_for(self, tensor, state)
        x = tensor.detach().reshape(1, n).to(torch.float32).contiguous()
        scales = finite_scales(x, self.bucket, "l2", tensor, self.name)
        codes = self._codes(x, scales, draw_key(st.generator).to(x.device)).reshape(-1)
        width = self.mbits + 1
        data = torch.cat([scales.reshape(-1).view(torch.uint8), pack(codes, width)])
        nbits = 32 * scales.shape[1] + width * n
        return Payload(data, nbits, tuple(tensor.shape), tensor.dtype, self.name)

    def decode(self, payload: Payload) -> torch.Tensor:
        n = payload.numel
        if n < self.min_numel or n == 0:
            return raw_decode(payload)
        nb = -(-n // self.bucket)
        width = self.mbits + 1
        expect_nbytes(payload, self.name, 4 * nb + (n * width + 7) // 8, 32 * nb + width * n)
        scales = payload.data[: 4 * nb].view(torch.float32).reshape(1, nb)
        expect_finite(scales, payload, self.name, "bucket scale", nonneg=True)
        codes = unpack(payload.data[4 * nb :], n, width).reshape(1, n)
        if bool(((codes & ((1 << self.mbits) - 1)) > self.levels).any()):
            raise payload_error(payload, self.name, f"a level index exceeds {self.levels}")
        return self._dequant(codes, scales).to(payload.dtype).reshape(payload.shape)

    def quantize(self, tensor: torch.Tensor, state: CodecState | None = None) -> torch.Tensor:
        st = state_for(self, tensor, state)
        return self.quantize_many(tensor.unsqueeze(0), [st])[0]

    def quantize_many(self, stacked: torch.Tensor, states: Sequence[CodecState]) -> torch.Tensor:
        if stacked.dim() < 1 or stacked.shape[0] != len(states):
            raise ConfigError("quantize_many: pass one state per row of the stacked tensor")
        kk = stacked.shape[0]
        n = math.prod(stacked.shape[1:])
        if n < self.min_numel or n == 0:
            check_finite(stacked, self.name)
            return stacked.detach().clone()
        if not stacked.is_floating_point():
            check_finite(stacked, self.name)
        x = stacked.detach().reshape(kk, n).to(torch.float32).contiguous()
        keys = torch.cat([draw_key(st.generator).to(x.device) for st in states])
        scales = finite_scales(x, self.bucket, "l2", stacked, self.name)
        out = self._dequant(self._codes(x, scales, keys), scales)
        return out.to(stacked.dtype).reshape(stacked.shape)


def codes_torch(
    x: torch.Tensor, scales: torch.Tensor, table_np: np.ndarray, d: int, mbits: int,
    keys: torch.Tensor,
) -> torch.Tensor:
    """Torch twin of the numba codes kernel (used on CUDA and as the test oracle)."""
    kk, n = x.shape
    nb = scales.shape[1]
    table = torch.from_numpy(table_np).to(x.device)
    top = table.numel() - 1
    xb = F.pad(x, (0, nb * d - n)).reshape(kk, nb, d)
    safe = torch.where(scales > 0, scales, torch.ones_like(scales))
    r = xb.abs() / safe.unsqueeze(2)
    j = (torch.searchsorted(table, r.reshape(-1), right=True) - 1).reshape(r.shape)
    j = j.clamp(max=top - 1)
    lo, hi = table[j], table[j + 1]
    p = (r - lo) / (hi - lo)
    idx = torch.arange(nb * d, device=x.device, dtype=torch.int64).reshape(1, nb, d)
    u = uniform24(keys.reshape(kk, 1, 1).to(x.device), idx)
    lev = (j + (u < p).to(torch.int64)).clamp(max=top).to(torch.int32)
    codes = lev | ((xb < 0).to(torch.int32) << mbits)
    return codes.reshape(kk, -1)[:, :n]
