"""Workloads: real models, real gradients and measured backward timing (``gradwire.models``).

The zoo (:data:`MODELS`) holds the seed papers' models and two modern transformers, each
matching its published parameter count. :func:`~gradwire.models.profile.profile_model`
measures one training step on the device at hand (per-gradient ready times, forward,
backward and optimizer times, the gradients themselves) and caches the result;
:mod:`gradwire.models.devices` rescales a profile to another GPU (an estimate).
"""

from gradwire.models import zoo  # noqa: F401  (registers the zoo's models)
from gradwire.models.profile import LayerCost, ParamInfo, Workload, profile_model
from gradwire.models.spec import MODELS, ModelSpec, build_model, count_params, get_model

__all__ = [
    "MODELS",
    "LayerCost",
    "ModelSpec",
    "ParamInfo",
    "Workload",
    "build_model",
    "count_params",
    "get_model",
    "profile_model",
]
