"""Max-min fair rates by progressive filling, compiled, with the numpy reference it equals.

:func:`max_min_rates` is the flow engines' inner loop: every rate computation of
:class:`~gradwire.simulator.network.Network` and of the reference
:class:`~gradwire.simulator.network_ungrouped.UngroupedNetwork` goes through it. The
reference (:func:`max_min_rates_reference`) is vectorized numpy, a dozen array operations
per level of the filling; large problems run instead as a numba kernel, two passes over
the live (flow, link) pairs per level, once a process has solved enough of them for the
kernel to earn its loading time (see :data:`COMPILED_MIN_PAIRS` and
:data:`COMPILED_AFTER_S`). The kernel does the reference's arithmetic operation for
operation, so the rates are the same floats (tests/test_network_grouped.py).
"""

from __future__ import annotations

import math
import time

import numba
import numpy as np


def max_min_rates_reference(flow_of: np.ndarray, link_of: np.ndarray, n_flows: int,
                  capacity: np.ndarray) -> np.ndarray:
    """Max-min fair rates by progressive filling (vectorized over flow-link pairs).

    ``flow_of[j], link_of[j]`` say flow ``flow_of[j]`` crosses link ``link_of[j]``;
    ``capacity`` is bytes/s per link id. A flow alone on all its links gets its route's
    bottleneck capacity at once; the flows that share a link are filled progressively:
    all unfrozen flows grow together, the links whose equal share is smallest saturate and
    freeze their flows at that share (one iteration per distinct rate level). A flow that
    crosses no link gets an infinite rate.

    The reference: :func:`max_min_rates` runs the same arithmetic compiled and must
    return the same floats (tests/test_network_grouped.py).
    """
    rate = np.full(n_flows, math.inf)
    if len(link_of) == 0:
        return rate
    # the links in use, numbered by a lookup table (no sort): per level O(pairs + used links)
    used_l = np.flatnonzero(np.bincount(link_of, minlength=len(capacity)))
    lut = np.empty(len(capacity), dtype=np.int64)
    lut[used_l] = np.arange(len(used_l))
    lidx = lut[link_of]
    n_l = len(used_l)
    cap = capacity[used_l].astype(float)
    cnt = np.bincount(lidx, minlength=n_l).astype(float)
    shared_pair = cnt[lidx] > 1
    shared = np.zeros(n_flows, dtype=bool)
    shared[flow_of[shared_pair]] = True
    alone = ~shared[flow_of]
    if alone.any():
        np.minimum.at(rate, flow_of[alone], cap[lidx[alone]])
    if not shared_pair.any():
        return rate
    live = ~alone
    rem = cap
    # the (flow, link) pairs of unfrozen flows, dropped as their flows freeze
    fo = flow_of[live]
    li = lidx[live]
    cnt = np.bincount(li, minlength=n_l).astype(float)
    level = 0.0
    while len(fo):
        used = cnt > 0
        share = np.full(n_l, math.inf)
        share[used] = rem[used] / cnt[used]
        s = float(share.min())
        if not math.isfinite(s):
            break
        # never below the previous level: float residue of rem must not slow flows down
        s = max(s, level)
        level = s
        bott = used & (share <= s * (1 + 1e-12))
        hit = np.zeros(n_flows, dtype=bool)
        hit[fo[bott[li]]] = True
        rate[hit] = s
        newly = hit[fo]
        dec = np.bincount(li[newly], minlength=n_l)
        rem -= dec * s
        np.maximum(rem, 0.0, out=rem)
        cnt -= dec
        keep = ~newly
        fo = fo[keep]
        li = li[keep]
    return rate



# Problems of at least this many (flow, link) pairs may run compiled; smaller ones stay in
# numpy, whose per-level overhead is then small.
COMPILED_MIN_PAIRS = 16384
# Loading the compiled kernel costs a process about half a second once, more than numpy
# takes for dozens of large problems. So the kernel is loaded only once the large problems
# solved in numpy have cost this many seconds (renting until the rent reaches the price,
# which is at most twice the best choice made in hindsight). Both paths give the same
# floats, so the switch changes no result, only when it happens.
COMPILED_AFTER_S = 0.5
_numpy_s = 0.0  # seconds spent in numpy on problems of COMPILED_MIN_PAIRS pairs or more
_compiled = False  # whether this process runs the kernel (it stays loaded)


