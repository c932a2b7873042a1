"""Hot loops of the QSGD family: stochastic levels, fixed-width, Elias and dense streams.

:func:`codes_kernel` and :func:`quantize_kernel` walk the flat fp32 gradient once, bucket
by bucket, computing each element's level (``l = floor(|v_i|/scale * s)``, rounded up
with probability ``|v_i|/scale * s - l`` using :func:`gradwire.codecs.rng.u24`); the
stream writers then code those small integers. The same float32 operations, in the same order, appear in the torch
reference path of :mod:`gradwire.codecs.qsgd`; tests check the two bit-exactly.

Bucket scales (L2 or max norm) are computed by torch before the kernel runs, so the
numba and torch paths share them exactly. Stream layouts (per bucket of ``m`` elements):

- fixed: codes ``(neg << mbits) | level`` of ``1 + mbits`` bits (packed by
  :mod:`gradwire.codecs.bitpack`) after all bucket scales;
- elias: 32-bit scale; for each nonzero, omega(gap) (the first gap is the 1-based
  position), a sign bit (1 = negative), omega(level); then omega(m + 1 - last) ends the
  bucket (the decoder stops at a position past ``m``);
- dense: 32-bit scale; for every element a prefix code of its level (1 -> ``0``,
  0 -> ``10``, 2 -> ``110``, k >= 3 -> ``111`` omega(k - 2)), plus a sign bit if nonzero.
  Coding omega(level + 1) instead, as the paper's sketch does, costs 3.0 bits per element
  on a Gaussian bucket at s = sqrt(d) and 4.0 on a constant one, above the paper's
  2.8 d + 32 bound; this code stays under it (about 2.35 and 2.0).

A decoded value is ``level * (scale / s)`` in float32, negated when the sign bit is set
and the value is nonzero (so no path produces ``-0.0``).

Decoders trust nothing they read: the stream decoders take the payload's bit length as a
hard limit (every read is bounded by it), accept only levels in ``1..s``, gaps inside the
bucket and finite non-negative scales, and return a negative code instead of a position
when the stream is inconsistent (:func:`stream_problem` says which); the fixed-width
dequantizer counts buckets holding a level above ``s``.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

from gradwire.codecs.bitpack import PARALLEL_LOCK
from gradwire.codecs.elias import (
    OVERRUN,
    TOO_LONG,
    get_bits_bounded,
    get_omega_bounded,
    omega_length,
    put_bits,
    put_omega,
)
from gradwire.codecs.rng import u24

BAD_VALUE = -3  # a level outside 1..s, or a gap past the end of its bucket
BAD_SCALE = -4  # a bucket scale that is NaN, Inf or negative
_MAX_OMEGA_BITS = 40  # gaps are <= bucket + 1 and levels <= 2^20: never longer


def stream_problem(end: int, nbits: int, encoding: str) -> str:
    """What a stream decoder's return value ``end`` says about a stream of ``nbits`` bits."""
    if end == OVERRUN:
        return f"the {encoding} stream runs past its {nbits} bits"
    if end == TOO_LONG:
        return f"the {encoding} stream holds a code longer than any valid value"
    if end == BAD_VALUE:
        return f"the {encoding} stream holds a level or position outside its bucket's range"
    if end == BAD_SCALE:
        return f"the {encoding} stream holds a bucket scale that is NaN, Inf or negative"
    return f"the {encoding} stream ends at bit {end} but the payload has {nbits} bits"


@numba.njit(cache=True, inline="always")
def _bad_scale(x: Any) -> bool:
    return not (x >= numba.float32(0.0)) or x > numba.float32(3.4028234663852886e38)


@numba.njit(cache=True, inline="always")
def _level(v: float, scale: float, sf: float, s: int, i: int, k1: int, k2: int) -> int:
    r = (abs(v) / scale) * sf
    fl = math.floor(r)
    p = r - numba.float32(fl)
    lev = int(fl)
    if u24(i, k1, k2) < p:
        lev += 1
    return lev if lev < s else s


@numba.njit(cache=True, inline="always")
def _safe(scale: Any) -> Any:
    return scale if scale > numba.float32(0.0) else numba.float32(1.0)


