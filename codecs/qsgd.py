"""QSGD and QSGDinf: unbiased stochastic quantization to ``s`` levels per bucket.

For a bucket ``v`` of ``d`` consecutive entries (QSGD paper, Alistarh et al. 2017, the
definition of ``Q_s`` before Lemma 3.1): ``Q_s(v)_i = scale * sgn(v_i) * xi_i / s`` where
``xi_i`` is ``floor(|v_i|/scale * s)``, rounded up with probability equal to the
fractional part, so ``E[Q_s(v)] = v``. ``scale`` is ``||v||_2`` (``qsgd``) or
``||v||_inf`` (``qsgdinf``, the practice of the paper's experiments). Three encodings of
the same levels: ``fixed`` (sign + ``ceil(log2(s+1))`` bits per element and one fp32
scale per bucket), ``elias`` (Theorem 3.2's recursive Elias coding of gaps, signs and
levels) and ``dense`` (Corollary 3.3: a code per element).

Bits <-> levels convention: ``bits=b`` means ``s = 2^(b-1) - 1`` levels, so that a
fixed-width element is exactly ``b`` bits (4 bits -> s = 7); ``levels=s`` sets ``s``
directly (the paper's §4 "4 bits" is ``levels=16``). ``params()`` always shows ``levels``.

Tensors with fewer than ``min_numel`` elements (default 10,000, as in the paper's
experiments) are sent unquantized in their own dtype. ``fixed`` runs on the tensor's
device (pure torch on CUDA, a numba kernel on CPU); ``elias`` and ``dense`` are built by
numba on the host (a CUDA tensor is copied to the CPU to be coded and the bytes copied
back).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gradwire.codecs import qsgd_kernels as K
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
from gradwire.codecs.bitpack import (
    pack_numba,
    pack_torch,
    packed_nbytes,
    unpack_numba,
    unpack_torch,
)
from gradwire.codecs.cost import CodecWork, Work, raw_work, stream
from gradwire.codecs.rng import draw_key, key_parts, uniform24
from gradwire.errors import CodecError, ConfigError

ENCODINGS = ("fixed", "elias", "dense")
NORMS = ("l2", "max")
MAX_LEVELS = 2**20
DEFAULT_MIN_NUMEL = 10_000


def levels_from_bits(bits: int) -> int:
    """``s = 2^(b-1) - 1``: one sign bit and ``b - 1`` magnitude bits."""
    return 2 ** (bits - 1) - 1


def check_int(name: str, codec: str, value: Any, low: int, high: int | None = None) -> int:
    """Validate an integer parameter; the error names the codec, the parameter and range."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"codec {codec!r}: {name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        rng = f">= {low}" if high is None else f"in {low}..{high}"
        raise ConfigError(f"codec {codec!r}: {name}={value} is impossible; {name} must be {rng}")
    return int(value)


def resolve_levels(codec: str, bits: int | None, levels: int | None, *, max_bits: int,
                   max_levels: int) -> tuple[int | None, int]:
    """``(bits, s)`` from ``bits`` (s = 2^(bits-1) - 1) or ``levels`` (default 4 bits).

    Giving both is allowed only when they agree; the error names the codec and the rule.
    """
    if bits is None and levels is None:
        bits = 4
    if bits is not None:
        bits = check_int("bits", codec, bits, 2, max_bits)
        s = levels_from_bits(bits)
        if levels is not None and check_int("levels", codec, levels, 1) != s:
            raise ConfigError(
                f"codec {codec!r}: bits={bits} means levels={s} (s = 2^(bits-1) - 1) "
                f"but levels={levels} was given; pass only one of them"
            )
        return bits, s
    return None, check_int("levels", codec, levels, 1, max_levels)


def bucket_scales(x: torch.Tensor, d: int, norm: str) -> torch.Tensor:
    """Per-bucket scale of the rows of ``x`` ([K, n] fp32): L2 or max norm, shape [K, nb].

    Full buckets are reduced on a view; only the ragged tail is copied.
    """
    k, n = x.shape
    nfull = n // d
    parts = []
    if nfull:
        xb = x[:, : nfull * d].reshape(k, nfull, d)
        parts.append(torch.linalg.vector_norm(xb, dim=2) if norm == "l2" else xb.abs().amax(2))
    if n > nfull * d:
        tail = x[:, nfull * d :]
        parts.append((torch.linalg.vector_norm(tail, dim=1) if norm == "l2"
                      else tail.abs().amax(1)).unsqueeze(1))
    return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]


