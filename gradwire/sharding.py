"""A scenario's sharded iteration (``parallelism: fsdp | zero1 | zero2 | zero3 | hsdp``).

:func:`sharded_spec` turns a profiled workload and one codec's measured profile into the
:class:`~gradwire.simulator.sharded.ShardedSpec` that
:func:`~gradwire.simulator.sharded.simulate_sharded` runs, each term from a declaration:

* **units** follow the model's wrapping (:func:`~gradwire.simulator.sharded.forward_order_units`:
  a decoder's blocks one unit each and the rest in the root, as ``fully_shard`` is applied
  per block then on the model; ``sharding.unit_depth`` k groups parameters by the first k
  components of their names). A unit's backward time is the stretch of backward between
  the moment the previous unit's last gradient is ready and the moment its own is (the
  profile's ready times); its forward time is forward's total in the same proportion.
* **the gradient reduce-scatter** of a unit carries the codec's payload: the gradient in
  place (``fp32``: the gradient's own bytes, no codec work; a 16-bit cast in the wire dtype
  the parameters already have, e.g. ``bf16`` with ``param_dtype: bfloat16``, is in place
  too: FSDP2 reduces the bf16 gradients as they are); another summable cast pays its cast
  and cast back; a payload that must be decoded before it is added (QSGD, ``bf16`` with
  ``accumulate='fp32'``, ...) goes through the hierarchical all-to-all, decoding (and adding
  into the float32 sum) and re-encoding once per level. An exchange of several dependent
  rounds (PowerSGD) has no sharded form and is refused.
* **the parameter all-gather** moves the unit's parameters in ``sharding.param_dtype``, or
  encoded by ``sharding.param_codec`` (ZeRO++'s int8 weight all-gather: every rank encodes its
  1/g shard, decodes all g).
* **the optimizer** steps 1/g of the model (the shard).

:func:`memory` is the model-state memory per rank of the ZeRO paper's analysis
(Rajbhandari et al. 2020, §5): P bytes of parameters, G of gradients, K of optimizer state
per parameter, divided by the ranks sharing each as the mode shards them, plus the
parameters a sharded mode holds gathered at once.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gradwire.errors import ConfigError
from gradwire.models.devices import BYTES_PER_ELEMENT
from gradwire.simulator.sharded import (
    GATHERS_PER_UNIT,
    SHARDED_MODES,
    Gather,
    Reduce,
    ShardedSpec,
    ShardUnit,
    forward_order_units,
)

# optimizer state bytes per parameter (Adam): momentum and variance in float32, and the
# float32 master copy when the parameters are 16-bit (the ZeRO paper's K = 12)
ADAM_BYTES_MIXED = 12.0
ADAM_BYTES_FP32 = 8.0
AUTOCAST_DTYPE = {"amp_bf16": "bfloat16", "amp_fp16": "float16"}


@dataclass(frozen=True)
class Scale:
    """Factors on the inputs' times (one draw of the verdict; all 1 for the nominal run)."""

    compute: float = 1.0
    encode: float = 1.0
    decode: float = 1.0


def is_sharded(sc: Any) -> bool:
    return sc.parallelism in SHARDED_MODES


def param_dtype(sc: Any) -> str:
    """The parameters' dtype on the wire and in the gathered unit: ``sharding.param_dtype``;
    unset, the autocast dtype of ``model.precision`` (a MixedPrecisionPolicy with
    ``param_dtype`` the compute dtype, as the bf16 baseline of a decoder assumes), else
    ``model.dtype``."""
    if sc.sharding.param_dtype is not None:
        return str(sc.sharding.param_dtype)
    return AUTOCAST_DTYPE.get(sc.model.precision or "", sc.model.dtype)


def shard_group(sc: Any, topology: Any) -> int:
    """Ranks per shard group: every rank, or for ``hsdp`` ``sharding.group`` (default: the
    ranks of one server)."""
    if sc.parallelism != "hsdp":
        return int(sc.workers)
    if sc.sharding.group is not None:
        return int(sc.sharding.group)
    servers = getattr(topology, "servers", None)
    if not servers:
        raise ConfigError("sharding.group: the topology has no servers to shard within; set "
                          "sharding.group to the ranks per shard group (a divisor of workers)")
    return len(servers[0])


@dataclass(frozen=True)
class Memory:
    """Bytes per rank: model states (parameters, gradients, optimizer) and the parameters a
    sharded mode holds gathered at once (the largest units, two when prefetching)."""

    model_state_bytes: float
    gathered_params_bytes: float


