"""Every GradWire codec as a real ``DistributedDataParallel`` communication hook.

``make_ddp_hook(codec)`` returns ``(state, hook)`` for ``ddp_model.register_comm_hook``.
The hook receives DDP's flat gradient bucket and, per codec family:

* ``fp32``: allreduce of the bucket divided by the world size (exactly DDP's default);
* summable casts (``fp16``, ``bf16``): the same allreduce in the wire dtype;
* quantized codecs (qsgd, qsgdinf, nuqsgd, onebit, terngrad, signsgd, topk, ...): the
  bucket is encoded into real bytes, the ranks exchange their payload lengths in bits
  (one small allgather), then allgather the ``uint8`` payloads padded to the longest;
  every rank decodes all payloads in rank order and averages them, so every rank applies
  bit-identical gradients;
* PowerSGD (Vogels et al., NeurIPS 2019, Algorithm 1): the codec's own layer-wise two
  allreduces, of every ``P = M Q`` and of every ``Q = M^T P_hat``, with error feedback and
  the warm-started ``Q`` kept per rank and per gradient.

Codec state (generator, error-feedback residual, warm start) lives in
:class:`DDPHookState`, one :class:`~gradwire.codecs.base.CodecState` per bucket index,
kept across iterations and reset when DDP rebuilds a bucket to another size. Works with
gloo (CPU tensors) and NCCL (CUDA tensors): payloads stay on the bucket's device. The
collectives are all issued from the thread that runs the hook, in bucket order, so every
rank issues them in the same order; the payload exchange is asynchronous and decoding
runs when it completes, so the transfer overlaps the rest of backward.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from gradwire.codecs.base import Codec, CodecState, Payload, check_received_nbits, make_codec
from gradwire.errors import ConfigError

HookFn = Callable[[Any, "dist.GradBucket"], "torch.futures.Future[torch.Tensor]"]


@dataclass
class BucketCall:
    """What one hook call did (seconds from ``time.perf_counter``; bytes on the wire)."""

    index: int
    numel: int
    called_s: float  # perf_counter when DDP handed the bucket to the hook
    encode_s: float  # encoding this rank's payload
    payload_bytes: int  # this rank's payload, before padding
    wire_bytes: int  # what this rank put into the collective (padded payload or cast tensor)
    decode_s: float = math.nan  # decoding + averaging every rank's payload (all of them)
    done_s: float = math.nan  # perf_counter when the averaged bucket was ready


@dataclass
class DDPHookState:
    """Per-rank state of a GradWire hook: the codec, its per-bucket states, a call log.

    ``log`` keeps the last ``log_limit`` :class:`BucketCall` records (the validation
    harness reads real bucket ready times, encode/decode costs and payload sizes from it).
    """

    codec: Codec
    process_group: Any = None
    states: dict[int, CodecState] = field(default_factory=dict)
    log: list[BucketCall] = field(default_factory=list)
    log_limit: int = 10_000

    @property
    def world_size(self) -> int:
        return int(dist.get_world_size(self.process_group))

    @property
    def rank(self) -> int:
        return int(dist.get_rank(self.process_group))

    def state_for(self, index: int, flat: torch.Tensor) -> CodecState:
        """The codec state of bucket ``index``; fresh when new or when its size changed.

        DDP rebuilds its buckets after the first iteration (in gradient-ready order), so a
        bucket index can then hold different parameters: a residual of another size is
        meaningless and is dropped. Rank r, bucket b draws from worker stream
        ``r + world * b`` so no two (rank, bucket) pairs share random numbers.
        """
        st = self.states.get(index)
        numel = flat.numel()
        if st is None or st.extra.get("_numel") != numel:
            st = self.codec.new_state(flat.device, worker=self.rank + self.world_size * index)
            st.extra["_numel"] = numel
            self.states[index] = st
        return st

    def record(self, call: BucketCall) -> None:
        self.log.append(call)
        if len(self.log) > self.log_limit:
            del self.log[: len(self.log) - self.log_limit]


def _done(value: torch.Tensor) -> torch.futures.Future[torch.Tensor]:
    fut: torch.futures.Future[torch.Tensor] = torch.futures.Future()
    fut.set_result(value)
    return fut


def _allreduce_hook(state: DDPHookState, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """Full precision: divide by the world size, then sum (DDP's own default hook)."""
    t0 = time.perf_counter()
    flat = bucket.buffer()
    world = state.world_size
    call = BucketCall(bucket.index(), flat.numel(), t0, 0.0, flat.numel() * flat.element_size(),
                      flat.numel() * flat.element_size())
    flat.div_(world)
    fut = dist.all_reduce(flat, group=state.process_group, async_op=True).get_future()

    def finish(f: torch.futures.Future[list[torch.Tensor]]) -> torch.Tensor:
        call.decode_s = 0.0
        call.done_s = time.perf_counter()
        state.record(call)
        return f.value()[0]

    return fut.then(finish)


def _cast_hook(state: DDPHookState, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """Summable casts: allreduce in the wire dtype (fp16/bf16), cast back into the bucket."""
    t0 = time.perf_counter()
    flat = bucket.buffer()
    world = state.world_size
    wire_dtype: torch.dtype = state.codec.wire_dtype  # type: ignore[attr-defined]
    # The codec's own cast checks for non-finite values and for overflow of the wire dtype.
    payload = state.codec.encode(flat.div(world))
    wire = payload.data.view(wire_dtype)
    enc = time.perf_counter() - t0
    nbytes = wire.numel() * wire.element_size()
    call = BucketCall(bucket.index(), flat.numel(), t0, enc, nbytes, nbytes)
    fut = dist.all_reduce(wire, group=state.process_group, async_op=True).get_future()

    def finish(f: torch.futures.Future[list[torch.Tensor]]) -> torch.Tensor:
        t1 = time.perf_counter()
        flat.copy_(f.value()[0])
        call.decode_s = time.perf_counter() - t1
        call.done_s = time.perf_counter()
        state.record(call)
        return flat

    return fut.then(finish)


def _allgather(out: torch.Tensor, inp: torch.Tensor, group: Any) -> Any:
    return dist.all_gather_into_tensor(out, inp, group=group, async_op=True)


def _exchange_pair(rows: torch.Tensor, mine: torch.Tensor, group: Any) -> torch.futures.Future[Any]:
    """Allgather for exactly two ranks as one send and one receive (both asynchronous)."""
    me = dist.get_rank(group)
    peer = 1 - me
    rows[me].copy_(mine)
    peer_global = dist.get_global_rank(group, peer) if group is not None else peer
    ops = [dist.P2POp(dist.isend, mine, peer_global, group),
           dist.P2POp(dist.irecv, rows[peer], peer_global, group)]
    works = dist.batch_isend_irecv(ops)
    # gloo's point-to-point works have no futures: a helper thread waits for both and
    # completes one, so the hook stays asynchronous like the collective path.
    fut: torch.futures.Future[Any] = torch.futures.Future()

    def wait() -> None:
        try:
            for w in works:
                w.wait()
            fut.set_result(rows)
        except Exception as exc:  # surfaced to DDP through the future
            fut.set_exception(exc)

    threading.Thread(target=wait, name="gradwire-pair-exchange", daemon=True).start()
    return fut


def _quantized_hook(state: DDPHookState, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """Quantized codecs: encode, allgather lengths, allgather padded payloads, decode, average."""
    t0 = time.perf_counter()
    flat = bucket.buffer()
    world = state.world_size
    group = state.process_group
    cst = state.state_for(bucket.index(), flat)
    payload = state.codec.encode(flat, cst)
    enc = time.perf_counter() - t0
    data = payload.data.reshape(-1)
    dev = flat.device
    # Lengths in bits: variable-length codes (Elias) differ per rank, and decode needs the
    # exact bit count, not just the byte count.
    mine = torch.tensor([payload.nbits], dtype=torch.int64, device=dev)
    all_bits = torch.empty(world, dtype=torch.int64, device=dev)
    _allgather(all_bits, mine, group).wait()
    bits = [int(b) for b in all_bits.tolist()]
    for r, b in enumerate(bits):  # other ranks' lengths come over the network: bound them first
        check_received_nbits(b, flat.numel(), state.codec.name, r)
    maxlen = max(1, max((b + 7) // 8 for b in bits))
    padded = torch.zeros(maxlen, dtype=torch.uint8, device=dev)
    padded[: data.numel()] = data
    gathered = torch.empty(world * maxlen, dtype=torch.uint8, device=dev)
    call = BucketCall(bucket.index(), flat.numel(), t0, enc, payload.nbytes, maxlen)
    if world == 2 and dev.type == "cpu":
        # Two ranks: one message each way. gloo's allgather splits each payload in two
        # and posts the second receive after its own sends, so on the one connection two
        # ranks share, that receive's rendezvous can queue behind the rank's outgoing data
        # and the second half then starts only after the first has drained (measured up to
        # 1.5x the transfer time); a single exchange has no second rendezvous.
        fut = _exchange_pair(gathered.view(world, maxlen), padded, group)
    else:
        fut = _allgather(gathered, padded, group).get_future()
    shape, dtype, name = payload.shape, payload.dtype, payload.codec

    def finish(f: torch.futures.Future[Any]) -> torch.Tensor:
        t1 = time.perf_counter()
        rows = gathered.view(world, maxlen)
        acc = torch.zeros(flat.numel(), dtype=torch.float32, device=dev)
        # Rank order is the same on every rank, so the float sum is bit-identical everywhere.
        for r in range(world):
            nb = (bits[r] + 7) // 8
            p = Payload(rows[r, :nb].clone(), bits[r], shape, dtype, name)
            acc += state.codec.decode(p).reshape(-1).to(torch.float32)
        flat.copy_(acc.div_(world))
        call.decode_s = time.perf_counter() - t1
        call.done_s = time.perf_counter()
        state.record(call)
        return flat

    return fut.then(finish)


def _powersgd_hook(state: DDPHookState, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """PowerSGD, layer-wise: the codec's own two rounds over the bucket's gradients.

    Each gradient in the bucket is compressed as the codec compresses it (its own matrix
    ``[shape[0], -1]``, small ones raw), exactly as in simulation and in the convergence
    runner: round 1 allreduces every ``P_k = M_k Q`` and the raw gradients in one flat
    buffer, the codec orthogonalizes the averaged ``P``s, round 2 allreduces every
    ``Q_k = M_k^T P``, and ``P Q^T`` is written back into the bucket. The bytes of the two
    rounds are the codec's :meth:`~gradwire.codecs.powersgd.PowerSGD.round_bits`.
    """
    from gradwire.codecs.powersgd import PowerSGD

    t0 = time.perf_counter()
    codec = state.codec
    assert isinstance(codec, PowerSGD)  # internal: chosen by make_ddp_hook for this codec
    flat = bucket.buffer()
    grads = bucket.gradients()
    world = state.world_size
    group = state.process_group
    states = [state.state_for(bucket.index() * 1_000_003 + i, g) for i, g in enumerate(grads)]
    firsts, ctx = codec.first_round(grads, states)
    buf1 = torch.cat([x.reshape(-1) for x in firsts])
    enc = time.perf_counter() - t0
    dist.all_reduce(buf1, group=group)
    buf1 /= world
    p_mean = [part.view_as(x) for part, x in zip(buf1.split([x.numel() for x in firsts]), firsts, strict=True)]
    seconds = codec.second_round(ctx, p_mean)
    bytes2 = 0
    q_mean: list[torch.Tensor] = []
    if seconds:
        buf2 = torch.cat([x.reshape(-1) for x in seconds])
        bytes2 = buf2.numel() * 4
        dist.all_reduce(buf2, group=group)
        buf2 /= world
        q_mean = [part.view_as(x) for part, x in zip(buf2.split([x.numel() for x in seconds]), seconds, strict=True)]
    decoded = codec.finish(ctx, q_mean)
    flat.copy_(torch.cat([d.reshape(-1).to(flat.dtype) for d in decoded]))
    nbytes = buf1.numel() * 4 + bytes2
    done = time.perf_counter()
    state.record(BucketCall(bucket.index(), flat.numel(), t0, enc, nbytes, nbytes, 0.0, done))
    return _done(flat)


# DDP inspects a hook's annotations and wants the objects themselves, not the strings
# that postponed evaluation of annotations leaves behind.
for _fn in (_allreduce_hook, _cast_hook, _quantized_hook, _powersgd_hook):
    _fn.__annotations__.update(bucket=dist.GradBucket, state=DDPHookState,
                               **{"return": torch.futures.Future[torch.Tensor]})


EXCHANGES = ("auto", "allreduce", "allgather")


def make_ddp_hook(
    codec: str | Codec, *, process_group: Any = None, exchange: str = "auto"
) -> tuple[DDPHookState, HookFn]:
    """``(state, hook)`` running ``codec`` on every DDP bucket; see the module docstring.

    ``codec`` is a spec such as ``"qsgd(bits=4, bucket=512)"`` or a codec object. Use as
    ``ddp_model.register_comm_hook(state, hook)``. ``process_group`` defaults to the world.
    ``exchange="allgather"`` sends even a summable codec as encoded payloads through the
    allgather path (to compare the two exchanges on the same codec); ``"allreduce"`` is
    only valid for summable codecs; ``"auto"`` picks by the codec.
    """
    if exchange not in EXCHANGES:
        raise ConfigError(f"make_ddp_hook: exchange must be one of {EXCHANGES}, got {exchange!r}")
    c = make_codec(codec)
    state = DDPHookState(codec=c, process_group=process_group)
    hook: HookFn
    if exchange == "allreduce" and not c.summable:
        raise ConfigError(
            f"make_ddp_hook: codec {c.spec()!r} is not summable, so exchange='allreduce' "
            "cannot carry it; use exchange='auto' or 'allgather'"
        )
    ex = c.exchange  # the codec's declared exchange picks the hook
    if exchange == "allgather" or not ex.summable:
        hook = _quantized_hook
    elif ex.in_place:
        hook = _allreduce_hook
    elif len(ex.rounds) == 2 and hasattr(c, "first_round"):
        hook = _powersgd_hook
    elif len(ex.rounds) == 1:
        if not hasattr(c, "wire_dtype"):
            raise ConfigError(
                f"codec {c.spec()!r} is summable but names no wire dtype; a one-round summable "
                "codec for DDP must be a cast (fp16, bf16)"
            )
        hook = _cast_hook
    else:
        raise ConfigError(f"codec {c.spec()!r} declares {len(ex.rounds)} summable rounds; "
                          "no DDP hook implements that exchange")
    return state, hook


__all__ = ["EXCHANGES", "BucketCall", "DDPHookState", "make_ddp_hook"]
