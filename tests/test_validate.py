"""Shaped-network validation: calibration algebra, gloo ring models against closed forms,
the CLI's root check, namespace teardown, and a reduced real run when root is available."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time

import pytest

from gradwire.errors import ConfigError
from gradwire.simulator.collectives import run_collective
from gradwire.simulator.collectives.gloo_ring import gloo_segments
from gradwire.simulator.topology import make_topology
from gradwire.validate import cli as vcli
from gradwire.validate.model import (
    ACK_EVERY,
    ACK_FRAME_BYTES,
    MTU_FRAME_BYTES,
    Calibration,
    calibration_from,
)
from gradwire.validate.netns import PREFIX, ShapedNetwork, cleanup_stale, list_ours, netns_available
from gradwire.validate.run import parse_rate, rate_label

NETNS_OK, NETNS_WHY = netns_available()
needs_netns = pytest.mark.skipif(not NETNS_OK, reason=f"shaped-network tests skipped: {NETNS_WHY}")


# ---------------------------------------------------------------- calibration algebra
def test_calibration_recovers_efficiency_and_latency():
    rate, alpha, eff, nbytes = 1e8, 50e-6, 0.95, 6_250_000
    bulk_s = 2 * alpha + nbytes / (eff * rate / 8)  # send + the small acknowledgement back
    cal = calibration_from({"one_way_s": [alpha] * 5, "bulk_bytes": nbytes, "bulk_s": [bulk_s]}, rate)
    assert cal.efficiency == pytest.approx(eff, rel=1e-12)
    assert cal.goodput_Bps == pytest.approx(eff * rate / 8, rel=1e-12)
    # Reverse-direction ACKs: one 66-byte frame per two 1514-byte frames on the same egress.
    ring = cal.efficiency_for(bidirectional=True)
    assert ring == pytest.approx(eff * MTU_FRAME_BYTES / (MTU_FRAME_BYTES + ACK_FRAME_BYTES / ACK_EVERY))


def test_measured_ack_rate_replaces_the_delayed_ack_default():
    rate, alpha, nbytes = 1e8, 50e-6, 6_250_000
    bulk_s = 2 * alpha + nbytes / (0.95 * rate / 8)
    sender = {"one_way_s": [alpha], "bulk_bytes": nbytes, "bulk_s": [bulk_s], "out_segments": 4000}
    every = calibration_from(sender, rate, {"out_segments": 4000})  # an ACK per segment
    assert every.acks_per_segment == 1.0
    assert every.efficiency_for(True) == pytest.approx(
        every.efficiency * MTU_FRAME_BYTES / (MTU_FRAME_BYTES + ACK_FRAME_BYTES))
    assert calibration_from(sender, rate, {"out_segments": 2000}).acks_per_segment == 0.5
    assert calibration_from(sender, rate).acks_per_segment == 1 / ACK_EVERY


def test_concurrent_ring_bulk_sets_the_ring_efficiency():
    """With a measured ring of bulk transfers, the ring efficiency is its goodput over the
    rate (latencies taken out), whatever the frame-size estimate says."""
    rate, alpha, nbytes = 1e8, 50e-6, 6_250_000
    one = 2 * alpha + nbytes / (0.95 * rate / 8)
    ring = 2 * alpha + nbytes / (0.88 * rate / 8)
    cal = calibration_from({"one_way_s": [alpha], "bulk_bytes": nbytes, "bulk_s": [one],
                            "ring_bulk_s": [ring, ring * 1.1, ring * 0.99]}, rate)
    assert cal.efficiency == pytest.approx(0.95, rel=1e-12)
    # the fastest repetition (other load only adds time)
    assert cal.efficiency_for(True) == pytest.approx(nbytes / (ring * 0.99 - 2 * alpha) / (rate / 8), rel=1e-12)
    assert cal.efficiency_for(False) == pytest.approx(0.95, rel=1e-12)


def test_calibration_rejects_impossible_bulk():
    cal = Calibration(1e8, one_way_s=0.01, bulk_bytes=10, bulk_s=0.015)
    with pytest.raises(ConfigError, match="bulk"):
        _ = cal.efficiency


@pytest.mark.parametrize(("text", "bps"), [("100Mbit", 1e8), ("1Gbit", 1e9), ("2.5gbit/s", 2.5e9),
                                           ("500kbit", 5e5), ("1e8", 1e8)])
def test_parse_rate(text, bps):
    assert parse_rate(text) == pytest.approx(bps)


def test_parse_rate_error_and_labels():
    with pytest.raises(ConfigError, match="100Mbit"):
        parse_rate("fast")
    assert rate_label(1e8) == "100Mbit" and rate_label(1e9) == "1Gbit"


# ---------------------------------------------------------------- gloo ring models
def test_gloo_segment_count_matches_gloo_rule():
    # gloo/allreduce.cc: roundUp(max(ceil(M / 1 MiB), 2p), p)
    assert gloo_segments(1_000_000, 4) == 8
    assert gloo_segments(50_000_000, 4) == 48  # ceil(47.7) = 48, already a multiple of 4
    assert gloo_segments(13_025_320, 2) == 14
    assert gloo_segments(10, 3) == 6


@pytest.mark.parametrize("p", [2, 3, 4, 7])
@pytest.mark.parametrize("size", [1e6, 13e6, 50e6])
def test_gloo_allreduce_without_overhead_is_the_bandwidth_term(p, size):
    # Two segments in flight keep every link busy: exactly 2(p-1)/p · M/B.
    bw = 12.5e6
    topo = make_topology("star", num_gpus=p, bandwidth_Bps=bw, latency_s=0.0)
    t = run_collective(topo, "gloo_ring_allreduce", size, record=False).time_s
    assert t == pytest.approx(2 * (p - 1) / p * size / bw, rel=1e-9)


@pytest.mark.parametrize("p", [2, 4, 5])
def test_gloo_allgather_without_overhead_and_with_overhead(p):
    bw, m, alpha = 1.25e8, 2e6, 1e-4
    topo = make_topology("star", num_gpus=p, bandwidth_Bps=bw, latency_s=0.0)
    t0 = run_collective(topo, "gloo_ring_allgather", m, record=False).time_s
    assert t0 == pytest.approx((p - 1) * m / bw, rel=1e-9)
    t1 = run_collective(topo, "gloo_ring_allgather", m, per_message_overhead_s=alpha,
                        record=False).time_s
    # The overhead of one half hides behind the other half in flight; only the pipeline's
    # tail pays it in full, and never more than once per half.
    assert t0 + alpha <= t1 + 1e-12
    assert t1 <= t0 + 2 * (p - 1) * alpha + 1e-12


def test_gloo_allreduce_with_overhead_is_bounded():
    p, bw, size, alpha = 4, 1.25e8, 5e6, 2e-4
    topo = make_topology("star", num_gpus=p, bandwidth_Bps=bw, latency_s=0.0)
    base = 2 * (p - 1) / p * size / bw
    t = run_collective(topo, "gloo_ring_allreduce", size, per_message_overhead_s=alpha,
                       record=False).time_s
    iters = 2 * (gloo_segments(size, p) - gloo_segments(size, p) // p)
    assert base + alpha <= t <= base + iters * alpha + 1e-12


# ---------------------------------------------------------------- CLI and argument checks
def test_cli_without_root_says_so_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(vcli, "netns_available", lambda: (False, "needs root (CAP_NET_ADMIN)"))
    assert vcli.cli_main(["--quick"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "root" in err


def test_shaped_network_checks_arguments():
    with pytest.raises(ConfigError, match="hosts"):
        ShapedNetwork(1, 1e8)
    with pytest.raises(ConfigError, match="rate_bps"):
        ShapedNetwork(2, 10.0)


# ---------------------------------------------------------------- real namespaces (root)
@needs_netns
@pytest.mark.netns
def test_network_is_built_and_torn_down():
    with ShapedNetwork(2, 1e8) as net:
        mine = [n for n in list_ours() if n.startswith(net.prefix)]
        assert sorted(mine) == sorted([net.switch, *(h.netns for h in net.hosts)])
        out = subprocess.run(net.exec_argv(0, ["tc", "qdisc", "show", "dev", net.hosts[0].ifname]),
                             capture_output=True, text=True, timeout=20).stdout
        assert "tbf" in out and "100Mbit" in out
        prefix = net.prefix
    assert not [n for n in list_ours() if n.startswith(prefix)]


@needs_netns
@pytest.mark.netns
def test_sigterm_tears_down_and_stale_leftovers_are_removed():
    code = (
        "import time\n"
        "from gradwire.validate.netns import ShapedNetwork\n"
        "with ShapedNetwork(2, 1e8) as net:\n"
        "    print(net.prefix, flush=True)\n"
        "    time.sleep(30)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        prefix = proc.stdout.readline().strip()
        assert prefix.startswith(PREFIX)
        assert any(n.startswith(prefix) for n in list_ours())
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not [n for n in list_ours() if n.startswith(prefix)]
    # A leftover of a process that no longer exists (pid 2**22 + 1 is above pid_max's
    # default ceiling) is removed by the next run's clean-up.
    stale = f"{PREFIX}{2**22 + 1}h0"
    subprocess.run(["ip", "netns", "add", stale], check=True, timeout=20)
    try:
        assert stale in cleanup_stale()
    finally:
        subprocess.run(["ip", "netns", "del", stale], capture_output=True, timeout=20)
    assert stale not in list_ours()


@needs_netns
@pytest.mark.netns
@pytest.mark.slow
def test_reduced_validation_k2_fp32_vs_qsgd(tmp_path):
    from gradwire.validate.run import run_validation, write_outputs

    t0 = time.monotonic()
    res = run_validation(workers=[2], rates_bps=[1e8], codecs=["fp32", "qsgd(bits=4)"],
                         iterations=2, warmup=1, collectives=False, log=lambda _m: None)
    assert time.monotonic() - t0 < 120
    cases = {c.codec: c for c in res.of_kind("iteration")}
    assert set(cases) == {"fp32", "qsgd(bits=4)"}
    for c in cases.values():
        assert c.measured_s > 0 and c.predicted_s > 0 and math.isfinite(c.error)
    # At 100 Mbit/s the 13 MB fp32 gradient dominates: 4-bit QSGD is faster, measured and
    # predicted alike, and the prediction is in the right range.
    assert cases["qsgd(bits=4)"].measured_s < cases["fp32"].measured_s
    assert cases["qsgd(bits=4)"].predicted_s < cases["fp32"].predicted_s
    assert abs(cases["fp32"].error) < 0.25
    cal = res.calibrations[0]
    assert 0.85 < cal["efficiency"] <= 1.0
    paths = write_outputs(res, tmp_path)
    assert (tmp_path / "validation_training.csv") in paths
    assert not [n for n in list_ours() if n.startswith(f"{PREFIX}{os.getpid()}")]