def max_min_rates(flow_of: np.ndarray, link_of: np.ndarray, n_flows: int,
                  capacity: np.ndarray) -> np.ndarray:
    """Max-min fair rates (bytes/s per flow) of flows crossing links of ``capacity``:
    the same as :func:`max_min_rates_reference` (see there), compiled for problems of
    :data:`COMPILED_MIN_PAIRS` pairs or more once such problems have taken
    :data:`COMPILED_AFTER_S` seconds in numpy."""
    global _numpy_s, _compiled
    if len(link_of) < COMPILED_MIN_PAIRS:
        return max_min_rates_reference(flow_of, link_of, n_flows, capacity)
    if not _compiled:
        if _numpy_s < COMPILED_AFTER_S:
            t0 = time.process_time()
            rate = max_min_rates_reference(flow_of, link_of, n_flows, capacity)
            _numpy_s += time.process_time() - t0
            return rate
        _compiled = True
    rate = np.full(n_flows, math.inf)
    _rates(np.ascontiguousarray(flow_of, dtype=np.int64), np.ascontiguousarray(link_of, dtype=np.int64),
           np.ascontiguousarray(capacity, dtype=np.float64), rate)
    return rate


@numba.njit(cache=True)
def _rates(flow_of: np.ndarray, link_of: np.ndarray, capacity: np.ndarray,
           rate: np.ndarray) -> None:  # pragma: no cover - compiled
    """:func:`max_min_rates_reference`'s steps as loops: count the flows per link, give
    flows alone on all their links their bottleneck, then fill the shared ones level by
    level over the live pairs, writing ``rate``."""
    n_pairs = len(flow_of)
    n_flows = len(rate)
    cnt_all = np.zeros(len(capacity), dtype=np.int64)
    for j in range(n_pairs):
        cnt_all[link_of[j]] += 1
    shared = np.zeros(n_flows, dtype=np.bool_)
    any_shared = False
    for j in range(n_pairs):
        if cnt_all[link_of[j]] > 1:
            shared[flow_of[j]] = True
            any_shared = True
    for j in range(n_pairs):
        f = flow_of[j]
        if not shared[f]:
            c = float(capacity[link_of[j]])
            if c < rate[f]:
                rate[f] = c
    if not any_shared:
        return
    # per link: capacity left and unfrozen flows (links keep their ids; unused stay at 0)
    rem = capacity.astype(np.float64)
    cnt = np.zeros(len(capacity))
    fo = np.empty(n_pairs, dtype=np.int64)
    li = np.empty(n_pairs, dtype=np.int64)
    left = 0
    for j in range(n_pairs):
        if shared[flow_of[j]]:
            fo[left] = flow_of[j]
            li[left] = link_of[j]
            cnt[link_of[j]] += 1.0
            left += 1
    used = np.flatnonzero(cnt)
    frozen = np.zeros(n_flows, dtype=np.bool_)
    share = np.full(len(capacity), math.inf)
    dec = np.zeros(len(capacity), dtype=np.int64)
    level = 0.0
    while left > 0:
        s = math.inf
        for lk in used:
            if cnt[lk] > 0:
                share[lk] = rem[lk] / cnt[lk]
                if share[lk] < s:
                    s = share[lk]
            else:
                share[lk] = math.inf
        if not math.isfinite(s):
            break
        # never below the previous level: float residue of rem must not slow flows down
        s = max(s, level)
        level = s
        thr = s * (1 + 1e-12)
        for j in range(left):
            if share[li[j]] <= thr:
                f = fo[j]
                if not frozen[f]:
                    frozen[f] = True
                    rate[f] = s
        # drop the pairs of the flows frozen now, keeping the others in place
        k = 0
        for j in range(left):
            if frozen[fo[j]]:
                dec[li[j]] += 1
            else:
                fo[k] = fo[j]
                li[k] = li[j]
                k += 1
        left = k
        for lk in used:
            if dec[lk]:
                rem[lk] = max(rem[lk] - dec[lk] * s, 0.0)
                cnt[lk] -= dec[lk]
                dec[lk] = 0
