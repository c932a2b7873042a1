"""Ground truth: real torch.distributed runs over a shaped network, compared with predictions.

``cli_main(argv)`` is ``run_sim.py validate``; :mod:`.netns` builds the shaped namespaces,
:mod:`.worker` is one measuring rank, :mod:`.model` turns calibrations and measured costs
into simulator inputs, :mod:`.run` runs and compares, :mod:`.hookcheck` trains with every
codec's DDP hook on loopback.
"""

from __future__ import annotations


def cli_main(argv: list[str]) -> int:
    """``run_sim.py validate ...``: see :mod:`gradwire.validate.cli`."""
    from gradwire.validate.cli import cli_main as _main

    return _main(argv)


__all__ = ["cli_main"]