@numba.njit(cache=True)
def quantize_kernel(x, scales, s, d, k1, k2, out):  # type: ignore[no-untyped-def]
    """``out[i] = +-level_i * (scale_b / s)`` in float32 (the decoded value)."""
    n = x.shape[0]
    sf = numba.float32(s)
    for b in range(scales.shape[0]):
        sc = _safe(scales[b])
        unit = scales[b] / sf
        end = min(n, (b + 1) * d)
        for i in range(b * d, end):
            v = x[i]
            q = numba.float32(_level(v, sc, sf, s, i, k1, k2)) * unit
            out[i] = -q if (v < 0 and q > 0) else q


def codes_kernel(x, scales, s, d, mbits, k1, k2, out):  # type: ignore[no-untyped-def]
    """Fixed-width codes of every element (see :func:`_codes_kernel`), under the lock."""
    with PARALLEL_LOCK:
        _codes_kernel(x, scales, s, d, mbits, k1, k2, out)


def dequant_kernel(codes, scales, s, d, mbits, out) -> int:  # type: ignore[no-untyped-def]
    """Codes back to float32 (see :func:`_dequant_kernel`), under the lock; returns the
    number of buckets holding a level above ``s`` (0 for any payload an encoder made)."""
    bad = np.zeros(scales.shape[0], dtype=np.uint8)
    with PARALLEL_LOCK:
        _dequant_kernel(codes, scales, s, d, mbits, out, bad)
    return int(bad.sum())


@numba.njit(cache=True, parallel=True)
def _codes_kernel(x, scales, s, d, mbits, k1, k2, out):  # type: ignore[no-untyped-def]
    """``out[i] = (neg_i << mbits) | level_i``: the fixed-width code of every element.

    Kept apart from the bit packing: this loop vectorizes, a fused one does not. Buckets
    are independent (the random draw of element i depends only on the key and i), so
    they run in parallel on every core and give the same bytes as a serial loop.
    """
    n = x.shape[0]
    sf = numba.float32(s)
    sign = 1 << mbits
    for b in numba.prange(scales.shape[0]):
        sc = _safe(scales[b])
        end = min(n, (b + 1) * d)
        for i in range(b * d, end):
            v = x[i]
            lev = _level(v, sc, sf, s, i, k1, k2)
            out[i] = lev | sign if v < 0 else lev


@numba.njit(cache=True, parallel=True)
def _dequant_kernel(codes, scales, s, d, mbits, out, bad):  # type: ignore[no-untyped-def]
    """Codes back to float32 values: ``+-level * (scale_b / s)`` (buckets in parallel);
    ``bad[b] = 1`` when bucket b holds a level above ``s``."""
    n = codes.shape[0]
    mask = (1 << mbits) - 1
    sf = numba.float32(s)
    for b in numba.prange(scales.shape[0]):
        unit = scales[b] / sf
        for i in range(b * d, min(n, (b + 1) * d)):
            c = codes[i]
            if (c & mask) > s:
                bad[b] = 1
            q = numba.float32(c & mask) * unit
            out[i] = -q if ((c >> mbits) and q > 0) else q


@numba.njit(cache=True)
def elias_bound_bits(n, nb, d, s):  # type: ignore[no-untyped-def]
    """A safe upper bound on the elias stream length (for the output buffer)."""
    per_nz = omega_length(d + 1) + 1 + omega_length(s)
    return n * per_nz + nb * (32 + omega_length(d + 1))


@numba.njit(cache=True)
def elias_encode(codes, scale_bits, mbits, d, out):  # type: ignore[no-untyped-def]
    """Write the elias stream of ``codes`` (from :func:`codes_kernel`); returns its bits."""
    n = codes.shape[0]
    mask = (1 << mbits) - 1
    pos = 0
    for b in range(scale_bits.shape[0]):
        pos = put_bits(out, pos, scale_bits[b], 32)
        start = b * d
        end = min(n, start + d)
        last = 0
        for i in range(start, end):
            c = codes[i]
            lev = c & mask
            if lev != 0:
                here = i - start + 1
                pos = put_omega(out, pos, here - last)
                pos = put_bits(out, pos, c >> mbits, 1)
                pos = put_omega(out, pos, lev)
                last = here
        pos = put_omega(out, pos, end - start + 1 - last)
    return pos


