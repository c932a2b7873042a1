"""Sweeps over scenario points on a distributed engine (Dask), with a durable results store."""