def finite_scales(x: torch.Tensor, d: int, norm: str, source: torch.Tensor,
                  codec: str) -> torch.Tensor:
    """Bucket scales, which double as the NaN/Inf check of the whole gradient.

    A NaN or Inf anywhere makes its bucket's norm NaN or Inf, so a finite set of scales
    proves a finite gradient without another pass over it. A non-finite scale is either a
    NaN/Inf input (reported by :func:`check_finite`) or an L2 norm beyond fp32's range.
    """
    scales = bucket_scales(x, d, norm)
    if not bool(torch.isfinite(scales).all()):
        check_finite(source, codec)
        raise CodecError(
            f"codec {codec!r}: a bucket's {norm} norm overflows float32 (gradient values up "
            f"to {float(source.abs().max()):.3g}); scale the loss down or use norm='max'"
        )
    return scales


def levels_torch(
    x: torch.Tensor, scales: torch.Tensor, s: int, d: int, keys: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference (and CUDA) path: levels in [0, s] and negative flags, shape [K, nb, d].

    Same float32 operations as ``qsgd_kernels._level``: ``r = (|v| / scale) * s``,
    ``level = floor(r) + [u < r - floor(r)]``, clamped to ``s``.
    """
    k, n = x.shape
    nb = scales.shape[1]
    xb = F.pad(x, (0, nb * d - n)).reshape(k, nb, d)
    safe = torch.where(scales > 0, scales, torch.ones_like(scales))
    r = xb.abs() / safe.unsqueeze(2) * float(s)
    fl = r.floor()
    idx = torch.arange(nb * d, device=x.device, dtype=torch.int64).reshape(1, nb, d)
    u = uniform24(keys.reshape(k, 1, 1).to(x.device), idx)
    lev = (fl + (u < r - fl).to(torch.float32)).clamp_(max=float(s)).to(torch.int32)
    return lev, xb < 0


def dequant_torch(
    lev: torch.Tensor, neg: torch.Tensor, scales: torch.Tensor, s: int, n: int
) -> torch.Tensor:
    """``+-level * (scale / s)`` in float32, [K, nb, d] -> [K, n] (never ``-0.0``)."""
    unit = scales / float(s)
    q = lev.to(torch.float32) * unit.unsqueeze(2)
    q = torch.where(neg & (q > 0), -q, q)
    return q.reshape(q.shape[0], -1)[:, :n]


@CODECS.register("qsgd")
class QSGD(Codec):
    """QSGD (L2-normalised buckets); see the module docstring for the wire formats."""

    name = "qsgd"

    def __init__(
        self,
        *,
        bits: int | None = None,
        levels: int | None = None,
        bucket: int = 512,
        encoding: str = "fixed",
        norm: str = "l2",
        min_numel: int = DEFAULT_MIN_NUMEL,
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed)
        self.bits, self.levels = resolve_levels(self.name, bits, levels, max_bits=21,
                                                max_levels=MAX_LEVELS)
        s = self.levels
        self.bucket = check_int("bucket", self.name, bucket, 1)
        if encoding not in ENCODINGS:
            raise ConfigError(
                f"codec {self.name!r}: encoding={encoding!r} is unknown; use one of {ENCODINGS}"
            )
        if norm not in NORMS:
            raise ConfigError(f"codec {self.name!r}: norm={norm!r} is unknown; use one of {NORMS}")
        self.encoding = encoding
        self.norm = norm
        self.min_numel = check_int("min_numel", self.name, min_numel, 0)
        self.mbits = s.bit_length()  # ceil(log2(s + 1)) magnitude bits
        # True runs the pure-torch path (the one CUDA tensors take) on CPU tensors too;
        # it produces the same bytes as the numba path, which the tests check.
        self.force_torch = False

    def params(self) -> dict[str, Any]:
        p: dict[str, Any] = {}
        if self.bits is not None:
            p["bits"] = self.bits
        p.update(levels=self.levels, bucket=self.bucket, encoding=self.encoding)
        if type(self) is QSGD:
            p["norm"] = self.norm
        p["min_numel"] = self.min_numel
        return p

    # --- helpers ---------------------------------------------------------------------
    def _flat(self, tensor: torch.Tensor) -> torch.Tensor:
        if not tensor.is_floating_point():
            check_finite(tensor, self.name)  # raises the dtype error
        return tensor.detach().reshape(1, -1).to(torch.float32).contiguous()

    def _nb(self, n: int) -> int:
        return -(-n // self.bucket)

    # --- cost model (gradwire.codecs.cost) ---------------------------------------------
    def work(self, shape: tuple[int, ...]) -> CodecWork:
        """Encode: a norm pass (read x), then one quantize-and-pack pass (read x, write the
        wire) drawing one random number per element; ``fixed`` packs every element,
        ``elias``/``dense`` run the host's variable-length coder instead. Decode: read the
        wire, write fp32, unpacking (or decoding) every element."""
        n = math.prod(shape)
        if n < self.min_numel or n == 0:
            return raw_work(n)
        wire = 4 * self._nb(n) + n * (self.mbits + 1) / 8
        code = {"pack": n} if self.encoding == "fixed" else {"varlen": n}
        return CodecWork(
            encode=Work(bytes=stream(n, 4, 4) + wire, launches=6, calls=1, rng=n, reduce=n, **code),
            decode=Work(bytes=wire + stream(n, 4), launches=3, calls=1, **code),
        )

    # --- codec interface -------------------------------------------------------------
    def encode(self, tensor: torch.Tensor, state: CodecState | None = None) -> Payload:
        x = self._flat(tensor)
        n = x.shape[1]
        if n < self.min_numel or n == 0:
            check_finite(tensor, self.name)
            return raw_payload(tensor, self.name)
        st = state_for(self, tensor, state)
        key = draw_key(st.generator)
        scales = finite_scales(x, self.bucket, self.norm, tensor, self.name)
        nb = scales.shape[1]
        shape, dtype = tuple(tensor.shape), tensor.dtype
        s, d = self.levels, self.bucket
        if self.encoding == "fixed" and (x.device.type != "cpu" or self.force_torch):
            lev, neg = levels_torch(x, scales, s, d, key)
            codes = (lev | (neg.to(torch.int32) << self.mbits)).reshape(-1)[:n]
            data = torch.cat([scales.reshape(-1).view(torch.uint8),
                              pack_torch(codes, self.mbits + 1)])
            return Payload(data, 32 * nb + (self.mbits + 1) * n, shape, dtype, self.name)
        k1, k2 = key_parts(int(key.item()))
        xn = x.reshape(-1).cpu().numpy()
        sn = scales.reshape(-1).cpu().numpy()
        width = self.mbits + 1
        cn = np.empty(n, dtype=np.uint8 if width <= 8 else np.int32)
        K.codes_kernel(xn, sn, s, d, self.mbits, k1, k2, cn)
        if self.encoding == "fixed":
            out = np.empty(4 * nb + packed_nbytes(n, width), dtype=np.uint8)
            out[: 4 * nb] = sn.view(np.uint8)
            pack_numba(cn, width, out[4 * nb :])
            return Payload(torch.from_numpy(out), 32 * nb + width * n, shape, dtype, self.name)
        if self.encoding == "elias":
            cap = K.elias_bound_bits(n, nb, d, s)
            buf = np.zeros((cap + 7) // 8, dtype=np.uint8)
            nbits = K.elias_encode(cn, sn.view(np.uint32), self.mbits, d, buf)
        else:
            cap = K.dense_bound_bits(n, nb, s)
            buf = np.zeros((cap + 7) // 8, dtype=np.uint8)
            nbits = K.dense_encode(cn, sn.view(np.uint32), self.mbits, d, buf)
        data = torch.from_numpy(buf[: (nbits + 7) // 8].copy()).to(x.device)
        return Payload(data, int(nbits), shape, dtype, self.name)

    def decode(self, payload: Payload) -> torch.Tensor:
        n = payload.numel
        if n < self.min_numel or n == 0:
            return raw_decode(payload)
        nb = self._nb(n)
        s, d = self.levels, self.bucket
        data = payload.data
        width = self.mbits + 1
        if self.encoding == "fixed":
            expect_nbytes(payload, self.name, 4 * nb + packed_nbytes(n, width), 32 * nb + width * n)
        elif data.numel() < 4 * nb:  # at least every bucket's scale
            raise payload_error(payload, self.name, f"{data.numel()} bytes cannot hold {nb} bucket scales")
        if self.encoding == "fixed" and (data.device.type != "cpu" or self.force_torch):
            scales = data[: 4 * nb].view(torch.float32).reshape(1, nb)
            expect_finite(scales, payload, self.name, "bucket scale", nonneg=True)
            codes = F.pad(unpack_torch(data[4 * nb :], n, width), (0, nb * d - n))
            lev = (codes & ((1 << self.mbits) - 1)).reshape(1, nb, d)
            if bool((lev > s).any()):
                raise payload_error(payload, self.name, f"a level exceeds s={s}")
            neg = (codes >> self.mbits).reshape(1, nb, d) > 0
            out_t = dequant_torch(lev, neg, scales, s, n)
            return out_t.to(payload.dtype).reshape(payload.shape)
        raw = data.cpu().numpy()
        if self.encoding == "fixed":
            expect_finite(torch.from_numpy(raw[: 4 * nb].view(np.float32)), payload, self.name,
                          "bucket scale", nonneg=True)
            cn = np.empty(n, dtype=np.uint8 if width <= 8 else np.int32)
            unpack_numba(raw[4 * nb :], n, width, cn)
            out = np.empty(n, dtype=np.float32)
            bad = K.dequant_kernel(cn, raw[: 4 * nb].view(np.float32), s, d, self.mbits, out)
            if bad:
                raise payload_error(payload, self.name, f"{bad} bucket(s) hold a level above s={s}")
        else:
            out = np.zeros(n, dtype=np.float32)
            decoder = K.elias_decode if self.encoding == "elias" else K.dense_decode
            end = decoder(raw, nb, s, d, n, out, payload.nbits)
            if end != payload.nbits:
                raise payload_error(payload, self.name, K.stream_problem(end, payload.nbits, self.encoding))
        res = torch.from_numpy(out).to(payload.dtype).reshape(payload.shape)
        return res.to(data.device)

    def quantize(self, tensor: torch.Tensor, state: CodecState | None = None) -> torch.Tensor:
        st = state_for(self, tensor, state)
        return self.quantize_many(tensor.unsqueeze(0), [st])[0]

    def quantize_many(self, stacked: torch.Tensor, states: Sequence[CodecState]) -> torch.Tensor:
        if stacked.dim() < 1 or stacked.shape[0] != len(states):
            raise ConfigError("quantize_many: pass one state per row of the stacked tensor")
        kk = stacked.shape[0]
        shape = stacked.shape[1:]
        n = math.prod(shape)
        if n < self.min_numel or n == 0:
            check_finite(stacked, self.name)
            return stacked.detach().clone()
        x = self._flat(stacked).reshape(kk, n)
        keys = torch.cat([draw_key(st.generator).to(x.device) for st in states])
        scales = finite_scales(x, self.bucket, self.norm, stacked, self.name)
        if x.device.type != "cpu" or self.force_torch:
            lev, neg = levels_torch(x, scales, self.levels, self.bucket, keys)
            out_t = dequant_torch(lev, neg, scales, self.levels, n)
        else:
            out_np = np.empty((kk, n), dtype=np.float32)
            xn = x.numpy()
            sn = scales.contiguous().numpy()
            for k in range(kk):
                k1, k2 = key_parts(int(keys[k]))
                K.quantize_kernel(xn[k], sn[k], self.levels, self.bucket, k1, k2, out_np[k])
            out_t = torch.from_numpy(out_np)
        return out_t.to(stacked.dtype).reshape(stacked.shape)


@CODECS.register("qsgdinf")
class QSGDInf(QSGD):
    """QSGD with max-norm (L-infinity) bucket scales (name from the NUQSGD paper)."""

    name = "qsgdinf"

    def __init__(
        self,
        *,
        bits: int | None = None,
        levels: int | None = None,
        bucket: int = 512,
        encoding: str = "fixed",
        min_numel: int = DEFAULT_MIN_NUMEL,
        seed: int = 0,
    ) -> None:
        super().__init__(bits=bits, levels=levels, bucket=bucket, encoding=encoding, norm="max",
                         min_numel=min_numel, seed=seed)
