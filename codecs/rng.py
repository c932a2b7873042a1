"""Counter-based uniform random numbers shared by the torch (GPU) and numba (CPU) paths.

Stochastic rounding needs one uniform number per element. ``torch.rand`` on this CPU costs
more than the whole quantizer, and a numba kernel cannot draw from a ``torch.Generator``.
So each call draws one 62-bit key from the state's generator (seeded: same seed, same
bytes) and element ``i`` gets ``u_i = hash(key, i) / 2^24``, a 24-bit uniform in [0, 1)
(the resolution of ``torch.rand``'s float32 output). The hash is two rounds of the
``lowbias32`` integer mixer (C. Wellons); the torch and numba versions are bit-identical,
so a CUDA tensor and a CPU tensor quantized with the same key get the same levels.
"""

from __future__ import annotations

from typing import Any

import numba
import torch

M32 = 0xFFFFFFFF
GOLDEN = 0x9E3779B1
MIX1 = 0x7FEB352D
MIX2 = 0x846CA68B
INV24 = 2.0**-24


def draw_key(generator: torch.Generator) -> torch.Tensor:
    """One 62-bit key (int64 tensor of shape [1], on the generator's device)."""
    return torch.randint(0, 2**62, (1,), generator=generator, device=generator.device,
                         dtype=torch.int64)


def key_parts(key: int) -> tuple[int, int]:
    """The two 32-bit halves the hash uses (the high half is below 2^30)."""
    return key & M32, key >> 32


def _mul32_t(x: torch.Tensor, c: int) -> torch.Tensor:
    # (x * c) mod 2^32 without int64 overflow: split c into 16-bit halves.
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & M32


def _mix_t(x: torch.Tensor) -> torch.Tensor:
    x = x ^ (x >> 16)
    x = _mul32_t(x, MIX1)
    x = x ^ (x >> 15)
    x = _mul32_t(x, MIX2)
    return x ^ (x >> 16)


def uniform24(key: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """float32 uniforms in [0, 1) on a 2^-24 grid for element indices ``index`` (int64).

    ``key`` is an int64 tensor broadcastable against ``index`` (shape [1] for one worker,
    [K, 1] for K workers); all arithmetic stays on the tensors' device.
    """
    k1 = key & M32
    k2 = key >> 32
    h = _mix_t((_mul32_t(index & M32, GOLDEN) + k1) & M32)
    h = _mix_t(h ^ k2)
    return (h >> 8).to(torch.float32) * INV24


@numba.njit(cache=True, inline="always")
def _mul32(x: int, c: int) -> int:
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & M32


@numba.njit(cache=True, inline="always")
def _mix(x: int) -> int:
    x = x ^ (x >> 16)
    x = _mul32(x, MIX1)
    x = x ^ (x >> 15)
    x = _mul32(x, MIX2)
    return x ^ (x >> 16)


@numba.njit(cache=True, inline="always")
def u24(i: int, k1: int, k2: int) -> Any:
    """Scalar twin of :func:`uniform24` for numba kernels (returns a float32)."""
    h = _mix((_mul32(i & M32, GOLDEN) + k1) & M32)
    h = _mix(h ^ k2)
    return numba.float32(h >> 8) * numba.float32(INV24)
