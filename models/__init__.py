"""Workloads: real models, real gradients and measured backward timing (``gradwire.models``)."""
