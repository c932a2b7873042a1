"""Compressed ring allreduce: reduce-scatter and allgather of compressed chunks.

Quantized payloads cannot be summed as they are, so every rank splits its buffer into p
chunks, encodes the one it starts with and sends it; at every reduce-scatter hop the
receiver decodes the incoming chunk (``hop_decode_s``), adds its own and re-encodes the
partial sum (``hop_encode_s``) before forwarding it -- the last hop's re-encode is the
finished chunk the allgather forwards, so the allgather hops do no codec work. The
per-hop codec work is asked for through ``work(kind, seconds)`` (the iteration timeline
books it as codec time on the rank's codec stream; alone it is plain local time). With
``sizes[i]`` the compressed size of rank i's whole buffer, chunks are ``sizes[i]/p``; on
dedicated links the time is
``(p-1)·(alpha + m/(p·B) + hop_decode_s + hop_encode_s) + (p-1)·(alpha + m/(p·B))``,
m = max(sizes). Each element is encoded once per hop it is re-encoded at: with the first
chunk's encode that is p encodes of 1/p of the buffer per rank (one whole encode), and
p-1 decodes of 1/p during the reduce-scatter plus p-1 after the allgather.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gradwire.simulator import analytic
from gradwire.simulator.collectives.base import (
    CollectiveProcess,
    WorkFn,
    check_args,
    check_seconds,
    collective,
    ring_steps,
)
from gradwire.simulator.network import Network


@collective("compressed_allreduce", carries="payload", delivers="chunks", requantizes=True, closed_form=analytic.cf_compressed_allreduce)
def compressed_allreduce(net: Network, ranks: Sequence[int], sizes: Sequence[float], *,
                         hop_decode_s: float = 0.0, hop_encode_s: float = 0.0,
                         work: WorkFn | None = None,
                         tag: str = "compressed_allreduce") -> CollectiveProcess:
    """Ring reduce-scatter + allgather of compressed chunks with codec work per hop."""
    r, s = check_args(net, ranks, sizes, "compressed_allreduce")
    dec = check_seconds(hop_decode_s, "compressed_allreduce hop_decode_s")
    enc = check_seconds(hop_encode_s, "compressed_allreduce hop_encode_s")
    p = len(r)
    if p == 1:
        return
    chunk = s / p
    nxt = np.roll(r, -1)
    yield from ring_steps(net, r, nxt, lambda _k: chunk, p - 1, f"{tag}:rs",
                          (("decode", dec), ("encode", enc)), work)
    yield from ring_steps(net, r, nxt, lambda _k: chunk, p - 1, f"{tag}:ag")
