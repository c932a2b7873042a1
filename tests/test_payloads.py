"""Payloads carry what validates them; decoders refuse anything an encoder could not make."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from gradwire.codecs import make_codec
from gradwire.codecs.base import FORMAT_VERSION, MAX_BITS_PER_ELEMENT, check_received_nbits
from gradwire.errors import CodecError, ConfigError, PayloadError

HERE = Path(__file__).resolve().parent


def test_payload_fuzzer_covers_every_registered_codec() -> None:
    sys.path.insert(0, str(HERE))
    from fuzz_payloads import SPECS

    from gradwire.codecs import CODECS
    from gradwire.registry import parse_spec

    assert {parse_spec(s)[0] for s in SPECS} == set(CODECS.names())


def test_payload_fuzzer_in_a_subprocess() -> None:
    """Corrupted, truncated and extended payloads of every codec: decoded cleanly or refused
    with PayloadError; a crash of the child (a segfault) fails here through its exit code."""
    proc = subprocess.run([sys.executable, str(HERE / "fuzz_payloads.py"), "--cases", "1200", "--seed", "7"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 1), f"fuzzer process died: rc={proc.returncode}\n{proc.stderr[-2000:]}"
    counts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert counts["cases"] == 1200
    assert counts["tracebacks"] == 0, counts["examples"]
    assert counts["bad_output"] == 0, counts["examples"]
    assert counts["clean_errors"] + counts["accepted"] == 1200
    assert counts["clean_errors"] > 0


SPECS = ["fp32", "qsgd(bits=4)", "qsgd(bits=4, encoding='elias')", "qsgd(bits=4, encoding='dense')",
         "onebit", "signsgd(error_feedback=True)", "topk", "powersgd(rank=2)", "nuqsgd", "terngrad"]


@pytest.mark.parametrize("spec", SPECS)
def test_payload_carries_version_codec_and_spec(spec: str) -> None:
    codec = make_codec(spec)
    g = torch.randn(120, 100, generator=torch.Generator().manual_seed(0))
    p = codec.encode(g, codec.new_state())
    assert p.version == FORMAT_VERSION and p.codec == codec.name and p.spec == codec.spec()
    assert p.numel == g.numel()
    torch.testing.assert_close(codec.decode(p).shape, g.shape)
    with pytest.raises(PayloadError, match="format version"):
        codec.decode(replace(p, version=FORMAT_VERSION + 1))
    with pytest.raises(PayloadError, match=r"bytes|nbits|runs past|ends at bit"):
        codec.decode(replace(p, data=p.data[:-1].clone(), nbits=8 * (p.data.numel() - 1)))
    with pytest.raises(PayloadError, match="nbits"):
        codec.decode(replace(p, nbits=8 * p.data.numel() + 1))


def test_decode_by_another_codec_or_spec_is_refused() -> None:
    g = torch.randn(20_000, generator=torch.Generator().manual_seed(1))
    p = make_codec("qsgd(bits=4)").encode(g)
    with pytest.raises(PayloadError, match="qsgd\\(bits=4"):
        make_codec("qsgd(bits=8)").decode(p)
    with pytest.raises(PayloadError, match="encoded by codec 'qsgd'"):
        make_codec("onebit").decode(p)


def test_elias_stream_past_its_length_is_refused_not_read() -> None:
    """The stream decoders read within nbits: a stream cut one bit short fails cleanly."""
    codec = make_codec("qsgd(bits=4, encoding='elias')")
    g = torch.randn(20_000, generator=torch.Generator().manual_seed(2))
    p = codec.encode(g)
    with pytest.raises(PayloadError, match=r"runs past|ends at bit"):
        codec.decode(replace(p, nbits=p.nbits - 1))
    ones = replace(p, data=torch.full_like(p.data, 255), nbits=8 * p.data.numel())
    with pytest.raises(PayloadError):
        codec.decode(ones)


@pytest.mark.parametrize("spec", ["onebit", "topk", "powersgd(rank=2)", "signsgd(error_feedback=True)",
                                  "qsgd(bits=4)", "fp32"])
def test_float64_beyond_float32_range_is_an_error_naming_the_tensor(spec: str) -> None:
    codec = make_codec(spec)
    g = torch.randn(200, 100, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * 1e300
    with pytest.raises(CodecError, match=r"shape \(200, 100\)|overflow"):
        codec.encode(g, codec.new_state())


def test_meta_and_sparse_tensors_and_cuda_state_without_cuda() -> None:
    codec = make_codec("qsgd(bits=4)")
    with pytest.raises(CodecError, match="meta"):
        codec.encode(torch.empty(20_000, device="meta"))
    with pytest.raises(CodecError, match="meta"):
        codec.quantize_many(torch.empty(2, 20_000, device="meta"), [codec.new_state()] * 2)
    sparse = torch.zeros(200, 100).to_sparse()
    with pytest.raises(CodecError, match="dense"):
        codec.encode(sparse)
    with pytest.raises(CodecError, match=r"torch\.Tensor"):
        codec.encode([1.0, 2.0])  # type: ignore[arg-type]
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            codec.new_state("cuda")
    with pytest.raises(ConfigError, match="not a torch device"):
        codec.new_state("gpu0")


def test_received_lengths_are_bounded_before_buffers_are_sized() -> None:
    check_received_nbits(MAX_BITS_PER_ELEMENT * 10 + 1024, 10, "qsgd", 1)
    for bad in (-1, MAX_BITS_PER_ELEMENT * 10 + 1025, 2**62):
        with pytest.raises(PayloadError, match="rank 3"):
            check_received_nbits(bad, 10, "qsgd", 3)


def test_torch_path_checks_levels_and_scales() -> None:
    """The pure-torch decoder (the path CUDA tensors take) refuses what the numba one refuses."""
    codec = make_codec("qsgd(levels=5, bucket=512)")  # 3 magnitude bits: levels 6 and 7 are invalid
    codec.force_torch = True
    g = torch.randn(20_000, generator=torch.Generator().manual_seed(4))
    p = codec.encode(g)
    nb = -(-20_000 // 512)
    levels = p.data.clone()
    levels[4 * nb] = 0x77  # two 4-bit codes of level 7 > s = 5
    with pytest.raises(PayloadError, match="level exceeds s=5"):
        codec.decode(replace(p, data=levels))
    codec.force_torch = False  # the numba dequantizer counts the bucket holding them
    with pytest.raises(PayloadError, match="1 bucket\\(s\\) hold a level above s=5"):
        codec.decode(replace(p, data=levels))
    codec.force_torch = True
    scales = p.data.clone()
    scales[:4] = torch.tensor([0, 0, 0xC0, 0x7F], dtype=torch.uint8)  # float32 NaN
    with pytest.raises(PayloadError, match="NaN or Inf"):
        codec.decode(replace(p, data=scales))
    negative = p.data.clone()
    negative[:4] = torch.tensor([0, 0, 0x80, 0xBF], dtype=torch.uint8)  # -1.0
    with pytest.raises(PayloadError, match="negative"):
        codec.decode(replace(p, data=negative))