def memory(mode: str, numel: int, *, p: int, group: int, param_bytes: float, grad_bytes: float,
           optimizer_bytes: float, unit_numels: Sequence[int] = (), kept_numel: int = 0,
           prefetch: bool = True) -> Memory:
    """Model-state bytes per rank for ``mode`` (the ZeRO paper's Figure 1 accounting:
    DDP ``(P + G + K) Ψ``; ZeRO-1 ``(P + G) Ψ + K Ψ / N``; ZeRO-2 ``P Ψ + (G + K) Ψ / N``;
    ZeRO-3 and FSDP ``(P + G + K) Ψ / N``; HSDP the same over its shard group), and the
    gathered parameters on top of the shard (``kept_numel``: the root unit FSDP keeps
    gathered from forward to backward; ``unit_numels`` in forward order)."""
    psi = float(numel)
    P, G, K = param_bytes, grad_bytes, optimizer_bytes
    n = float(group if mode == "hsdp" else p)
    state = {
        "ddp": (P + G + K) * psi,
        "zero1": (P + G) * psi + K * psi / n,
        "zero2": P * psi + (G + K) * psi / n,
        "zero3": (P + G + K) * psi / n,
        "fsdp": (P + G + K) * psi / n,
        "hsdp": (P + G + K) * psi / n,
    }[mode]
    gathered = 0.0
    if mode in GATHERS_PER_UNIT and GATHERS_PER_UNIT[mode] and unit_numels:
        u = list(unit_numels)
        window = max(a + b for a, b in itertools.pairwise(u)) if prefetch and len(u) > 1 else max(u)
        gathered = P * (kept_numel + window)
    return Memory(state, gathered)


def optimizer_bytes(sc: Any) -> float:
    if sc.sharding.optimizer_bytes is not None:
        return float(sc.sharding.optimizer_bytes)
    return ADAM_BYTES_MIXED if BYTES_PER_ELEMENT[param_dtype(sc)] == 2 else ADAM_BYTES_FP32


def scenario_memory(sc: Any, wl: Any, topology: Any) -> Memory:
    """:func:`memory` for the point's mode, model and cluster."""
    pb = float(BYTES_PER_ELEMENT[param_dtype(sc)])
    mode = sc.parallelism
    group = shard_group(sc, topology) if is_sharded(sc) else int(sc.workers)
    units = _units(sc, wl) if is_sharded(sc) else []
    numels = [sum(wl.numels[i] for i in idx) for _, idx in units]
    kept = numels[0] if mode == "fsdp" and units and units[0][0] == "(root)" else 0
    return memory(mode, wl.num_params, p=int(sc.workers), group=group, param_bytes=pb, grad_bytes=pb,
                  optimizer_bytes=optimizer_bytes(sc), unit_numels=numels[1:] if kept else numels,
                  kept_numel=kept, prefetch=sc.sharding.prefetch)


def _units(sc: Any, wl: Any) -> list[tuple[str, list[int]]]:
    from gradwire.models.llm_workload import is_decoder

    return forward_order_units(wl.names, wl.ready_s, sc.sharding.unit_depth, is_decoder(sc.model))


