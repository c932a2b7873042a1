"""Collectives as schedules of transfers, one small file each, registered by name."""
