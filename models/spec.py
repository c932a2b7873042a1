"""Model specifications and the model registry (``gradwire.models.MODELS``).

A :class:`ModelSpec` names one workload of the zoo: how to build the ``torch.nn.Module``,
how to draw a correctly shaped batch (real bundled data where there is some, synthetic
otherwise), which loss trains it, and the published parameter count it must match (with
the source of that count). Building is seeded without touching the global RNG: the
initialisation runs inside :func:`torch.random.fork_rng`, which restores the global state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from gradwire.errors import WorkloadError
from gradwire.registry import Registry

BatchFn = Callable[[int, torch.Generator, torch.device], tuple[Tensor, Tensor]]

INPUT_KINDS = ("image", "tokens", "sequence", "custom")
LOSSES = ("cross_entropy", "mse")


@dataclass(frozen=True)
class ModelSpec:
    """One model of the zoo.

    ``published_params`` is the parameter count given by ``source``; ``params_rel_tol``
    is the relative difference allowed between the built model and that count (0 where
    the architecture is canonical and the count is exact). ``data_source`` names where
    :meth:`make_batch` takes its inputs from.
    """

    name: str
    description: str
    published_params: int
    source: str
    input_kind: str
    data_source: str
    builder: Callable[[], nn.Module] = field(repr=False, compare=False)
    batch_fn: BatchFn = field(repr=False, compare=False)
    params_rel_tol: float = 0.0
    sequence_loss: bool = False  # output [B, T, C] against targets [B, T]
    loss_kind: str = "cross_entropy"  # or "mse"
    # built on the meta device only (no weights): never run on the host CPU; compute from
    # the estimate or a profile file, codec payloads from synthetic gradients
    meta_only: bool = False

    def __post_init__(self) -> None:
        if self.input_kind not in INPUT_KINDS:
            raise ValueError(f"model {self.name!r}: input_kind must be one of {INPUT_KINDS}")
        if self.loss_kind not in LOSSES:
            raise ValueError(f"model {self.name!r}: loss_kind must be one of {LOSSES}")

    def build(self) -> nn.Module:
        """A freshly initialised module (initialised from the global RNG; see ``build_model``)."""
        return self.builder()

    def make_batch(
        self,
        batch_size: int,
        *,
        generator: torch.Generator,
        device: torch.device | str = "cpu",
    ) -> tuple[Tensor, Tensor]:
        """``(inputs, targets)`` of ``batch_size`` samples drawn with ``generator`` (a CPU
        generator) and moved to ``device``."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise WorkloadError(
                f"model {self.name!r}: batch_size must be a positive integer, got {batch_size!r}"
            )
        return self.batch_fn(batch_size, generator, torch.device(device))

    def as_factory(self) -> Callable[[], tuple[nn.Module, Callable[[int], tuple[Tensor, Tensor]]]]:
        """This model on the user-model contract (``model.module``): ``factory()`` returns
        ``(module, make_batch)``, and ``make_batch(batch_size)`` draws from a generator
        seeded by PyTorch's global one (which GradWire seeds around the call)."""

        def make_batch(batch_size: int) -> tuple[Tensor, Tensor]:
            seed = int(torch.randint(0, 2**62, (1,)))
            return self.make_batch(batch_size, generator=torch.Generator().manual_seed(seed))

        def factory() -> tuple[nn.Module, Callable[[int], tuple[Tensor, Tensor]]]:
            return self.build(), make_batch

        return factory

    def batch_like(self, batch_size: int, device: torch.device | str) -> tuple[Tensor, Tensor]:
        """Zero tensors shaped and typed like ``make_batch(batch_size)``, on ``device`` (the
        meta device for the fast pass): one sample is drawn to learn the shapes."""
        x1, y1 = self.make_batch(1, generator=torch.Generator().manual_seed(0), device="cpu")
        x = torch.zeros((batch_size, *x1.shape[1:]), dtype=x1.dtype, device=device)
        y = torch.zeros((batch_size, *y1.shape[1:]), dtype=y1.dtype, device=device)
        return x, y

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        """Mean cross-entropy (per token / frame when the output has a sequence axis:
        ``[B, T, C]`` against ``[B, T]`` is flattened), or mean squared error."""
        if self.loss_kind == "mse":
            return nn.functional.mse_loss(output.float(), target.float())
        if self.sequence_loss or output.dim() > 2:
            return nn.functional.cross_entropy(
                output.reshape(-1, output.shape[-1]).float(), target.reshape(-1)
            )
        return nn.functional.cross_entropy(output.float(), target)


MODELS: Registry[ModelSpec] = Registry("model")


def get_model(name: str) -> ModelSpec:
    """The spec registered as ``name``; an unknown name raises ``UnknownNameError``."""
    return MODELS.create(name)


def build_model(name: str, *, seed: int = 0, device: torch.device | str | None = None) -> nn.Module:
    """Build model ``name`` with weights initialised from ``seed``.

    The global RNG is forked and restored, so the call is deterministic and leaves the
    caller's random state untouched. ``device="meta"`` builds without allocating memory
    (parameter counts of the largest models).
    """
    return build_spec(get_model(name), seed=seed, device=device)


def build_spec(
    spec: ModelSpec, *, seed: int = 0, device: torch.device | str | None = None
) -> nn.Module:
    """Build ``spec``'s module with weights from ``seed`` (global RNG forked and restored)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if device is None:
            return spec.build()
        with torch.device(device):
            return spec.build()


def count_params(module: nn.Module) -> int:
    """Number of trainable parameter elements (shared parameters counted once)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
