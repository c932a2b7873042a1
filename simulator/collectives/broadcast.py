"""Binomial-tree broadcast (Thakur et al. 2005): ``ceil(log2 p)·(alpha + M/B)``.

In round k every rank that already holds the data (relative rank < 2^k) sends all of it
to the rank 2^k further on; ranks are counted relative to the root.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gradwire.errors import ConfigError
from gradwire.simulator import analytic
from gradwire.simulator.collectives.base import CollectiveProcess, check_args, collective
from gradwire.simulator.network import Network


@collective("broadcast", carries="none", closed_form=analytic.cf_broadcast)
def broadcast(net: Network, ranks: Sequence[int], sizes: Sequence[float], *, root: int = 0,
              tag: str = "broadcast") -> CollectiveProcess:
    """Broadcast ``sizes[root]`` bytes from ``ranks[root]`` (``root`` indexes ``ranks``)."""
    r, s = check_args(net, ranks, sizes, "broadcast")
    p = len(r)
    if isinstance(root, bool) or not isinstance(root, (int, np.integer)) or not 0 <= root < p:
        raise ConfigError(f"broadcast root must be an index into ranks (0..{p - 1}), got {root!r}")
    order = np.roll(r, -int(root))
    m = float(s[root])
    have = 1
    k = 0
    while have < p:
        n = min(have, p - have)
        yield net.transfers(order[:n], order[have:have + n], m, f"{tag}:{k}")
        have += n
        k += 1
