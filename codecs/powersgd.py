"""PowerSGD (Vogels, Karimireddy, Jaggi, NeurIPS 2019): rank-r power iteration, warm start.

Each tensor of two or more dimensions is viewed as a matrix ``M`` of shape ``[rows,
cols] = [shape[0], -1]``; with error feedback ``M = g + e``. The real protocol
(:meth:`PowerSGD.aggregate`, Algorithm 1 of the paper, PyTorch's ``powerSGD_hook``) is
two allreduce rounds: ``P_k = M_k Q``; ``P = mean_k P_k``; orthogonalize ``P`` (reduced
QR); ``Q_k = M_k^T P``; ``Q = mean_k Q_k``; every worker decodes ``P Q^T``, sets
``e_k = M_k - P Q^T`` and keeps ``Q`` as the next step's warm start (in
``state.extra["Q"]``; the first ``Q`` is drawn from a generator seeded by the codec's
seed, identical on all workers). One worker's :meth:`encode` carries its ``P`` and ``Q``
factors as fp32, ``(rows + cols) * r * 32`` bits; decoding that payload alone gives the
single-worker (K = 1) result. Vectors, and matrices where the factors would not save at
least ``min_compression`` (default 2x), are sent raw in fp32 (allreduced in full).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
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
    new_generator,
    state_for,
)
from gradwire.codecs.cost import CodecWork, Work, stream
from gradwire.codecs.exchange import Exchange
from gradwire.codecs.qsgd import check_int
from gradwire.errors import ConfigError


def orthogonalize(p: torch.Tensor) -> torch.Tensor:
    """Orthonormal columns spanning ``p`` ([rows, r]) via reduced QR (the paper uses
    Gram-Schmidt; both give the same span). Zero columns stay zero."""
    q, _ = torch.linalg.qr(p, mode="reduced")
    return q


@CODECS.register("powersgd")
class PowerSGD(Codec):
    """Rank-``rank`` PowerSGD with warm start and error feedback (see module docstring)."""

    name = "powersgd"
    summable = True
    stateful = True
    # P then Q: two dependent allreduces. The encode work is the two equal matrix products
    # M Q (before round 1) and M^T P (after orthogonalizing the averaged P, before round 2),
    # each 2·rows·cols·r FLOPs; the QR of P is O(rows·r^2) and is counted with the second.
    exchange = Exchange(("sum", "sum"), encode_split=(0.5, 0.5))

    def __init__(self, *, rank: int = 2, warm_start: bool = True, min_compression: float = 2.0,
                 seed: int = 0) -> None:
        super().__init__(seed=seed)
        self.rank = check_int("rank", self.name, rank, 1)
        if not isinstance(warm_start, bool):
            raise ConfigError(f"codec 'powersgd': warm_start must be true or false, "
                              f"got {warm_start!r}")
        if isinstance(min_compression, bool) or not isinstance(min_compression, int | float) or (
            min_compression < 1
        ):
            raise ConfigError(f"codec 'powersgd': min_compression={min_compression!r} is "
                              "impossible; it must be >= 1")
        self.warm_start = warm_start
        self.min_compression = float(min_compression)

    def params(self) -> dict[str, Any]:
        return {"rank": self.rank, "warm_start": self.warm_start,
                "min_compression": self.min_compression}

    def matrix_shape(self, shape: tuple[int, ...]) -> tuple[int, int] | None:
        """``(rows, cols)`` when a tensor of ``shape`` is compressed, else None (sent raw)."""
        if len(shape) < 2:
            return None
        rows = shape[0]
        cols = 1
        for s in shape[1:]:
            cols *= s
        r = min(self.rank, rows, cols)
        if rows * cols == 0 or rows * cols < self.min_compression * (rows + cols) * r:
            return None
        return rows, cols

    def _rank(self, rows: int, cols: int) -> int:
        return min(self.rank, rows, cols)

    def _q(self, state: CodecState, cols: int, r: int, device: torch.device) -> torch.Tensor:
        q = state.extra.get("Q")
        if q is None or not self.warm_start or q.shape != (cols, r):
            gen = new_generator(self.seed, "cpu")  # same start on every worker
            q = torch.randn(cols, r, generator=gen).to(device)
        return q

    # --- cost model (gradwire.codecs.cost) -----------------------------------------------
    def work(self, shape: tuple[int, ...]) -> CodecWork:
        """Encode: a finiteness sum, ``M = g + e``, ``M Q`` and ``M^T P`` (each reads M),
        the reduced QR of ``P`` (4 rows r^2 FLOPs), ``P Q^T`` and ``e <- M - P Q^T``.
        Decode: ``P Q^T``. Raw tensors: a finiteness sum and a copy; decode is a view."""
        n = math.prod(shape)
        ms = self.matrix_shape(tuple(shape))
        if ms is None:
            return CodecWork(Work(bytes=stream(n, 4, 8), launches=3, calls=1, reduce=n),
                             Work(launches=1, calls=1))
        rows, cols = ms
        r = self._rank(rows, cols)
        factors = 4.0 * (rows + cols) * r
        return CodecWork(
            encode=Work(bytes=stream(n, 4, 12, 4, 4, 4, 12) + 2 * factors, launches=10, calls=1,
                        reduce=n, flops=6.0 * n * r + 4.0 * rows * r * r),
            decode=Work(bytes=factors + stream(n, 4), launches=2, calls=1, flops=2.0 * n * r),
        )

    # --- one worker --------------------------------------------------------------------
    def encode(self, tensor: torch.Tensor, state: CodecState | None = None) -> Payload:
        check_finite(tensor, self.name)
        shape = tuple(tensor.shape)
        ms = self.matrix_shape(shape)
        if ms is None:
            check_encoded_finite(tensor.detach().reshape(-1).to(torch.float32), self.name, shape, "values")
            data = tensor.detach().reshape(-1).to(torch.float32).contiguous().view(torch.uint8)
            return Payload(data.clone(), 8 * data.numel(), shape, tensor.dtype, self.name)
        st = state_for(self, tensor, state)
        rows, cols = ms
        r = self._rank(rows, cols)
        val = ef_input(tensor, st)
        m = val.reshape(rows, cols)
        p = orthogonalize(m @ self._q(st, cols, r, m.device))
        q = m.T @ p
        check_encoded_finite(torch.cat([p.reshape(-1), q.reshape(-1)]), self.name, shape, "factors P, Q")
        st.extra["Q"] = q
        ef_update(st, val, (p @ q.T).reshape(shape))
        data = torch.cat([p.contiguous().reshape(-1), q.contiguous().reshape(-1)])
        return Payload(data.view(torch.uint8), 32 * (rows + cols) * r, shape, tensor.dtype,
                       self.name)

    def decode(self, payload: Payload) -> torch.Tensor:
        shape = payload.shape
        ms = self.matrix_shape(shape)
        n = payload.numel
        if ms is None:
            expect_nbytes(payload, self.name, 4 * n, 32 * n)
            flat = payload.data.view(torch.float32)
            expect_finite(flat, payload, self.name, "value")
            return flat.to(payload.dtype).reshape(shape)
        rows, cols = ms
        r = self._rank(rows, cols)
        expect_nbytes(payload, self.name, 4 * (rows + cols) * r, 32 * (rows + cols) * r)
        flat = payload.data.view(torch.float32)
        expect_finite(flat, payload, self.name, "factor entry")
        p = flat[: rows * r].reshape(rows, r)
        q = flat[rows * r :].reshape(cols, r)
        out = p @ q.T
        expect_finite(out, payload, self.name, "product P Q^T entry")
        return out.to(payload.dtype).reshape(shape)

    def quantize(self, tensor: torch.Tensor, state: CodecState | None = None) -> torch.Tensor:
        """Single-worker value; the same arithmetic as :meth:`encode` then :meth:`decode`."""
        return self.decode(self.encode(tensor, state))

    def round_bits(self, nbits: int, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Round 1 carries P (``rows * r`` fp32) or the raw tensor; round 2 carries Q."""
        ms = self.matrix_shape(shape)
        if ms is None:
            return (nbits, 0)
        rows, cols = ms
        r = self._rank(rows, cols)
        return (32 * rows * r, 32 * cols * r)

    # --- the two-round protocol, one worker's side (the DDP hook and aggregate use it) --
    def first_round(self, tensors: Sequence[torch.Tensor], states: Sequence[CodecState]
                    ) -> tuple[list[torch.Tensor], PowerSGDContext]:
        """What this worker allreduces first: ``P_k = M_k Q`` per compressed tensor, the
        tensor itself (fp32) per raw one; plus the context the later steps need."""
        if len(tensors) != len(states):
            raise ConfigError("powersgd: one state per tensor is required")
        out: list[torch.Tensor] = []
        ctx = PowerSGDContext([], [], [], [])
        for t, st in zip(tensors, states, strict=True):
            check_finite(t, self.name)
            shape = tuple(t.shape)
            ms = self.matrix_shape(shape)
            ctx.shapes.append(shape)
            ctx.states.append(st)
            if ms is None:
                ctx.vals.append(None)
                ctx.mats.append(None)
                out.append(t.detach().to(torch.float32).reshape(-1))
                continue
            rows, cols = ms
            val = ef_input(t, st)
            m = val.reshape(rows, cols)
            ctx.vals.append(val)
            ctx.mats.append(m)
            out.append(m @ self._q(st, cols, self._rank(rows, cols), m.device))
        return out, ctx

    def second_round(self, ctx: PowerSGDContext, p_mean: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Local work between the rounds: orthogonalize the averaged ``P`` (kept in the
        context) and return ``Q_k = M_k^T P`` per compressed tensor, to be allreduced."""
        out: list[torch.Tensor] = []
        ctx.p_hat = []
        for m, p in zip(ctx.mats, p_mean, strict=True):
            if m is None:
                ctx.p_hat.append(p)
                continue
            ph = orthogonalize(p)
            ctx.p_hat.append(ph)
            out.append(m.T @ ph)
        return out

    def finish(self, ctx: PowerSGDContext, q_mean: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Decode ``P Q^T`` per tensor (raw ones: the averaged tensor), update each worker's
        error feedback against what every worker applies, keep ``Q`` as the warm start."""
        out: list[torch.Tensor] = []
        qs = iter(q_mean)
        for shape, st, val, ph in zip(ctx.shapes, ctx.states, ctx.vals, ctx.p_hat, strict=True):
            if val is None:
                out.append(ph.reshape(shape))
                continue
            q = next(qs)
            decoded = (ph @ q.T).reshape(shape)
            ef_update(st, val, decoded)
            st.extra["Q"] = q
            out.append(decoded)
        return out

    # --- the two-round protocol over K workers -----------------------------------------
    def aggregate(
        self, tensors: Sequence[torch.Tensor], states: Sequence[CodecState]
    ) -> torch.Tensor:
        """K workers' exchange of one tensor: the same steps as the DDP hook, with the
        allreduces as means over the workers."""
        if len(tensors) != len(states) or not tensors:
            raise ConfigError("aggregate: one state per tensor is required (at least one worker)")
        firsts = [self.first_round([t], [st]) for t, st in zip(tensors, states, strict=True)]
        p_mean = torch.stack([f[0][0] for f in firsts]).mean(0)  # allreduce #1
        seconds = [self.second_round(ctx, [p_mean]) for _, ctx in firsts]
        q_mean = [torch.stack([s[0] for s in seconds]).mean(0)] if seconds[0] else []  # allreduce #2
        # every worker finishes (its own error feedback); all decode the same value
        decoded = [self.finish(ctx, q_mean)[0] for _, ctx in firsts]
        return decoded[0].to(tensors[0].dtype)


@dataclass
class PowerSGDContext:
    """One worker's PowerSGD step between its rounds: per tensor its shape, state, the
    error-fed value and matrix (None for a tensor sent raw), and the orthogonalized P."""

    shapes: list[tuple[int, ...]]
    states: list[CodecState]
    vals: list[torch.Tensor | None]
    mats: list[torch.Tensor | None]
    p_hat: list[torch.Tensor] = field(default_factory=list)
