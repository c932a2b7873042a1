"""Discrete-event simulator of the cluster network and the training iteration (``gradwire.simulator``)."""
