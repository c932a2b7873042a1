"""The user's own model, named by import path (``model.module: "package.module:factory"``).

The contract is the zoo's: ``factory()`` returns ``(module, make_batch)``, where ``module``
is a ``torch.nn.Module`` and ``make_batch(batch_size)`` returns ``(inputs, targets)``
tensors for one training step. The loss is cross-entropy (an output with a sequence axis,
``[B, T, C]`` against ``[B, T]``, is flattened) or mean squared error. The factory is
called inside a seeded fork of PyTorch's global generator, and so is ``make_batch`` (its
seed drawn from the caller's generator), so a user model is as reproducible as a zoo
model without taking a generator argument. Every way the contract can be broken (a
malformed path, an import error, a factory that returns no module, a batch function
that fails or returns something other than two tensors) is one :class:`ConfigError`
naming ``model.module``.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from gradwire.errors import ConfigError
from gradwire.models.spec import ModelSpec

FIELD = "model.module"


def _fail(path: str, why: str) -> ConfigError:
    return ConfigError(f"{FIELD}: {path!r} {why}")


def check_module_path(path: str) -> str | None:
    """Why ``path`` is not of the form ``package.module:factory`` (``None`` when it is)."""
    mod, sep, attr = str(path).partition(":")
    if not sep or not mod or not attr or not all(p.isidentifier() for p in mod.split(".")) \
            or not all(p.isidentifier() for p in attr.split(".")):  # fmt: skip
        return "must be 'package.module:factory' (an importable module, a colon, a function name)"
    return None


def _factory(path: str) -> Callable[[], Any]:
    why = check_module_path(path)
    if why:
        raise _fail(path, why)
    mod_name, _, attr = path.partition(":")
    try:
        mod = importlib.import_module(mod_name)
    except Exception as exc:  # any import-time error of user code
        raise _fail(path, f"cannot be imported: {type(exc).__name__}: {exc}") from None
    obj: Any = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise _fail(path, f"has no attribute {part!r} in module {mod_name!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise _fail(path, f"names {type(obj).__name__}, not a function returning (module, make_batch)")
    return obj  # type: ignore[no-any-return]


def _call_factory(path: str, factory: Callable[[], Any]) -> tuple[nn.Module, Callable[[int], Any]]:
    try:
        out = factory()
    except Exception as exc:
        raise _fail(path, f"factory raised {type(exc).__name__}: {exc}") from None
    if not (isinstance(out, tuple) and len(out) == 2):
        raise _fail(path, f"factory must return (module, make_batch), got {type(out).__name__}")
    module, make_batch = out
    if not isinstance(module, nn.Module):
        raise _fail(path, f"factory returned no torch.nn.Module (got {type(module).__name__})")
    if not callable(make_batch):
        raise _fail(path, f"factory's make_batch is not callable (got {type(make_batch).__name__})")
    return module, make_batch


def _fingerprint(factory: Callable[[], Any]) -> str:
    """A hash of the factory's source file, so cached profiles follow code changes."""
    try:
        src = inspect.getsourcefile(factory)
        data = open(src, "rb").read() if src else b""
    except (OSError, TypeError):
        data = b""
    return hashlib.sha256(data).hexdigest()[:12]


def user_model(path: str, loss: str | None = None) -> ModelSpec:
    """The :class:`ModelSpec` of the user's ``factory`` at ``path`` (checked by building it
    once and drawing a one-sample batch)."""
    factory = _factory(path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        _module, make_batch0 = _call_factory(path, factory)

    def batch_fn(batch_size: int, generator: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor]:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            try:
                out = make_batch0(batch_size)
            except Exception as exc:
                raise _fail(path, f"make_batch({batch_size}) raised {type(exc).__name__}: {exc}") from None
        if not (isinstance(out, tuple | list) and len(out) == 2
                and all(isinstance(t, Tensor) for t in out)):  # fmt: skip
            raise _fail(path, f"make_batch({batch_size}) must return (inputs, targets) tensors, "
                              f"got {type(out).__name__}")  # fmt: skip
        x, y = out
        if x.shape[0] != batch_size or y.shape[0] != batch_size:
            raise _fail(path, f"make_batch({batch_size}) returned {x.shape[0]} inputs and "
                              f"{y.shape[0]} targets; both must have batch_size rows")  # fmt: skip
        return x.to(device), y.to(device)

    def builder() -> nn.Module:
        module, _ = _call_factory(path, factory)
        return module

    spec = ModelSpec(
        name=path,
        description=f"user model {path}",
        published_params=0,
        source=f"user model {path} (source sha256 {_fingerprint(factory)})",
        input_kind="custom",
        data_source=f"make_batch of {path}",
        builder=builder,
        batch_fn=batch_fn,
        loss_kind=loss or "cross_entropy",
    )
    spec.make_batch(1, generator=torch.Generator().manual_seed(0))  # fails here, clearly
    return spec


def model_spec(name: str, module: str | None = None, loss: str | None = None) -> ModelSpec:
    """The scenario's model: the user's ``module`` when given, else zoo model ``name``."""
    from gradwire.models.spec import get_model

    if module is not None:
        return user_model(module, loss)
    return get_model(name)