def _mean_bytes(prof: Any, idx: Sequence[int]) -> float:
    out = 0.0
    for i in idx:
        bits = prof.params[i].nbits
        out += sum((b + 7) // 8 for b in bits) / len(bits)
    return out


def _reduce(sc: Any, prof: Any, idx: Sequence[int], sum_s: Sequence[float], s: Scale) -> Reduce:
    ex = prof.exchange
    numel = sum(prof.params[i].numel for i in idx)
    if len(ex.rounds) > 1:
        raise ConfigError(f"parallelism: {sc.parallelism!r} reduce-scatters each unit's gradient, and codec "
                          f"{prof.spec!r} exchanges {len(ex.rounds)} dependent rounds that have no "
                          "sharded form; remove it from codecs or use parallelism: ddp")
    if ex.in_place:
        return Reduce(float(numel * BYTES_PER_ELEMENT[sc.model.dtype]))
    nbytes = _mean_bytes(prof, idx)
    enc = (sum(prof.params[i].encode_s for i in idx) + prof.encode_call_s) * s.encode
    dec = (sum(prof.params[i].decode_s for i in idx) + prof.decode_call_s) * s.decode
    if ex.summable:
        wire = 8.0 * nbytes / max(1, numel)
        if BYTES_PER_ELEMENT[param_dtype(sc)] == 2 and abs(wire - 16.0) < 1e-6:
            return Reduce(nbytes)  # the 16-bit gradients reduced as they are (no cast)
        return Reduce(nbytes, enc, dec)
    added = sum(sum_s[i] for i in idx) * s.decode if sum_s else 0.0
    return Reduce(nbytes, enc, dec + added, quantized=True)


def _gather(sc: Any, pprof: Any, idx: Sequence[int], numel: int, g: int, s: Scale) -> Gather:
    if pprof is None:
        return Gather(float(numel * BYTES_PER_ELEMENT[param_dtype(sc)]))
    enc = (sum(pprof.params[i].encode_s for i in idx) + pprof.encode_call_s) * s.encode
    dec = (sum(pprof.params[i].decode_s for i in idx) + pprof.decode_call_s) * s.decode
    return Gather(_mean_bytes(pprof, idx), enc / g, dec)


def sharded_spec(sc: Any, wl: Any, prof: Any, topology: Any, *, sum_s: Sequence[float] | None = None,
                 param_prof: Any = None, scale: Scale = Scale()) -> ShardedSpec:
    """The sharded iteration of codec profile ``prof`` (see the module docstring)."""
    mode = sc.parallelism
    g = shard_group(sc, topology)
    units = _units(sc, wl)
    ready = [max(wl.ready_s[i] for i in idx) for _, idx in units]
    # backward runs the units in reverse forward order: each unit's stretch of backward
    order = sorted(range(len(units)), key=lambda k: ready[k])
    bwd = [0.0] * len(units)
    prev = 0.0
    for pos, k in enumerate(order):
        end = wl.backward_s if pos == len(order) - 1 else min(ready[k], wl.backward_s)
        bwd[k] = max(0.0, end - prev)
        prev = max(prev, end)
    total_b = sum(bwd)
    out: list[ShardUnit] = []
    for k, (name, idx) in enumerate(units):
        numel = sum(wl.numels[i] for i in idx)
        fwd = wl.forward_s * (bwd[k] / total_b if total_b > 0 else 1.0 / len(units))
        keep = mode == "fsdp" and name == "(root)" and k == 0
        out.append(ShardUnit(name, numel, fwd * scale.compute, bwd[k] * scale.compute,
                             _gather(sc, param_prof, idx, numel, g, scale),
                             _reduce(sc, prof, idx, sum_s or (), scale), reshard=not keep))
    final = None
    if not GATHERS_PER_UNIT[mode]:  # ZeRO-1/2: the updated parameters gathered after the step
        every = list(range(len(wl.numels)))
        final = _gather(sc, param_prof, every, wl.num_params, g, scale)
    return ShardedSpec(mode, tuple(out), wl.optimizer_s * scale.compute / g, group=g if mode == "hsdp" else 0,
                       prefetch=sc.sharding.prefetch, codec_overlap=sc.codec_overlap, final_gather=final)


def describe(spec: ShardedSpec) -> str:
    """The collectives of a sharded iteration, for the rows' ``collective`` column."""
    quantized = any(u.reduce.quantized for u in spec.units)
    gather = "ring all-gather" + (" (encoded)" if any(u.gather.encode_s > 0 for u in spec.units) else "")
    if spec.mode == "hsdp":
        rs = ("hierarchical all-to-all + replica all-gather" if quantized
              else "ring reduce-scatter + replica allreduce")
    else:
        rs = "hierarchical all-to-all reduce-scatter" if quantized else "ring reduce-scatter"
    return f"{spec.mode}: {gather} + {rs}"


def sharding_problems(sc: Any) -> list[tuple[str, str]]:
    """``(path, message)`` for settings a sharded (or DDP) iteration cannot honour."""
    out: list[tuple[str, str]] = []
    if not is_sharded(sc):  # sharding.* is read by sharded modes only (and by DDP's memory)
        return out
    mode = sc.parallelism
    if sc.stragglers:
        out.append(("stragglers", f"are simulated for parallelism: ddp only; remove them for {mode!r}"))
    if sc.jitter:
        out.append(("jitter", f"is simulated for parallelism: ddp only; set it to 0 for {mode!r}"))
    if not sc.overlap:
        out.append(("overlap", f"false applies to DDP's buckets; for {mode!r} set sharding.prefetch: false "
                    "to issue each all-gather only when its unit needs it"))
    if sc.sharding.group is not None:
        if mode != "hsdp":
            out.append(("sharding.group", f"applies to hsdp only ({mode!r} shards over every rank)"))
        elif sc.workers % sc.sharding.group:
            out.append(("sharding.group", f"{sc.sharding.group} ranks per shard group do not divide "
                        f"{sc.workers} workers; choose a divisor of {sc.workers}"))
    from gradwire.codecs import make_codec
    from gradwire.errors import GradWireError

    for i, spec in enumerate(sc.codecs):
        try:
            ex = make_codec(spec).exchange
        except GradWireError:
            continue  # reported by the codec checks
        if len(ex.rounds) > 1:
            out.append((f"codecs[{i}]", f"{spec!r} exchanges {len(ex.rounds)} dependent rounds, which have "
                        f"no sharded form under parallelism {mode!r}; remove it or use parallelism: ddp"))
    pc = sc.sharding.param_codec
    if pc is not None:
        try:
            ex = make_codec(pc).exchange
        except GradWireError as exc:
            out.append(("sharding.param_codec", str(exc)))
        else:
            if len(ex.rounds) > 1:
                out.append(("sharding.param_codec", f"{pc!r} exchanges several rounds; an all-gather of "
                            "parameters takes one payload codec (e.g. qsgdinf(bits=8, bucket=256))"))
    return out


__all__ = [
    "ADAM_BYTES_FP32",
    "ADAM_BYTES_MIXED",
    "Memory",
    "Scale",
    "describe",
    "is_sharded",
    "memory",
    "optimizer_bytes",
    "param_dtype",
    "scenario_memory",
    "shard_group",
    "sharded_spec",
    "sharding_problems",
]
