"""Profiling a model on the device at hand: per-gradient ready times, step times, gradients.

:func:`profile_model` runs warm-up and timed training steps (forward, backward, SGD with
momentum) of a zoo model on CUDA when present, else the CPU. A post-accumulate-grad hook
on every parameter timestamps the moment its gradient is ready, relative to the start of
backward (``time.perf_counter`` on the CPU, CUDA events on a GPU), so the simulator can
start bucketing and sending gradients in the order and at the times backward produces them.
The gradients of the first step (seeded weights, seeded batch) are kept for the codecs.
A cheap pass on the ``meta`` device counts per-layer FLOPs and bytes (for rescaling to
other GPUs, see :mod:`gradwire.models.devices`) and the bytes saved for backward, which
bound the memory a batch needs; an impossible batch is refused before anything is
allocated. Profiles are cached on disk (JSON + one flat ``.npy``) keyed by model, batch, dtype,
device, torch version and settings, so a repeated call does no profiling.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from gradwire.errors import ConfigError, WorkloadError
from gradwire.models.spec import ModelSpec, build_spec, get_model

CACHE_FORMAT = 3  # 3: steps keep their spread
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
# SGD with momentum reads param, grad, momentum buffer and writes param and buffer.
META_FRAMES = 10  # frames of a sequence batch run on the meta device (then scaled)
OPTIMIZER_STATE_COPIES = 1  # one momentum buffer per parameter
OPTIMIZER_BYTES_PER_ELEMENT_ACCESS = 5


@dataclass(frozen=True)
class ParamInfo:
    """One parameter: ``ready_s`` is seconds after the start of backward when its gradient
    is accumulated."""

    name: str
    shape: tuple[int, ...]
    numel: int
    ready_s: float


@dataclass(frozen=True)
class LayerCost:
    """Work of one module (its own ops, children excluded) for one step at the profiled batch.

    Forward FLOPs are counted by :class:`torch.utils.flop_counter.FlopCounterMode`
    (matmuls, convolutions, attention); the exactly counted backward total is shared
    among modules in proportion to their forward FLOPs. Bytes follow a roofline traffic model: forward reads the
    inputs and own parameters and writes the outputs; backward reads output gradients,
    saved inputs and parameters and writes input and parameter gradients (twice the
    forward traffic). ``order`` is the module's first call in forward.
    """

    name: str
    order: int
    forward_flops: float
    backward_flops: float
    forward_bytes: float
    backward_bytes: float
    params: tuple[str, ...]


@dataclass
class Workload:
    """A profiled training step of one model at one batch size on one device.

    Times are seconds per iteration (medians over the timed iterations). ``params`` are in
    the order backward produces the gradients (``ready_s`` non-decreasing). ``estimate``
    is True when the times were rescaled to ``target_device`` by a roofline model and
    must be shown as an estimate.
    """

    model: str
    batch_size: int
    device: str
    dtype: str
    torch_version: str
    data_source: str
    forward_s: float
    backward_s: float
    optimizer_s: float
    peak_memory_bytes: int
    params: list[ParamInfo]
    gradients: dict[str, Tensor] | None
    grad_stats: list[dict[str, Any]]
    estimate: bool = False
    target_device: str | None = None
    device_name: str = ""
    peak_memory_method: str = ""
    layers: list[LayerCost] = field(default_factory=list)
    seed: int = 0
    warmup: int = 0
    iters: int = 0
    loss: float = math.nan
    times_source: str = "measured"
    precision: str = ""  # "" : PyTorch's default on the profiling device
    step_spread: float = 0.0  # (max - min) / median of the timed steps' compute time

    @property
    def num_params(self) -> int:
        """Number of gradient elements per step."""
        return sum(p.numel for p in self.params)

    @property
    def compute_s(self) -> float:
        """Forward + backward + optimizer seconds per iteration."""
        return self.forward_s + self.backward_s + self.optimizer_s

    @property
    def gradient_bytes(self) -> int:
        """Bytes of one full-precision (float32) gradient exchange per worker."""
        return 4 * self.num_params

    def describe(self) -> str:
        """A one-line summary; rescaled profiles are labelled as estimates."""
        where = self.target_device or self.device
        tag = " (estimate)" if self.estimate else ""
        return (
            f"{self.model} batch {self.batch_size} {self.dtype} on {where}{tag}: "
            f"forward {self.forward_s * 1e3:.2f} ms, backward {self.backward_s * 1e3:.2f} ms, "
            f"optimizer {self.optimizer_s * 1e3:.2f} ms, {self.num_params:,} params "
            f"in {len(self.params)} tensors"
        )

    def to_json(self) -> dict[str, Any]:
        """Everything but the gradient tensors, as JSON-serialisable data."""
        d = asdict(replace(self, gradients=None))
        d.pop("gradients")
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any], gradients: dict[str, Tensor] | None = None) -> Workload:
        d = dict(d)
        d["params"] = [
            ParamInfo(p["name"], tuple(p["shape"]), int(p["numel"]), float(p["ready_s"]))
            for p in d["params"]
        ]
        d["layers"] = [
            LayerCost(**{**layer, "params": tuple(layer["params"])}) for layer in d["layers"]
        ]
        return cls(gradients=gradients, **d)


# --------------------------------------------------------------------------- devices


def default_cache_dir() -> Path:
    """``$GRADWIRE_CACHE/profiles`` or ``~/.cache/gradwire/profiles``."""
    root = os.environ.get("GRADWIRE_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "gradwire"
    return base / "profiles"


def _resolve_device(device: str | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device {device!r} is not a torch device; use 'cpu' or 'cuda'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise WorkloadError(f"device {device!r} requested but CUDA is not available; use 'cpu'")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    elif dev.type != "cpu":
        raise ConfigError(f"device {device!r} is not supported; use 'cpu' or 'cuda'")
    return dev


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _available_memory_bytes(dev: torch.device) -> int:
    if dev.type == "cuda":
        free, _total = torch.cuda.mem_get_info(dev)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


# --------------------------------------------------------------------------- meta pass


def _batch_like(
    spec: ModelSpec, batch_size: int, dtype: torch.dtype, dev: torch.device
) -> tuple[Tensor, Tensor]:
    """Tensors shaped like ``spec.make_batch(batch_size)`` on ``dev`` (zeros; for meta)."""
    x1, y1 = spec.make_batch(1, generator=torch.Generator().manual_seed(0), device="cpu")
    x_dtype = dtype if x1.is_floating_point() else x1.dtype
    x = torch.zeros((batch_size, *x1.shape[1:]), dtype=x_dtype, device=dev)
    y = torch.zeros((batch_size, *y1.shape[1:]), dtype=y1.dtype, device=dev)
    return x, y


@dataclass(frozen=True)
class _MetaCosts:
    layers: list[LayerCost]
    saved_activation_bytes: int
    input_bytes: int
    param_bytes: int


def _meta_costs(spec: ModelSpec, batch_size: int, dtype: torch.dtype) -> _MetaCosts:
    """Per-layer FLOPs and bytes and the bytes saved for backward, without real compute."""
    from torch.utils.flop_counter import FlopCounterMode

    meta = torch.device("meta")
    model = build_spec(spec, device=meta).to(dtype)
    x, y = _batch_like(spec, batch_size, dtype, meta)
    scale = 1.0
    if spec.input_kind == "sequence" and x.shape[1] > META_FRAMES:
        # Recurrent layers run step by step on the meta device; work and saved bytes are
        # linear in the number of frames, so count a short prefix and scale up.
        scale = x.shape[1] / META_FRAMES
        x, y = x[:, :META_FRAMES].contiguous(), y[:, :META_FRAMES].contiguous()
    root = type(model).__name__
    modules = dict(model.named_modules())
    param_ids = {id(p) for p in model.parameters()}
    param_storages = {p.untyped_storage()._cdata for p in model.parameters()}
    order: dict[str, int] = {}
    io_bytes: dict[str, float] = {}

    def nbytes(obj: Any) -> int:
        if isinstance(obj, Tensor):
            return 0 if id(obj) in param_ids else obj.numel() * obj.element_size()
        if isinstance(obj, list | tuple):
            return sum(nbytes(o) for o in obj)
        if isinstance(obj, dict):
            return sum(nbytes(o) for o in obj.values())
        return 0

    def pre_hook(name: str) -> Callable[..., None]:
        def hook(_mod: nn.Module, _args: Any) -> None:
            order.setdefault(name, len(order))

        return hook

    def post_hook(name: str) -> Callable[..., None]:
        def hook(_mod: nn.Module, args: Any, out: Any) -> None:
            io_bytes[name] = io_bytes.get(name, 0.0) + nbytes(args) + nbytes(out)

        return hook

    handles = []
    for name, mod in modules.items():
        handles.append(mod.register_forward_pre_hook(pre_hook(name)))
        if not list(mod.children()):  # leaf modules: their inputs/outputs are real traffic
            handles.append(mod.register_forward_hook(post_hook(name)))

    def counts(mode: FlopCounterMode) -> dict[str, float]:
        return {k: float(sum(v.values())) for k, v in mode.get_flop_counts().items()}

    fwd_mode = FlopCounterMode(display=False)
    with fwd_mode:
        spec.loss(model(x), y)
    for h in handles:
        h.remove()

    saved: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        st = t.untyped_storage()
        if st._cdata not in param_storages:
            saved[st._cdata] = st.nbytes()
        return t

    all_mode = FlopCounterMode(display=False)
    with all_mode, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        spec.loss(model(x), y).backward()

    fwd_total, all_total = counts(fwd_mode), counts(all_mode)

    def exclusive(totals: dict[str, float]) -> dict[str, float]:
        # FlopCounterMode reports inclusive totals for the modules that ran (a container
        # that is only iterated, like a ModuleList, has no entry): subtract each counted
        # module from its nearest counted ancestor to get every module's own work.
        own = {name: totals.get(key(name), 0.0) for name in modules}
        for name in modules:
            if name == "" or key(name) not in totals:
                continue
            parent = name
            while parent:
                parent = parent.rpartition(".")[0]
                if key(parent) in totals:
                    own[parent] -= totals[key(name)]
                    break
        return {k: max(v, 0.0) for k, v in own.items()}

    def key(name: str) -> str:
        return root if name == "" else f"{root}.{name}"

    fwd_own = exclusive(fwd_total)
    # Backward work is attributed to modules unreliably by the module tracker (a module
    # that returns its input unchanged, like Identity, never sees its backward end), so
    # each module's backward FLOPs are taken as twice its forward FLOPs (gradient of the
    # input and of the weights), scaled so the total equals the exactly counted one.
    fwd_sum = sum(fwd_own.values())
    bwd_total = all_total.get("Global", 0.0) - fwd_total.get("Global", 0.0)
    bwd_factor = bwd_total / fwd_sum if fwd_sum > 0 else 0.0

    layers = []
    for name, mod in modules.items():
        own_params = [
            f"{name}.{pn}" if name else pn for pn, _ in mod.named_parameters(recurse=False)
        ]
        pbytes = sum(p.numel() * p.element_size() for p in mod.parameters(recurse=False))
        f_fwd = fwd_own[name] * scale
        f_bwd = f_fwd * bwd_factor
        traffic = io_bytes.get(name, 0.0) * scale + pbytes
        if f_fwd == 0.0 and traffic == 0.0:
            continue
        layers.append(
            LayerCost(
                name=name,
                order=order.get(name, len(order)),
                forward_flops=f_fwd,
                backward_flops=f_bwd,
                forward_bytes=traffic,
                backward_bytes=2.0 * traffic,
                params=tuple(own_params),
            )
        )
    layers.sort(key=lambda layer: layer.order)
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    input_bytes = int((x.numel() * x.element_size() + y.numel() * y.element_size()) * scale)
    return _MetaCosts(layers, int(sum(saved.values()) * scale), input_bytes, param_bytes)


# --------------------------------------------------------------------------- timing


class _Clock:
    """Timestamps: ``perf_counter`` on the CPU; CUDA events (read after a sync) on a GPU."""

    def __init__(self, dev: torch.device) -> None:
        self.cuda = dev.type == "cuda"

    def mark(self) -> Any:
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev
        return time.perf_counter()

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def seconds(self, a: Any, b: Any) -> float:
        if self.cuda:
            return float(a.elapsed_time(b)) / 1e3
        return float(b - a)


def _precision_context(precision: str | None, dev: torch.device) -> tuple[Any, Callable[[], None]]:
    """The autocast context of ``precision`` (``amp_fp16`` / ``amp_bf16``) and a function that
    restores the TF32 switches set for ``fp32`` / ``tf32`` (``None`` changes nothing)."""
    import contextlib

    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)

    def restore() -> None:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old

    if precision in ("fp32", "tf32"):
        flag = precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = flag
        torch.backends.cudnn.allow_tf32 = flag
    if precision in ("amp_fp16", "amp_bf16"):
        half = torch.float16 if precision == "amp_fp16" else torch.bfloat16
        return torch.autocast(device_type=dev.type, dtype=half), restore
    if precision not in (None, "fp32", "tf32"):
        raise ConfigError(
            f"precision {precision!r} is not one of fp32, tf32, amp_bf16, amp_fp16 (or None)")
    return contextlib.nullcontext(), restore


def _grad_stats(grads: dict[str, Tensor]) -> list[dict[str, Any]]:
    stats = []
    for name, g in grads.items():
        g64 = g.detach().double()
        stats.append(
            {
                "name": name,
                "numel": g.numel(),
                "norm": float(torch.linalg.vector_norm(g64)),
                "max_abs": float(g64.abs().max()) if g.numel() else 0.0,
                "zero_fraction": float((g == 0).double().mean()) if g.numel() else 0.0,
                "finite": bool(torch.isfinite(g).all()),
            }
        )
    return stats


def _is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError)
        and ("out of memory" in text or "can't allocate memory" in text)
    )


def _measure(
    spec: ModelSpec,
    batch_size: int,
    dev: torch.device,
    dtype: torch.dtype,
    *,
    warmup: int,
    iters: int,
    seed: int,
    progress: bool,
    time_budget_s: float | None,
    precision: str | None = None,
) -> dict[str, Any]:
    """Run ``warmup + iters`` training steps and time them (the one place that profiles).

    Timed steps stop early, after at least one, when another step would end past
    ``time_budget_s`` seconds from the first step's start.
    """
    clock = _Clock(dev)
    cuda_devices = [dev.index] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        # Dropout draws from the global generator: seed it inside the fork so the profiled
        # step is reproducible and the caller's random state is untouched.
        torch.manual_seed(seed)
        model = build_spec(spec, seed=seed).to(device=dev, dtype=dtype)
        model.train()
        x, y = spec.make_batch(
            batch_size, generator=torch.Generator().manual_seed(seed), device=dev
        )
        if x.is_floating_point():
            x = x.to(dtype)
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        opt = torch.optim.SGD([p for _, p in named], lr=1e-3, momentum=0.9)
        records: list[tuple[str, Any]] = []

        def hook_for(name: str) -> Callable[[Tensor], None]:
            def hook(_p: Tensor) -> None:
                records.append((name, clock.mark()))

            return hook

        handles = [p.register_post_accumulate_grad_hook(hook_for(n)) for n, p in named]
        autocast, restore = _precision_context(precision, dev)
        fwd, bwd, optim, loss_value = [], [], [], math.nan
        ready: dict[str, list[float]] = {n: [] for n, _ in named}
        order: list[str] = []
        grads: dict[str, Tensor] = {}
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        start = time.perf_counter()
        try:
            for it in range(warmup + iters):
                step_start = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                records.clear()
                clock.sync()
                t0 = clock.mark()
                with autocast:
                    out = model(x)
                loss = spec.loss(out, y)
                t1 = clock.mark()
                loss.backward()
                t2 = clock.mark()
                clock.sync()
                if it == 0:
                    loss_value = float(loss.detach())
                    # The gradients of the seeded first step: reproducible from (model, seed).
                    grads = {
                        n: p.grad.detach().float().cpu().clone()
                        for n, p in named
                        if p.grad is not None
                    }
                t3 = clock.mark()
                opt.step()
                t4 = clock.mark()
                clock.sync()
                if it >= warmup:
                    fwd.append(clock.seconds(t0, t1))
                    bwd.append(clock.seconds(t1, t2))
                    optim.append(clock.seconds(t3, t4))
                    if not order:
                        order = [n for n, _ in records]
                    for n, mark in records:
                        ready[n].append(clock.seconds(t1, mark))
                if progress:
                    phase = "warm-up" if it < warmup else "timed"
                    print(
                        f"  {spec.name} step {it + 1}/{warmup + iters} ({phase}): "
                        f"fwd {clock.seconds(t0, t1) * 1e3:.1f} ms, "
                        f"bwd {clock.seconds(t1, t2) * 1e3:.1f} ms",
                        file=sys.stderr,
                    )
                now = time.perf_counter()
                if (
                    time_budget_s is not None
                    and it >= warmup
                    and (now - start) + (now - step_start) > time_budget_s
                ):
                    break
        finally:
            restore()
            for h in handles:
                h.remove()
        peak = int(torch.cuda.max_memory_allocated(dev)) if dev.type == "cuda" else -1
    backward_s = statistics.median(bwd)
    shapes = {n: tuple(p.shape) for n, p in named}
    # Medians per parameter can cross by a few microseconds: keep them in backward order.
    times = np.maximum.accumulate(np.array([statistics.median(ready[n]) for n in order]))
    times = np.minimum(times, backward_s)
    params = [
        ParamInfo(n, shapes[n], math.prod(shapes[n]), float(t))
        for n, t in zip(order, times, strict=True)
    ]
    steps = [a + b + c for a, b, c in zip(fwd, bwd, optim, strict=True)]
    mid = statistics.median(steps)
    return {
        "step_spread": (max(steps) - min(steps)) / mid if mid > 0 else 0.0,
        "forward_s": statistics.median(fwd),
        "backward_s": backward_s,
        "optimizer_s": statistics.median(optim),
        "params": params,
        "gradients": grads,
        "peak_memory_bytes": peak,
        "loss": loss_value,
        "iters": len(fwd),
    }


# --------------------------------------------------------------------------- cache


def _cache_key(fields: dict[str, Any]) -> str:
    blob = json.dumps(fields, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _save(path: Path, workload: Workload) -> None:
    path.mkdir(parents=True, exist_ok=True)
    index: list[list[Any]] | None = None
    if workload.gradients is not None:
        # One flat float32 .npy file plus (name, offset, shape) rows in the JSON: loading
        # maps the file instead of reading it, so a cached call costs no time per gradient.
        index, offset = [], 0
        for n, g in workload.gradients.items():
            index.append([n, offset, list(g.shape)])
            offset += g.numel()
        flat = np.empty(offset, dtype=np.float32)
        for (_, off, _), g in zip(index, workload.gradients.values(), strict=True):
            flat[off : off + g.numel()] = g.detach().reshape(-1).numpy()
        tmp_npy = path / "gradients.tmp.npy"
        np.save(tmp_npy, flat)
        os.replace(tmp_npy, path / "gradients.npy")
    doc = workload.to_json()
    doc["gradient_index"] = index
    doc["cache_format"] = CACHE_FORMAT
    tmp = path / "profile.tmp.json"
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path / "profile.json")  # written last: its presence marks a complete entry


def _load(path: Path, want_gradients: bool) -> Workload | None:
    meta = path / "profile.json"
    if not meta.exists():
        return None
    try:
        doc = json.loads(meta.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(doc, dict) or doc.pop("cache_format", None) != CACHE_FORMAT:
        return None
    index = doc.pop("gradient_index", None)
    gradients = None
    if want_gradients:
        if index is None or not (path / "gradients.npy").exists():
            return None
        # Copy-on-write map: pages are read when a gradient is first touched, and the
        # tensors are writable without changing the file.
        try:
            flat = torch.from_numpy(np.load(path / "gradients.npy", mmap_mode="c"))
        except (OSError, ValueError):
            return None  # a damaged entry is profiled again and overwritten
        if flat.numel() != sum(math.prod(shape) for _, _, shape in index):
            return None
        gradients = {n: flat[off : off + math.prod(shape)].view(shape) for n, off, shape in index}
    return Workload.from_json(doc, gradients)


def _needed_bytes(costs: _MetaCosts, tdtype: torch.dtype, device_type: str) -> int:
    """Parameters, gradients, momentum, inputs, saved activations (and on the CPU the
    float32 copies of the first step's gradients)."""
    elem = torch.empty((), dtype=tdtype).element_size()
    n_params = costs.param_bytes // elem
    return int(
        costs.param_bytes * (2 + OPTIMIZER_STATE_COPIES)
        + (4 * n_params if device_type == "cpu" else 0)  # the float32 gradient copies
        + costs.input_bytes
        + costs.saved_activation_bytes
    )


def memory_needed_bytes(name: str | ModelSpec, batch_size: int, *, device: str | None = None,
                        dtype: str = "float32") -> int:
    """The memory one training step of the model needs on ``device`` (the bound a profile
    checks before it allocates anything), counted on the meta device: nothing runs."""
    spec = name if isinstance(name, ModelSpec) else get_model(name)
    dev = _resolve_device(device)
    return _needed_bytes(_meta_costs(spec, batch_size, DTYPES[dtype]), DTYPES[dtype], dev.type)


def _cache_entry(spec: ModelSpec, batch_size: int, dev: torch.device, *, dtype: str, warmup: int, iters: int,
                 seed: int, cache_dir: str | Path | None, keep_gradients: bool, time_budget_s: float | None,
                 precision: str | None) -> Path:
    """The cache folder of one profile: every setting that changes its numbers is in the key."""
    key_fields = {
        "model": spec.name,
        "batch_size": batch_size,
        "dtype": dtype,
        "device": dev.type,
        "device_name": _device_name(dev),
        "threads": torch.get_num_threads() if dev.type == "cpu" else 0,
        "torch": torch.__version__,
        "seed": seed,
        "warmup": warmup,
        "iters": iters,
        "time_budget_s": time_budget_s,
        "keep_gradients": keep_gradients,
        "format": CACHE_FORMAT,
        "precision": precision,
        "source": spec.source,  # a user model's source names its code's hash
    }
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    label = spec.name.replace(":", "-").replace("/", "-").replace(".", "-")
    return root / f"{label}-b{batch_size}-{dtype}-{dev.type}-{_cache_key(key_fields)}"


def profile_is_cached(
    name: str | ModelSpec,
    batch_size: int,
    *,
    device: str | None = None,
    dtype: str = "float32",
    warmup: int = 1,
    iters: int = 3,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    keep_gradients: bool = True,
    time_budget_s: float | None = 30.0,
    precision: str | None = None,
) -> bool:
    """Whether :func:`profile_model` with the same arguments would read its result from the
    cache (a complete, readable entry) instead of running the model. Runs nothing."""
    spec = name if isinstance(name, ModelSpec) else get_model(name)
    entry = _cache_entry(spec, batch_size, _resolve_device(device), dtype=dtype, warmup=warmup, iters=iters,
                         seed=seed, cache_dir=cache_dir, keep_gradients=keep_gradients,
                         time_budget_s=time_budget_s, precision=precision)
    return _load(entry, keep_gradients) is not None


# --------------------------------------------------------------------------- public


def profile_model(
    name: str | ModelSpec,
    batch_size: int,
    *,
    device: str | None = None,
    dtype: str = "float32",
    warmup: int = 1,
    iters: int = 3,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    cache: bool = True,
    keep_gradients: bool = True,
    progress: bool = False,
    time_budget_s: float | None = 30.0,
    precision: str | None = None,
) -> Workload:
    """Profile one training step of zoo model ``name`` at ``batch_size`` on ``device``.

    ``device`` defaults to CUDA when available, else the CPU; ``dtype`` is ``float32``,
    ``float16`` or ``bfloat16`` (parameters and inputs; the loss is computed in float32).
    Times are medians over ``iters`` steps after ``warmup`` steps; the gradients are those
    of the first step, computed from weights built with ``seed`` on a batch drawn with
    ``seed``. Large models on slow devices stop timing early: after at least one timed
    step, no step starts that would end past ``time_budget_s`` seconds (``None``: no
    limit); ``Workload.iters`` is the number of steps timed. ``cache_dir`` defaults to :func:`default_cache_dir`; ``cache=False`` neither
    reads nor writes it. A batch that cannot fit in the device's available memory (bytes
    saved for backward + parameters, gradients, momentum and inputs) or that runs out of
    memory raises :class:`WorkloadError`.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise WorkloadError(f"batch_size must be a positive integer, got {batch_size!r}")
    if dtype not in DTYPES:
        raise ConfigError(f"dtype {dtype!r} is not supported; use one of {', '.join(DTYPES)}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ConfigError(f"warmup must be an integer >= 0 iterations, got {warmup!r}")
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
        raise ConfigError(f"iters must be an integer >= 1 iterations, got {iters!r}")
    if time_budget_s is not None and not time_budget_s > 0:
        raise ConfigError(f"time_budget_s must be > 0 seconds or None, got {time_budget_s!r}")
    spec = name if isinstance(name, ModelSpec) else get_model(name)
    name = spec.name
    dev = _resolve_device(device)
    if spec.meta_only and dev.type == "cpu":
        raise WorkloadError(f"model {name!r} is built on the meta device only and is not run on the "
                            "host CPU; profile it on a GPU (--device cuda) or estimate its compute "
                            "with a target device")  # fmt: skip
    device_name = _device_name(dev)
    entry = None
    if cache:
        entry = _cache_entry(spec, batch_size, dev, dtype=dtype, warmup=warmup, iters=iters, seed=seed,
                             cache_dir=cache_dir, keep_gradients=keep_gradients,
                             time_budget_s=time_budget_s, precision=precision)
        hit = _load(entry, keep_gradients)
        if hit is not None:
            return hit

    tdtype = DTYPES[dtype]
    costs = _meta_costs(spec, batch_size, tdtype)
    needed = _needed_bytes(costs, tdtype, dev.type)
    available = _available_memory_bytes(dev)
    if needed > available:
        raise WorkloadError(
            f"model {name!r} at batch_size={batch_size} needs about {needed / 2**30:.1f} GiB "
            f"on {dev.type} ({device_name}) but {available / 2**30:.1f} GiB is available; "
            "use a smaller batch_size"
        )
    try:
        measured = _measure(
            spec,
            batch_size,
            dev,
            tdtype,
            warmup=warmup,
            iters=iters,
            seed=seed,
            progress=progress,
            time_budget_s=time_budget_s,
            precision=precision,
        )
    except Exception as exc:
        if _is_oom(exc):
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            raise WorkloadError(
                f"model {name!r} at batch_size={batch_size} ran out of memory on {dev.type} "
                f"({device_name}); use a smaller batch_size"
            ) from None
        raise
    gradients: dict[str, Tensor] = measured["gradients"]
    if measured["peak_memory_bytes"] >= 0:
        peak, method = measured["peak_memory_bytes"], "torch.cuda.max_memory_allocated"
    else:
        peak = needed
        method = "params + grads + momentum + inputs + tensors saved for backward (counted)"
    workload = Workload(
        model=name,
        batch_size=batch_size,
        device=dev.type,
        dtype=dtype,
        torch_version=torch.__version__,
        data_source=spec.data_source,
        forward_s=measured["forward_s"],
        backward_s=measured["backward_s"],
        optimizer_s=measured["optimizer_s"],
        peak_memory_bytes=int(peak),
        params=measured["params"],
        gradients=gradients if keep_gradients else None,
        grad_stats=_grad_stats(gradients),
        device_name=device_name,
        peak_memory_method=method,
        layers=costs.layers,
        seed=seed,
        warmup=warmup,
        iters=measured["iters"],
        loss=measured["loss"],
        precision=precision or "",
        step_spread=measured["step_spread"],
    )
    if entry is not None:
        _save(entry, workload)
    return workload
