"""Recursive Elias (omega) codes for positive integers, on an MSB-first bitstream (numba).

``omega(k)`` for ``k >= 1`` is built right to left: a final ``0``, then the binary form of
``k``, then the binary form of (its length - 1), and so on while that number exceeds 1;
``|omega(k)| <= log k + 2 log log k + O(1)`` bits (the QSGD paper's "Elias(k)",
Theorem 3.2). Writers OR bits into a zero-initialised ``uint8`` buffer at a bit position
and return the new position; readers return ``(value, new_position)``. The bounded readers
(:func:`get_bits_bounded`, :func:`get_omega_bounded`) never read at or past a bit ``limit``
(the payload's ``nbits``, itself checked against the buffer's length): they return the
position ``OVERRUN`` instead, so a corrupted stream cannot make a decoder leave its buffer.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def bit_length(k: int) -> int:
    n = 0
    while k > 0:
        k >>= 1
        n += 1
    return n


@numba.njit(cache=True)
def omega_length(k: int) -> int:
    """Bits of the Elias omega code of ``k >= 1``."""
    n = 1
    while k > 1:
        b = bit_length(k)
        n += b
        k = b - 1
    return n


@numba.njit(cache=True, inline="always")
def put_bits(buf: np.ndarray, pos: int, value: int, nbits: int) -> int:
    """Write the low ``nbits`` (<= 40) of ``value`` MSB-first at bit ``pos``."""
    while nbits > 0:
        byte = pos >> 3
        room = 8 - (pos & 7)
        take = room if room < nbits else nbits
        chunk = (value >> (nbits - take)) & ((1 << take) - 1)
        buf[byte] |= chunk << (room - take)
        pos += take
        nbits -= take
    return pos


@numba.njit(cache=True, inline="always")
def get_bits(buf: np.ndarray, pos: int, nbits: int) -> tuple[int, int]:
    """Read ``nbits`` MSB-first from bit ``pos``; returns ``(value, pos + nbits)``."""
    value = 0
    while nbits > 0:
        byte = pos >> 3
        room = 8 - (pos & 7)
        take = room if room < nbits else nbits
        chunk = (buf[byte] >> (room - take)) & ((1 << take) - 1)
        value = (value << take) | chunk
        pos += take
        nbits -= take
    return value, pos


@numba.njit(cache=True)
def put_omega(buf: np.ndarray, pos: int, k: int) -> int:
    """Write ``omega(k)``, ``k >= 1``. The groups are emitted in reverse order of their
    computation, so the depth is found first and each group recomputed (depth <= 6)."""
    depth = 0
    v = k
    while v > 1:
        depth += 1
        v = bit_length(v) - 1
    for j in range(depth - 1, -1, -1):
        v = k
        for _ in range(j):
            v = bit_length(v) - 1
        pos = put_bits(buf, pos, v, bit_length(v))
    return pos + 1  # the terminating 0 (buffer is zeroed)


@numba.njit(cache=True)
def get_omega(buf: np.ndarray, pos: int) -> tuple[int, int]:
    """Read one omega code at ``pos``; returns ``(k, new_pos)``."""
    n = 1
    while True:
        bit = (buf[pos >> 3] >> (7 - (pos & 7))) & 1
        pos += 1
        if bit == 0:
            return n, pos
        rest, pos = get_bits(buf, pos, n)
        n = (1 << n) | rest


OVERRUN = -1  # a read would pass the end of the stream
TOO_LONG = -2  # an omega code longer than any value the decoder accepts


@numba.njit(cache=True, inline="always")
def get_bits_bounded(buf: np.ndarray, pos: int, nbits: int, limit: int) -> tuple[int, int]:
    """:func:`get_bits`, or ``(0, OVERRUN)`` when the read would pass bit ``limit``."""
    if pos < 0 or pos + nbits > limit:
        return 0, OVERRUN
    return get_bits(buf, pos, nbits)


@numba.njit(cache=True)
def get_omega_bounded(buf: np.ndarray, pos: int, limit: int, max_bits: int) -> tuple[int, int]:
    """:func:`get_omega` within bit ``limit``; values of more than ``max_bits`` (<= 62) bits
    give ``(0, TOO_LONG)``, a read past ``limit`` gives ``(0, OVERRUN)``."""
    n = 1
    while True:
        if pos < 0 or pos >= limit:
            return 0, OVERRUN
        bit = (buf[pos >> 3] >> (7 - (pos & 7))) & 1
        pos += 1
        if bit == 0:
            return n, pos
        if n >= max_bits:
            return 0, TOO_LONG
        rest, pos = get_bits_bounded(buf, pos, n, limit)
        if pos < 0:
            return 0, pos
        n = (1 << n) | rest
