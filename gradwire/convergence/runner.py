"""The convergence runner: real data-parallel SGD whose gradients go through a codec.

K virtual workers share one model. Each step every worker draws a minibatch from its own
shard of the training set, and all K real gradients are computed in one batched pass
(``torch.func.vmap`` over ``grad`` of a ``functional_call``). Each worker's gradient
then goes through the codec with that worker's own :class:`~gradwire.codecs.CodecState`
(seeded generator, error-feedback residual), and the decoded values are combined the way
the collective combines them:

* ``allgather`` -- every worker's payload is decoded and the K decoded tensors averaged
  (also what an allreduce of summable payloads computes);
* ``compressed_allreduce`` -- a ring reduce-scatter in which every hop decodes the
  incoming partial sum, adds the local gradient chunk and re-encodes (K-1 hops), followed
  by an allgather of the owner's re-encoded sum: the re-quantization error of the
  simulator's compressed collective.

Multi-round codecs that override :meth:`~gradwire.codecs.Codec.aggregate` (PowerSGD)
always use their own protocol. The mean gradient drives one SGD step (optionally with heavy
-ball momentum) on the shared model. Every random choice (initial weights, shards,
minibatches, codec draws) comes from generators seeded by ``seed``: the same seed gives
identical curves.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, vmap

from gradwire.codecs import Codec
from gradwire.convergence.tasks import TASKS, Task
from gradwire.errors import ConfigError, NonFiniteGradientError, WorkloadError
from gradwire.registry import parse_spec

EXCHANGES = ("allgather", "compressed_allreduce")
EVAL_CHUNK = 1024  # samples per forward pass when evaluating (bounds peak memory)


@dataclass
class Curve:
    """The learning curve of one codec.

    ``steps`` are the evaluation points (0, every ``eval_every`` steps, and the last step);
    ``train_loss[i]`` is the mean cross-entropy over the whole training set and
    ``test_acc[i]`` the accuracy on the held-out test set (a fraction in [0, 1]) of the
    shared model after ``steps[i]`` optimizer steps. ``step_loss[t]`` is the mean over the
    K workers of the minibatch loss at step ``t`` (before its update), one per step.
    """

    codec: str
    steps: list[int]
    train_loss: list[float]
    test_acc: list[float]
    step_loss: list[float] = field(default_factory=list)
    wall_s: float = 0.0  # host time the run took (not the simulated time)

    @property
    def best_test_acc(self) -> float:
        return max(self.test_acc) if self.test_acc else math.nan


def _check_int(name: str, value: object, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ConfigError(f"run_convergence: {name} must be an integer >= {lo}, got {value!r}")
    return value


def _resolve_device(device: str | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"run_convergence: device {device!r} is not a torch device name") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("run_convergence: device 'cuda' asked for but CUDA is not available")
    return dev


def _input_shape(model: str) -> tuple[int, ...]:
    """The per-sample input shape the zoo model expects (from one probe batch)."""
    from gradwire.models import get_model

    spec = get_model(model)
    x, _ = spec.make_batch(1, generator=torch.Generator().manual_seed(0))
    return tuple(x.shape[1:])


def _fit_task(task: Task, shape: tuple[int, ...], model: str) -> tuple[Tensor, Tensor]:
    if math.prod(shape) != task.sample_numel:
        raise WorkloadError(
            f"run_convergence: model {model!r} takes inputs of shape {shape} "
            f"({math.prod(shape)} values) but task {task.name!r} has {task.sample_numel} per "
            "sample; choose a model whose input matches the task (mlp, small_cnn: 784)"
        )
    return (task.x_train.reshape(-1, *shape), task.x_test.reshape(-1, *shape))


def _shards(n: int, workers: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """A seeded permutation of ``range(n)`` cut into ``workers`` contiguous shards:
    ``(perm, start[K], length[K])`` (lengths differ by at most one)."""
    perm = torch.from_numpy(np.random.default_rng([seed, 0x5A4D]).permutation(n))
    lengths = torch.full((workers,), n // workers, dtype=torch.int64)
    lengths[: n % workers] += 1
    starts = torch.cumsum(lengths, 0) - lengths
    return perm, starts, lengths


def _build_codec(spec: str | Codec, seed: int) -> tuple[Codec, str]:
    """The codec of ``spec`` and its label; the run's seed drives the codec's random
    streams unless the spec fixes its own ``seed``. A ``Codec`` instance is used as is."""
    from gradwire.codecs import make_codec

    if isinstance(spec, Codec):
        return spec, spec.spec()
    _, params = parse_spec(spec)
    return (make_codec(spec) if "seed" in params else make_codec(spec, seed=seed)), spec


class _Exchange:
    """The codec and collective of one run: per-worker states and the combine step."""

    def __init__(
        self,
        codec: Codec,
        names: Sequence[str],
        shapes: Sequence[torch.Size],
        workers: int,
        exchange: str,
        seed: int,
        device: torch.device,
    ) -> None:
        self.codec = codec
        self.k = workers
        self.names = list(names)
        self.exchange = exchange
        # a multi-round exchange (PowerSGD) runs the codec's own protocol
        self.own_protocol = len(self.codec.exchange.rounds) > 1 or type(self.codec).aggregate is not Codec.aggregate
        # One independent seeded stream per (tensor, worker[, chunk]): the codec derives
        # the stream from ``worker``, so each state gets a distinct index.
        self.states: dict[str, list[Any]] = {}
        self.chunk: dict[str, int] = {}
        stream = 0
        for name, shape in zip(self.names, shapes, strict=True):
            if exchange == "allgather" or self.own_protocol:
                count = workers
            else:
                # Ring reduce-scatter: worker w encodes chunk c once per step (at hop
                # (w - c) mod K, or in the allgather when it owns c): K*K states.
                count = workers * workers
                self.chunk[name] = -(-math.prod(shape) // workers)
            self.states[name] = [
                self.codec.new_state(device, worker=stream + i) for i in range(count)
            ]
            stream += count

    def combine(self, name: str, stacked: Tensor) -> Tensor:
        """Mean over workers of ``stacked[K, *shape]`` as the collective delivers it."""
        states = self.states[name]
        if self.own_protocol:
            return self.codec.aggregate(list(stacked.unbind(0)), states)
        if self.exchange == "allgather":
            return self.codec.quantize_many(stacked, states).mean(dim=0)
        return self._ring(stacked, states, self.chunk[name])

    def _ring(self, stacked: Tensor, states: Sequence[Any], chunk: int) -> Tensor:
        k = self.k
        shape = stacked.shape[1:]
        flat = stacked.reshape(k, -1)
        numel = flat.shape[1]
        if chunk * k != numel:
            # Zero padding to K equal chunks; padded entries never reach the model.
            flat = torch.nn.functional.pad(flat, (0, chunk * k - numel))
        local = flat.reshape(k, k, chunk)  # [worker, chunk, chunk_numel]
        ids = torch.arange(k, device=stacked.device)
        # Chunk c starts at worker c and travels c -> c+1 -> ... -> c+K-1 (its owner).
        partial = local[ids, ids]
        for hop in range(1, k):
            sender = (ids + hop - 1) % k
            sent = self.codec.quantize_many(
                partial, [states[int(w) * k + c] for c, w in enumerate(sender.tolist())]
            )
            partial = sent + local[(ids + hop) % k, ids]
        owner = (ids + k - 1) % k
        final = self.codec.quantize_many(
            partial, [states[int(w) * k + c] for c, w in enumerate(owner.tolist())]
        )
        return (final.reshape(-1)[:numel] / k).reshape(shape)


def _evaluate(
    model: nn.Module, params: dict[str, Tensor], x: Tensor, y: Tensor
) -> tuple[float, float]:
    """``(mean cross-entropy, accuracy)`` of the model over ``x``, ``y``."""
    loss_sum = 0.0
    correct = 0
    with torch.no_grad():
        for i in range(0, x.shape[0], EVAL_CHUNK):
            out = functional_call(model, params, (x[i : i + EVAL_CHUNK],))
            tgt = y[i : i + EVAL_CHUNK]
            loss_sum += float(nn.functional.cross_entropy(out, tgt, reduction="sum"))
            correct += int((out.argmax(dim=1) == tgt).sum())
    return loss_sum / x.shape[0], correct / x.shape[0]


def _train_one(
    spec: str | Codec,
    *,
    model: str,
    task: Task,
    x_train: Tensor,
    x_test: Tensor,
    workers: int,
    steps: int,
    batch_per_worker: int,
    lr: float,
    momentum: float,
    seed: int,
    eval_every: int,
    exchange: str,
    device: torch.device,
    tick: Callable[[], None],
) -> Curve:
    import time

    from gradwire.models import build_model

    t0 = time.perf_counter()
    net = build_model(model, seed=seed).to(device)
    params = {n: p.detach().clone() for n, p in net.named_parameters()}
    buffers = {n: b.detach().clone() for n, b in net.named_buffers()}
    names = list(params)
    if net(x_train[:1].to(device)).shape[-1] != task.classes:
        raise WorkloadError(
            f"run_convergence: model {model!r} has {net(x_train[:1].to(device)).shape[-1]} "
            f"outputs but task {task.name!r} has {task.classes} classes"
        )
    codec, label = _build_codec(spec, seed)
    ex = _Exchange(codec, names, [params[n].shape for n in names], workers, exchange, seed, device)

    def loss_fn(p: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        out = functional_call(net, (p, buffers), (x,))
        return nn.functional.cross_entropy(out, y)

    # One batched pass gives all K workers' gradients of the shared parameters.
    per_worker = vmap(grad_and_value(loss_fn), in_dims=(None, 0, 0))

    xtr, ytr = x_train.to(device), task.y_train.to(device)
    xte, yte = x_test.to(device), task.y_test.to(device)
    perm, starts, lengths = (t.to(device) for t in _shards(xtr.shape[0], workers, seed))
    sampler = torch.Generator(device="cpu").manual_seed(seed * 7919 + 17)
    velocity = {n: torch.zeros_like(p) for n, p in params.items()} if momentum else {}

    curve = Curve(codec=label, steps=[], train_loss=[], test_acc=[])

    def record(step: int) -> None:
        loss, _ = _evaluate(net, params, xtr, ytr)
        _, acc = _evaluate(net, params, xte, yte)
        curve.steps.append(step)
        curve.train_loss.append(loss)
        curve.test_acc.append(acc)

    record(0)
    for step in range(1, steps + 1):
        # Worker k samples with replacement from its own shard [start_k, start_k + len_k).
        u = torch.rand((workers, batch_per_worker), generator=sampler).to(device)
        local = (u * lengths[:, None]).long().clamp_max_(lengths[:, None] - 1)
        idx = perm[starts[:, None] + local]
        grads, losses = per_worker(params, xtr[idx], ytr[idx])
        mean_loss = float(losses.mean())
        if not math.isfinite(mean_loss):
            raise NonFiniteGradientError(
                f"run_convergence: codec {label!r} diverged at step {step} (loss {mean_loss}); "
                f"lower lr (now {lr}) or use a codec with error feedback"
            )
        curve.step_loss.append(mean_loss)
        with torch.no_grad():
            for n in names:
                g = ex.combine(n, grads[n])
                if momentum:
                    velocity[n].mul_(momentum).add_(g)
                    g = velocity[n]
                params[n].add_(g, alpha=-lr)
        del grads
        if step % eval_every == 0 or step == steps:
            record(step)
        tick()
    curve.wall_s = time.perf_counter() - t0
    return curve


def run_convergence(
    *,
    model: str = "mlp",
    task: str = "digits",
    codecs: Sequence[str | Codec],
    workers: int = 16,
    steps: int = 200,
    batch_per_worker: int = 16,
    lr: float = 0.1,
    momentum: float = 0.0,
    seed: int = 0,
    eval_every: int = 10,
    exchange: str = "allgather",
    device: str | None = None,
    progress: bool = False,
) -> list[Curve]:
    """Train ``model`` on ``task`` once per codec with K = ``workers`` virtual workers.

    Every codec starts from the same initial weights (``seed``) and sees the same
    minibatches, so curves differ only by the codec. The global batch is
    ``workers * batch_per_worker``; ``lr`` is the SGD step size (per averaged gradient)
    and ``momentum`` the heavy-ball coefficient (0: plain SGD). ``exchange`` is
    ``"allgather"`` or ``"compressed_allreduce"`` (see the module docstring). Returns
    one :class:`Curve` per codec, in the order given, with ``Curve.codec`` the spec
    string exactly as passed (the key into the simulated iteration times; a ``Codec``
    instance is labelled by its ``spec()``).
    """
    from gradwire.models import MODELS

    if isinstance(codecs, str) or not codecs:
        raise ConfigError("run_convergence: codecs must be a non-empty list of codec specs")
    _check_int("workers", workers, 1)
    _check_int("steps", steps, 1)
    _check_int("batch_per_worker", batch_per_worker, 1)
    _check_int("eval_every", eval_every, 1)
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        raise ConfigError(f"run_convergence: lr must be a positive number, got {lr!r}")
    if not (isinstance(momentum, int | float) and 0.0 <= momentum < 1.0):
        raise ConfigError(f"run_convergence: momentum must lie in [0, 1), got {momentum!r}")
    if exchange not in EXCHANGES:
        raise ConfigError(
            f"run_convergence: exchange must be one of {', '.join(EXCHANGES)}, got {exchange!r}"
        )
    MODELS.get(model)  # unknown model -> UnknownNameError listing the zoo
    the_task = TASKS.create(task)
    if workers > the_task.x_train.shape[0]:
        raise ConfigError(
            f"run_convergence: workers={workers} exceeds the {the_task.x_train.shape[0]} "
            f"training samples of task {task!r}; every worker needs a non-empty shard"
        )
    dev = _resolve_device(device)
    x_train, x_test = _fit_task(the_task, _input_shape(model), model)
    for spec in codecs:
        _build_codec(spec, seed)  # fail on a bad spec before any training starts

    bar, tick = _progress(progress, len(codecs) * steps)
    try:
        curves = []
        for spec in codecs:
            if bar is not None:
                bar.update(bar.task_ids[0], description=f"convergence {spec!s}")
            curves.append(
                _train_one(
                    spec, model=model, task=the_task, x_train=x_train, x_test=x_test,
                    workers=workers, steps=steps, batch_per_worker=batch_per_worker,
                    lr=float(lr), momentum=float(momentum), seed=seed,
                    eval_every=eval_every, exchange=exchange, device=dev, tick=tick,
                )
            )
    finally:
        if bar is not None:
            bar.stop()
    return curves


def _progress(enabled: bool, total: int) -> tuple[Any, Callable[[], None]]:
    if not enabled:
        return None, lambda: None
    from rich.console import Console
    from rich.progress import Progress

    bar = Progress(console=Console(file=sys.stderr), transient=True)
    tid = bar.add_task("convergence", total=total)
    bar.start()
    return bar, lambda: bar.advance(tid)
