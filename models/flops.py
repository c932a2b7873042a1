"""The fast shape and work pass: one training step on the ``meta`` device, op by op.

:func:`trace_model` builds a model on the meta device (no memory, no arithmetic), runs a
forward, the loss and a backward under a dispatch mode, and records every ATen operation:
its phase (forward or backward), its class (matrix product / convolution / attention,
which run on tensor cores, or memory-bound elementwise and normalization work), its FLOPs
(PyTorch's own counting rules, :data:`torch.utils.flop_counter.flop_registry`) and the
bytes it reads and writes (every input and output tensor once; views move nothing).
Post-accumulate-grad hooks on the parameters record, between the operations, the moment
each gradient is complete, so the parameter list comes out in the order backward produces
it (the order the autograd engine runs on any device) with the number of backward
operations that precede it. Attention called through ``scaled_dot_product_attention``
is traced as the fused kernel a GPU runs, and batch normalization as the two passes it
makes over its input. Nothing is timed: a ResNet-50 or GPT-2 step is traced in
seconds, whatever the batch, and the trace is a pure function of (model, batch).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry

from gradwire.errors import WorkloadError
from gradwire.models.spec import ModelSpec, build_spec

# Operation classes (the estimate gives each its own achieved efficiency).
MATMUL = 0  # mm, addmm, bmm, baddbmm, linear pieces, attention kernels
CONV = 1  # convolutions and their backward
MEMORY = 2  # everything else that moves data: elementwise, normalization, reductions, copies
CLASS_NAMES = ("matmul", "conv", "memory")
FORWARD, BACKWARD = 0, 1

_CONV_OPS = {"convolution", "_convolution", "cudnn_convolution", "convolution_overrideable",
             "_slow_conv2d_forward", "convolution_backward"}  # fmt: skip
# Ops that allocate or describe tensors without touching their data.
_FREE_OPS = {"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "detach",
             "lift_fresh", "alias", "_to_copy_meta", "sym_size", "sym_stride", "is_same_size",
             "_local_scalar_dense", "set_", "resize_", "scalar_tensor", "_has_compatible_shallow_copy_type",
             "_unsafe_view"}  # fmt: skip
# Batch normalization in training makes two passes over its input (statistics, then
# normalization), and its backward two over the input and the output gradient.
_TWO_PASS = {"native_batch_norm": (0,), "_native_batch_norm_legit": (0,),
             "cudnn_batch_norm": (0,), "native_batch_norm_backward": (0, 1),
             "cudnn_batch_norm_backward": (0, 1)}  # fmt: skip


@dataclass(frozen=True)
class OpTrace:
    """Per-operation work of one training step (forward + loss + backward) at one batch.

    Arrays are aligned, one entry per ATen operation in execution order: ``phase``
    (0 forward, 1 backward), ``op_class`` (:data:`MATMUL`, :data:`CONV`, :data:`MEMORY`),
    ``flops`` and ``bytes`` (read + written, at 4 bytes per element; an estimate in a
    narrower precision scales them). ``min_dim`` is the smallest dimension of a matrix
    product or convolution seen as a GEMM (``M`` = batch x output pixels, ``N`` = output
    channels, ``K`` = input channels x kernel; attention: the sequence lengths and the head
    width), 0 for other operations. ``params`` are ``(name, shape)`` in the order
    backward completes their gradients; ``ready_op[i]`` is the number of backward
    operations executed before parameter ``i``'s gradient was complete.
    """

    model: str
    batch_size: int
    phase: np.ndarray
    op_class: np.ndarray
    flops: np.ndarray
    bytes: np.ndarray
    names: tuple[str, ...]
    params: tuple[tuple[str, tuple[int, ...]], ...]
    ready_op: np.ndarray
    min_dim: np.ndarray  # smallest of a GEMM's M, N, K (convolutions as implicit GEMMs); 0 else

    @property
    def num_params(self) -> int:
        return int(sum(math.prod(s) for _, s in self.params))

    def total_flops(self, phase: int | None = None) -> float:
        sel = self.flops if phase is None else self.flops[self.phase == phase]
        return float(sel.sum())


def _nbytes(obj: Any) -> int:
    leaves, _ = tree_flatten(obj)
    seen: set[int] = set()
    total = 0
    for t in leaves:
        if isinstance(t, Tensor) and id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * 4
    return total


def _gemm_min_dim(name: str, args: Any, out: Any) -> float:
    """The smallest GEMM dimension of a matrix product, convolution or attention op."""
    t = [a for a in args if isinstance(a, Tensor)]
    try:
        if name in ("mm", "addmm", "bmm", "baddbmm"):
            a, b = t[-2], t[-1]
            return float(min(a.shape[-2], a.shape[-1], b.shape[-1]))
        if name in ("convolution", "_convolution", "convolution_backward"):
            weight = t[2] if name == "convolution_backward" else t[1]
            o = t[0] if name == "convolution_backward" else out
            pixels = o.shape[0] * math.prod(o.shape[2:])
            return float(min(pixels, weight.shape[0], math.prod(weight.shape[1:])))
        if "attention" in name:
            q, k = t[0], t[1]
            return float(min(q.shape[-2], k.shape[-2], q.shape[-1]))
    except (IndexError, AttributeError):
        return 0.0
    return 0.0


class _Recorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.phase = FORWARD
        self.rows: list[tuple[int, int, float, float, float]] = []
        self.names: list[str] = []
        self.backward_ops = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func.overloadpacket
        name = packet.__name__
        flops = 0.0
        if packet in flop_registry:
            flops = float(flop_registry[packet](*args, **kwargs, out_val=out))
        if flops > 0:
            cls = CONV if name.lstrip("_") in {n.lstrip("_") for n in _CONV_OPS} else MATMUL
        else:
            cls = MEMORY
            if getattr(func, "is_view", False) or name in _FREE_OPS or name.startswith("sym_"):
                return out
        nbytes = _nbytes(args) + _nbytes(kwargs) + _nbytes(out)
        for i in _TWO_PASS.get(name, ()):
            nbytes += _nbytes(args[i])
        self.rows.append((self.phase, cls, flops, float(nbytes), _gemm_min_dim(name, args, out)))
        self.names.append(name)
        if self.phase == BACKWARD:
            self.backward_ops += 1
        return out


def _fused_sdpa(
    q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None, dropout_p: float = 0.0,
    is_causal: bool = False, scale: float | None = None, enable_gqa: bool = False,
) -> Tensor:
    """``scaled_dot_product_attention`` as a GPU runs it: one fused (memory-efficient)
    attention kernel and its backward, which never write the score matrix to memory. On
    the meta device PyTorch would otherwise pick the unfused math path."""
    if enable_gqa and k.shape[-3] != q.shape[-3]:
        rep = q.shape[-3] // k.shape[-3]
        k, v = k.repeat_interleave(rep, dim=-3), v.repeat_interleave(rep, dim=-3)
    bias = attn_mask
    if bias is not None:
        if bias.dtype == torch.bool:
            bias = torch.zeros(bias.shape, dtype=q.dtype, device=q.device).masked_fill(
                ~bias, float("-inf"))
        bias = bias.expand(q.shape[0], q.shape[1], q.shape[2], k.shape[2])
    out = torch.ops.aten._scaled_dot_product_efficient_attention(
        q, k, v, bias, True, dropout_p, is_causal, scale=scale)
    return out[0]  # type: ignore[no-any-return]


def trace_spec(spec: ModelSpec, batch_size: int, *, seed: int = 0) -> OpTrace:
    """Trace one training step of ``spec`` at ``batch_size`` on the meta device."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise WorkloadError(f"batch_size must be a positive integer, got {batch_size!r}")
    meta = torch.device("meta")
    model = build_spec(spec, seed=seed, device=meta)
    model.train()
    x, y = spec.batch_like(batch_size, meta)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise WorkloadError(f"model {spec.name!r} has no trainable parameters")
    rec = _Recorder()
    order: list[tuple[str, tuple[int, ...]]] = []
    ready: list[int] = []

    def hook_for(name: str, shape: tuple[int, ...]) -> Callable[[Tensor], None]:
        def hook(_p: Tensor) -> None:
            order.append((name, shape))
            ready.append(rec.backward_ops)

        return hook

    handles = [p.register_post_accumulate_grad_hook(hook_for(n, tuple(p.shape))) for n, p in named]
    sdpa = torch.nn.functional.scaled_dot_product_attention
    torch.nn.functional.scaled_dot_product_attention = _fused_sdpa  # type: ignore[assignment]
    try:
        with rec:
            loss = spec.loss(model(x), y)
            rec.phase = BACKWARD
            loss.backward()
    finally:
        torch.nn.functional.scaled_dot_product_attention = sdpa
        for h in handles:
            h.remove()
    if len(order) != len(named):
        missing = sorted({n for n, _ in named} - {n for n, _ in order})
        raise WorkloadError(
            f"model {spec.name!r}: parameters {', '.join(missing[:5])} get no gradient from the "
            "loss; freeze them (requires_grad=False) or use them in forward"
        )
    arr = np.array(rec.rows, dtype=float).reshape(-1, 5)
    return OpTrace(
        model=spec.name,
        batch_size=batch_size,
        phase=arr[:, 0].astype(np.int8),
        op_class=arr[:, 1].astype(np.int8),
        flops=arr[:, 2],
        bytes=arr[:, 3],
        min_dim=arr[:, 4],
        names=tuple(rec.names),
        params=tuple(order),
        ready_op=np.array(ready, dtype=np.int64),
    )
