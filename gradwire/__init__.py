"""GradWire: predicts whether gradient compression makes data-parallel training faster.

The installed package maps the repository's top-level folders to one import name:
``gradwire.codecs`` (``codecs/``), ``gradwire.simulator`` (``simulator/``),
``gradwire.models`` (``models/``) and ``gradwire.scenarios`` (``scenarios/``); this
folder holds what joins them (errors, registries, results, reports, the CLI).
"""

from gradwire.errors import (
    CodecError,
    ConfigError,
    GradWireError,
    NonFiniteGradientError,
    ScenarioError,
    TopologyError,
    UnknownNameError,
    WorkloadError,
)

__version__ = "0.1.0"

__all__ = [
    "CodecError",
    "ConfigError",
    "GradWireError",
    "NonFiniteGradientError",
    "ScenarioError",
    "TopologyError",
    "UnknownNameError",
    "WorkloadError",
    "__version__",
]
