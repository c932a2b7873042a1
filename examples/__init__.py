"""Runnable examples of GradWire's extension points (see docs/models.md)."""
