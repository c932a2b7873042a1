"""Parameter server: workers push their gradient to the servers, then pull the update.

With ``num_servers`` = S the buffer is sharded: each worker pushes ``sizes[i]/S`` to each
server; when a server has every push it returns its shard of the update (``pull_bytes``
per server, default ``max(sizes)/S``) to every worker. Servers are ``servers`` (ranks
outside ``ranks``, dedicated machines) or, by default, the first S of ``ranks``
(colocated: a rank does not send to itself). A single dedicated server is the incast
``alpha + p·M/B`` per direction; sharded over all p ranks it is
``alpha + (p-1)/p · M/B`` per direction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import simpy

from gradwire.errors import ConfigError
from gradwire.simulator import analytic
from gradwire.simulator.collectives.base import CollectiveProcess, check_args, collective
from gradwire.simulator.network import Network


@collective("parameter_server", carries="sum", closed_form=analytic.cf_parameter_server)
def parameter_server(net: Network, ranks: Sequence[int], sizes: Sequence[float], *,
                     num_servers: int = 1, pull: bool = True, servers: Sequence[int] | None = None,
                     pull_bytes: float | None = None, tag: str = "ps") -> CollectiveProcess:
    """Push (and, if ``pull``, pull) through S parameter servers."""
    r, s = check_args(net, ranks, sizes, "parameter_server")
    if servers is None:
        if isinstance(num_servers, bool) or not isinstance(num_servers, int) or not 1 <= num_servers <= len(r):
            raise ConfigError(f"parameter_server num_servers must be in 1..{len(r)}, got {num_servers!r}")
        srv = r[:num_servers]
    else:
        srv = np.asarray(servers, dtype=np.int64).ravel()
        if len(srv) == 0 or srv.min() < 0 or srv.max() >= net.topology.num_ranks:
            raise ConfigError(f"parameter_server servers must be ranks of the topology, got {list(servers)}")
    n_srv = len(srv)
    w_idx = np.repeat(np.arange(len(r)), n_srv)
    s_idx = np.tile(np.arange(n_srv), len(r))
    keep = r[w_idx] != srv[s_idx]
    w_idx, s_idx = w_idx[keep], s_idx[keep]
    push = s[w_idx] / n_srv
    env = net.env
    if pull_bytes is None:
        back = float(s.max()) / n_srv
    elif isinstance(pull_bytes, (int, float)) and pull_bytes >= 0:
        back = float(pull_bytes)
    else:
        raise ConfigError(f"parameter_server pull_bytes must be a byte count >= 0, got {pull_bytes!r}")

    def shard(j: int) -> CollectiveProcess:
        mine = s_idx == j
        yield net.transfers(r[w_idx[mine]], srv[s_idx[mine]], push[mine], f"{tag}:push{j}")
        if pull:
            yield net.transfers(srv[s_idx[mine]], r[w_idx[mine]], back, f"{tag}:pull{j}")

    if n_srv == 1:
        yield from shard(0)
    else:
        yield simpy.AllOf(env, [env.process(shard(j)) for j in range(n_srv)])