@numba.njit(cache=True)
def elias_decode(data, nb, s, d, n, out, limit):  # type: ignore[no-untyped-def]
    """Inverse of :func:`elias_encode` into float32 ``out`` (zeroed by the caller), reading
    at most ``limit`` bits (<= 8 * len(data)); returns the end position or a negative code."""
    sf = numba.float32(s)
    pos = 0
    scale_u = np.empty(1, dtype=np.uint32)
    scale_f = scale_u.view(np.float32)
    for b in range(nb):
        bits, pos = get_bits_bounded(data, pos, 32, limit)
        if pos < 0:
            return pos
        scale_u[0] = bits
        if _bad_scale(scale_f[0]):
            return BAD_SCALE
        unit = scale_f[0] / sf
        start = b * d
        m = min(n, start + d) - start
        last = 0
        while True:
            gap, pos = get_omega_bounded(data, pos, limit, _MAX_OMEGA_BITS)
            if pos < 0:
                return pos
            here = last + gap
            if here > m:
                if here != m + 1:
                    return BAD_VALUE
                break
            neg, pos = get_bits_bounded(data, pos, 1, limit)
            if pos < 0:
                return pos
            lev, pos = get_omega_bounded(data, pos, limit, _MAX_OMEGA_BITS)
            if pos < 0:
                return pos
            if lev > s:
                return BAD_VALUE
            q = numba.float32(lev) * unit
            out[start + here - 1] = -q if (neg and q > 0) else q
            last = here
    return pos


@numba.njit(cache=True)
def dense_bound_bits(n, nb, s):  # type: ignore[no-untyped-def]
    return n * (3 + omega_length(s) + 1) + 32 * nb


@numba.njit(cache=True, inline="always")
def _put_dense_level(out, pos, lev):  # type: ignore[no-untyped-def]
    # Prefix code tuned to s = sqrt(d), where levels are mostly 0, 1, 2:
    # 1 -> "0", 0 -> "10", 2 -> "110", k >= 3 -> "111" omega(k - 2).
    if lev == 1:
        return pos + 1
    if lev == 0:
        return put_bits(out, pos, 2, 2)
    if lev == 2:
        return put_bits(out, pos, 6, 3)
    pos = put_bits(out, pos, 7, 3)
    return put_omega(out, pos, lev - 2)


@numba.njit(cache=True, inline="always")
def _get_dense_level(data, pos, limit):  # type: ignore[no-untyped-def]
    for ones in range(3):
        if pos >= limit:
            return 0, OVERRUN
        bit = (data[pos >> 3] >> (7 - (pos & 7))) & 1
        pos += 1
        if bit == 0:
            return (1, 0, 2)[ones], pos
    k, pos = get_omega_bounded(data, pos, limit, _MAX_OMEGA_BITS)
    return k + 2, pos


@numba.njit(cache=True)
def dense_encode(codes, scale_bits, mbits, d, out):  # type: ignore[no-untyped-def]
    """Write the dense stream of ``codes``; returns its length in bits."""
    n = codes.shape[0]
    mask = (1 << mbits) - 1
    pos = 0
    for b in range(scale_bits.shape[0]):
        pos = put_bits(out, pos, scale_bits[b], 32)
        for i in range(b * d, min(n, (b + 1) * d)):
            c = codes[i]
            lev = c & mask
            pos = _put_dense_level(out, pos, lev)
            if lev != 0:
                pos = put_bits(out, pos, c >> mbits, 1)
    return pos


@numba.njit(cache=True)
def dense_decode(data, nb, s, d, n, out, limit):  # type: ignore[no-untyped-def]
    """Inverse of :func:`dense_encode`, reading at most ``limit`` bits; returns the end
    position or a negative code."""
    sf = numba.float32(s)
    pos = 0
    scale_u = np.empty(1, dtype=np.uint32)
    scale_f = scale_u.view(np.float32)
    for b in range(nb):
        bits, pos = get_bits_bounded(data, pos, 32, limit)
        if pos < 0:
            return pos
        scale_u[0] = bits
        if _bad_scale(scale_f[0]):
            return BAD_SCALE
        unit = scale_f[0] / sf
        for i in range(b * d, min(n, (b + 1) * d)):
            lev, pos = _get_dense_level(data, pos, limit)
            if pos < 0:
                return pos
            if lev > s:
                return BAD_VALUE
            if lev == 0:
                out[i] = numba.float32(0.0)
            else:
                neg, pos = get_bits_bounded(data, pos, 1, limit)
                if pos < 0:
                    return pos
                q = numba.float32(lev) * unit
                out[i] = -q if (neg and q > 0) else q
    return pos
