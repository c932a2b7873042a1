"""Fixed-width bit packing: ``n`` codes of ``w`` bits each into ``ceil(n*w/8)`` bytes.

The stream is MSB-first: code 0 occupies the top ``w`` bits of the first byte(s), and the
last byte is zero-padded. Two bit-identical implementations: a torch one made of whole-
tensor ops (runs on a CUDA tensor without leaving the device) and a numba one for CPU
tensors (one pass, no temporaries). Every codec with a fixed-width layout (qsgd fixed,
nuqsgd, onebit, signsgd, terngrad) goes through :func:`pack` / :func:`unpack`.
"""

from __future__ import annotations

import threading

import numba
import numpy as np
import torch

MAX_WIDTH = 24


def packed_nbytes(n: int, width: int) -> int:
    """Bytes holding ``n`` codes of ``width`` bits."""
    return (n * width + 7) // 8


def pack_torch(codes: torch.Tensor, width: int) -> torch.Tensor:
    """Pack non-negative integer codes (< 2^width) with tensor ops on their device."""
    n = codes.numel()
    dev = codes.device
    shifts = torch.arange(width - 1, -1, -1, device=dev, dtype=torch.int32)
    bits = ((codes.reshape(-1, 1).to(torch.int32) >> shifts) & 1).to(torch.uint8).reshape(-1)
    pad = (-n * width) % 8
    if pad:
        bits = torch.cat([bits, torch.zeros(pad, dtype=torch.uint8, device=dev)])
    weights = torch.arange(7, -1, -1, device=dev, dtype=torch.int32)
    return (bits.reshape(-1, 8).to(torch.int32) << weights).sum(dim=1).to(torch.uint8)


def unpack_torch(data: torch.Tensor, n: int, width: int) -> torch.Tensor:
    """Inverse of :func:`pack_torch`: ``n`` codes as int32 on ``data``'s device."""
    dev = data.device
    shifts = torch.arange(7, -1, -1, device=dev, dtype=torch.int32)
    bits = ((data[: packed_nbytes(n, width)].reshape(-1, 1).to(torch.int32) >> shifts) & 1)
    bits = bits.reshape(-1)[: n * width].reshape(n, width)
    weights = torch.arange(width - 1, -1, -1, device=dev, dtype=torch.int32)
    return (bits << weights).sum(dim=1, dtype=torch.int32)


# numba's default (workqueue) threading layer aborts the process if two threads enter a
# parallel kernel at once, and DDP hooks run codecs from autograd and gloo callback
# threads: every parallel kernel of the codecs is launched under this lock.
PARALLEL_LOCK = threading.Lock()


def pack_numba(codes: np.ndarray, width: int, out: np.ndarray) -> None:
    """Pack ``codes`` into ``out`` (see :func:`_pack_numba`), one parallel launch at a time."""
    with PARALLEL_LOCK:
        _pack_numba(codes, width, out)


def unpack_numba(data: np.ndarray, n: int, width: int, out: np.ndarray) -> None:
    """Unpack ``n`` codes into ``out`` (see :func:`_unpack_numba`), one launch at a time."""
    with PARALLEL_LOCK:
        _unpack_numba(data, n, width, out)


@numba.njit(cache=True, parallel=True)
def _pack_numba(codes: np.ndarray, width: int, out: np.ndarray) -> None:
    """Numba twin of :func:`pack_torch`, writing into ``out`` (length >= packed_nbytes).

    Groups of 8 codes fill exactly ``width`` bytes, so the main loop has fixed trip
    counts (fast) and are independent (run in parallel); the ragged end goes through a
    bit accumulator.
    """
    n = codes.shape[0]
    ngroups = n // 8 if width <= 8 else 0
    for g in numba.prange(ngroups):
        acc = 0
        base = g * 8
        for j in range(8):
            acc = (acc << width) | codes[base + j]
        ob = g * width
        for k in range(width):
            out[ob + k] = (acc >> (8 * (width - 1 - k))) & 0xFF
    acc = 0
    nacc = 0
    pos = ngroups * width
    for i in range(ngroups * 8, n):
        acc = ((acc << width) | codes[i]) & 0xFFFFFFFFFF
        nacc += width
        while nacc >= 8:
            nacc -= 8
            out[pos] = (acc >> nacc) & 0xFF
            pos += 1
    if nacc > 0:
        out[pos] = (acc << (8 - nacc)) & 0xFF


@numba.njit(cache=True, parallel=True)
def _unpack_numba(data: np.ndarray, n: int, width: int, out: np.ndarray) -> None:
    """Numba twin of :func:`unpack_torch`, writing ``n`` codes into ``out``."""
    mask = (1 << width) - 1
    ngroups = n // 8 if width <= 8 else 0
    for g in numba.prange(ngroups):
        acc = 0
        ib = g * width
        for k in range(width):
            acc = (acc << 8) | data[ib + k]
        base = g * 8
        for j in range(8):
            out[base + j] = (acc >> (width * (7 - j))) & mask
    acc = 0
    nacc = 0
    pos = ngroups * width
    for i in range(ngroups * 8, n):
        while nacc < width:
            acc = ((acc << 8) | data[pos]) & 0xFFFFFFFFFF
            pos += 1
            nacc += 8
        nacc -= width
        out[i] = (acc >> nacc) & mask


def pack(codes: torch.Tensor, width: int) -> torch.Tensor:
    """Pack ``codes`` (int, 1-D) into a uint8 tensor on the same device."""
    if not 1 <= width <= MAX_WIDTH:
        raise ValueError(f"bit width {width} outside 1..{MAX_WIDTH}")
    if codes.is_cuda or codes.device.type != "cpu":
        return pack_torch(codes, width)
    arr = codes.contiguous().numpy()
    out = np.empty(packed_nbytes(arr.shape[0], width), dtype=np.uint8)
    pack_numba(arr, width, out)
    return torch.from_numpy(out)


def unpack(data: torch.Tensor, n: int, width: int) -> torch.Tensor:
    """Unpack ``n`` codes of ``width`` bits (int32 tensor on ``data``'s device)."""
    if data.device.type != "cpu":
        return unpack_torch(data, n, width)
    out = np.empty(n, dtype=np.int32)
    unpack_numba(data.contiguous().numpy(), n, width, out)
    return torch.from_numpy(out)
