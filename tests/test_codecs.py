"""Codec invariants: bit-exact round trips through the real bytes, sizes, errors, seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradwire.codecs import CODECS, make_codec
from gradwire.codecs.base import Codec
from gradwire.codecs.bitpack import pack_numba, pack_torch, packed_nbytes, unpack, unpack_torch
from gradwire.codecs.elias import get_omega, omega_length, put_omega
from gradwire.codecs.measure import measure_codec
from gradwire.codecs.nuqsgd import codes_torch
from gradwire.codecs.qsgd import bucket_scales, dequant_torch, levels_torch
from gradwire.codecs.rng import draw_key, uniform24
from gradwire.errors import CodecError, ConfigError, NonFiniteGradientError, UnknownNameError

# Every registered codec, in configurations that exercise the real (not raw) path.
SPECS = [
    "fp32",
    "fp16",
    "bf16",
    "qsgd(bits=4, bucket=64, min_numel=0)",
    "qsgd(bits=2, bucket=7, encoding='elias', min_numel=0)",
    "qsgd(levels=16, bucket=100, encoding='dense', min_numel=0)",
    "qsgd(levels=300, bucket=33, encoding='elias', min_numel=0)",
    "qsgd(bits=12, bucket=50, min_numel=0)",
    "qsgdinf(bits=8, bucket=64, min_numel=0)",
    "qsgdinf(levels=5, bucket=10, encoding='dense', min_numel=0)",
    "nuqsgd(bits=4, bucket=64, min_numel=0)",
    "nuqsgd(levels=3, bucket=9, multiplier=0.25, min_numel=0)",
    "onebit(bucket=16, min_numel=0)",
    "signsgd(min_numel=0)",
    "signsgd(error_feedback=True, min_numel=0)",
    "terngrad(min_numel=0)",
    "topk(ratio=0.1, min_numel=0)",
    "powersgd(rank=2)",
]
SHAPES = [(1,), (5,), (64,), (100,), (7, 13), (3, 4, 5), (40, 30), (0,), (2, 0)]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def grad(shape: tuple[int, ...], seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    n = math.prod(shape)
    x = torch.randn(n, generator=g) * torch.exp(torch.randn(n, generator=g))
    return x.reshape(shape).to(dtype)


def check_round_trip(codec: Codec, x: torch.Tensor, steps: int = 2) -> None:
    """decode(encode(x, s1)) == quantize(x, s2) bit-exactly, with equal states after."""
    s1, s2 = codec.new_state(), codec.new_state()
    for _ in range(steps):
        p = codec.encode(x, s1)
        d = codec.decode(p)
        q = codec.quantize(x, s2)
        assert d.shape == x.shape and d.dtype == x.dtype
        assert q.shape == x.shape and q.dtype == x.dtype
        assert torch.equal(d, q)
        assert 8 * p.data.numel() - 7 <= p.nbits <= 8 * p.data.numel()
        assert p.data.dtype == torch.uint8 and p.data.dim() == 1
        if s1.residual is not None or s2.residual is not None:
            assert s1.residual is not None and s2.residual is not None
            assert torch.equal(s1.residual, s2.residual)


def test_every_required_codec_is_registered() -> None:
    required = {"fp32", "fp16", "bf16", "qsgd", "qsgdinf", "nuqsgd", "onebit", "terngrad",
                "signsgd", "topk", "powersgd"}
    assert required <= set(CODECS.names())


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("shape", SHAPES)
def test_round_trip_is_bit_exact(spec: str, shape: tuple[int, ...]) -> None:
    check_round_trip(make_codec(spec), grad(shape, seed=len(shape)))


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_dtypes_are_preserved(spec: str, dtype: torch.dtype) -> None:
    check_round_trip(make_codec(spec), grad((9, 11), seed=3, dtype=dtype))


@pytest.mark.parametrize("spec", SPECS)
def test_zero_tensor_decodes_to_zero(spec: str) -> None:
    codec = make_codec(spec)
    x = torch.zeros(10, 12)
    check_round_trip(codec, x)
    decoded = codec.decode(codec.encode(x))
    if spec == "signsgd(min_numel=0)":  # plain signs: sgn(0) = +1
        assert torch.equal(decoded, torch.ones_like(x))
    else:
        assert torch.equal(decoded, x)


@given(
    n=st.integers(1, 700),
    bucket=st.integers(1, 130),
    bits=st.integers(2, 9),
    encoding=st.sampled_from(["fixed", "elias", "dense"]),
    norm=st.sampled_from(["l2", "max"]),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=60, deadline=None)
def test_qsgd_round_trip_any_shape_and_bucket(n: int, bucket: int, bits: int, encoding: str,
                                              norm: str, seed: int) -> None:
    codec = make_codec(f"qsgd(bits={bits}, bucket={bucket}, encoding={encoding!r}, "
                       f"norm={norm!r}, min_numel=0, seed={seed})")
    x = grad((n,), seed=seed)
    check_round_trip(codec, x, steps=1)
    if encoding == "fixed":
        nb = -(-n // bucket)
        assert codec.encode(x).nbits == 32 * nb + bits * n


@given(rows=st.integers(1, 40), cols=st.integers(1, 40), bucket=st.integers(1, 50),
       seed=st.integers(0, 1000))
@settings(max_examples=40, deadline=None)
def test_bucketed_codecs_round_trip_any_shape(rows: int, cols: int, bucket: int,
                                              seed: int) -> None:
    x = grad((rows, cols), seed=seed)
    for spec in (f"nuqsgd(bucket={bucket}, min_numel=0)", f"onebit(bucket={bucket}, min_numel=0)",
                 "terngrad(min_numel=0)", "topk(ratio=0.3, min_numel=0)"):
        check_round_trip(make_codec(spec), x, steps=1)
    check_round_trip(make_codec(f"onebit(bucket={bucket}, min_numel=0)"), x.reshape(-1), steps=1)


def test_payload_sizes_follow_the_wire_formats() -> None:
    x = grad((40, 30))
    n = x.numel()
    assert make_codec("fp32").encode(x).nbits == 32 * n
    assert make_codec("bf16").encode(x).nbits == 16 * n
    assert make_codec("qsgd(bits=4, bucket=512, min_numel=0)").encode(x).nbits == 4 * n + 32 * 3
    assert make_codec("nuqsgd(bits=3, bucket=100, min_numel=0)").encode(x).nbits == 3 * n + 32 * 12
    assert make_codec("onebit(min_numel=0)").encode(x).nbits == n + 64 * 30  # columns
    assert make_codec("onebit(bucket=100, min_numel=0)").encode(x.reshape(-1)).nbits == n + 64 * 12
    assert make_codec("signsgd(min_numel=0)").encode(x).nbits == n
    assert make_codec("signsgd(error_feedback=True, min_numel=0)").encode(x).nbits == n + 32
    assert make_codec("terngrad(min_numel=0)").encode(x).nbits == 2 * n + 32
    assert make_codec("topk(ratio=0.1, min_numel=0)").encode(x).nbits == 64 * 120
    assert make_codec("powersgd(rank=3)").encode(x).nbits == 32 * (40 + 30) * 3
    # a vector, and a matrix where rank-r factors would not save 2x, go raw in fp32
    assert make_codec("powersgd(rank=3)").encode(x.reshape(-1)).nbits == 32 * n
    assert make_codec("powersgd(rank=8)").encode(grad((10, 12))).nbits == 32 * 120


@pytest.mark.parametrize("name", ["qsgd", "qsgdinf", "nuqsgd", "onebit", "signsgd", "terngrad",
                                  "topk"])
def test_small_tensors_are_sent_in_full_precision(name: str) -> None:
    codec = make_codec(f"{name}(min_numel=1000)")
    for dtype in DTYPES:
        x = grad((30, 33), dtype=dtype)  # 990 elements: under the threshold
        p = codec.encode(x)
        assert p.nbits == 990 * 8 * x.element_size()
        assert torch.equal(codec.decode(p), x)
    assert make_codec(name).params()["min_numel"] == 10_000


def test_bits_levels_convention() -> None:
    assert make_codec("qsgd(bits=4)").params()["levels"] == 7
    assert make_codec("qsgd(bits=8)").params()["levels"] == 127
    assert make_codec("qsgd(levels=16)").params() == {
        "levels": 16, "bucket": 512, "encoding": "fixed", "norm": "l2", "min_numel": 10_000}
    assert make_codec("nuqsgd(bits=4)").params()["levels"] == 7
    x = grad((1000,))
    # levels=16 needs a sign bit plus ceil(log2(17)) = 5 magnitude bits
    assert make_codec("qsgd(levels=16, bucket=1000, min_numel=0)").encode(x).nbits == 6000 + 32


@pytest.mark.parametrize("spec", SPECS)
def test_spec_round_trips_through_the_registry(spec: str) -> None:
    codec = make_codec(spec)
    again = make_codec(codec.spec())
    assert type(again) is type(codec) and again.params() == codec.params()


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("qsgd(bits=0)", "bits"),
        ("qsgd(bits=1)", "bits"),
        ("qsgd(bucket=0)", "bucket"),
        ("qsgd(levels=0)", "levels"),
        ("qsgd(levels=-3)", "levels"),
        ("qsgd(bits=4, levels=5)", "levels"),
        ("qsgd(encoding='zip')", "encoding"),
        ("qsgd(norm='l1')", "norm"),
        ("qsgd(min_numel=-1)", "min_numel"),
        ("qsgd(bits=2.5)", "bits"),
        ("qsgd(wrong=1)", "wrong"),
        ("qsgdinf(levels=0)", "levels"),
        ("nuqsgd(levels=0)", "levels"),
        ("nuqsgd(multiplier=1.5)", "multiplier"),
        ("nuqsgd(levels=200, multiplier=0.5)", "underflow"),
        ("onebit(bucket=0)", "bucket"),
        ("signsgd(error_feedback='yes')", "error_feedback"),
        ("terngrad(clip=0)", "clip"),
        ("topk(ratio=0)", "ratio"),
        ("topk(ratio=2)", "ratio"),
        ("powersgd(rank=0)", "rank"),
        ("powersgd(min_compression=0.5)", "min_compression"),
    ],
)
def test_impossible_parameters_raise_one_clear_error(spec: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        make_codec(spec)


def test_unknown_codec_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownNameError) as info:
        make_codec("qsdg(bits=4)")
    assert "qsdg" in str(info.value) and "qsgd" in str(info.value) and "powersgd" in str(info.value)


@pytest.mark.parametrize("spec", [*SPECS, "qsgd", "topk"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_gradients_are_rejected(spec: str, bad: float) -> None:
    codec = make_codec(spec)
    x = grad((40, 30))
    x[3, 4] = bad
    with pytest.raises(NonFiniteGradientError, match=r"NaN|Inf"):
        codec.encode(x, codec.new_state())
    with pytest.raises(NonFiniteGradientError):
        codec.quantize(x, codec.new_state())


def test_huge_finite_values_are_not_mistaken_for_inf() -> None:
    x = torch.full((100,), 3e38)  # finite, but their float32 sum overflows
    assert torch.equal(make_codec("fp32").decode(make_codec("fp32").encode(x)), x)
    check_round_trip(make_codec("bf16"), x)


def test_fp16_overflow_is_an_error_not_inf() -> None:
    with pytest.raises(CodecError, match="overflow"):
        make_codec("fp16").encode(torch.tensor([1e6, 1.0]))


@pytest.mark.parametrize("spec", [s for s in SPECS if s not in ("fp32", "fp16", "bf16")])
def test_same_seed_same_bytes(spec: str) -> None:
    x = grad((50, 40), seed=7)
    a, b = make_codec(spec), make_codec(spec)
    sa, sb = a.new_state(worker=2), b.new_state(worker=2)
    for _ in range(2):
        pa, pb = a.encode(x, sa), b.encode(x, sb)
        assert pa.nbits == pb.nbits and torch.equal(pa.data, pb.data)


@pytest.mark.parametrize("spec", ["qsgd(bits=3, min_numel=0)", "nuqsgd(min_numel=0)",
                                  "terngrad(min_numel=0)",
                                  "qsgd(bits=3, encoding='elias', min_numel=0)"])
def test_different_seeds_or_workers_draw_differently(spec: str) -> None:
    x = grad((4000,), seed=1)
    codec = make_codec(spec)
    other = make_codec(spec.replace("min_numel=0", "min_numel=0, seed=5"))
    p0 = codec.encode(x, codec.new_state(worker=0)).data
    assert not torch.equal(p0, codec.encode(x, codec.new_state(worker=1)).data)
    assert not torch.equal(p0, other.encode(x, other.new_state(worker=0)).data)


@pytest.mark.parametrize("spec", SPECS)
def test_quantize_many_equals_quantize_row_by_row(spec: str) -> None:
    codec = make_codec(spec)
    stacked = torch.stack([grad((12, 10), seed=k) for k in range(3)])
    sa = [codec.new_state(worker=k) for k in range(3)]
    sb = [codec.new_state(worker=k) for k in range(3)]
    for _ in range(2):
        many = codec.quantize_many(stacked, sa)
        rows = torch.stack([codec.quantize(stacked[k], sb[k]) for k in range(3)])
        assert torch.equal(many, rows)


def test_qsgd_numba_path_matches_torch_path() -> None:
    for norm in ("l2", "max"):
        for s, d, n in ((7, 64, 1000), (1, 5, 333), (100, 512, 2000)):
            codec = make_codec(f"qsgd(levels={s}, bucket={d}, norm={norm!r}, min_numel=0)")
            x = grad((n,), seed=s)
            got = codec.quantize(x, codec.new_state())
            xf = x.reshape(1, n)
            scales = bucket_scales(xf, d, norm)
            lev, neg = levels_torch(xf, scales, s, d, draw_key(codec.new_state().generator))
            assert torch.equal(got, dequant_torch(lev, neg, scales, s, n).reshape(n))
            assert int(lev.max()) <= s and int(lev.min()) >= 0


@pytest.mark.parametrize("spec", ["qsgd(bits=4, bucket=64, min_numel=0)",
                                  "qsgdinf(levels=300, bucket=33, min_numel=0)",
                                  "qsgd(bits=2, bucket=5, min_numel=0)"])
def test_qsgd_torch_path_writes_the_same_bytes(spec: str) -> None:
    """The pure-torch path (what a CUDA tensor runs) is byte-identical to the numba path."""
    fast, ref = make_codec(spec), make_codec(spec)
    ref.force_torch = True  # type: ignore[attr-defined]
    for dtype in DTYPES:
        x = grad((37, 29), seed=5, dtype=dtype)
        pf, pr = fast.encode(x, fast.new_state()), ref.encode(x, ref.new_state())
        assert pf.nbits == pr.nbits and torch.equal(pf.data, pr.data)
        assert torch.equal(ref.decode(pr), fast.decode(pf))
        assert torch.equal(ref.quantize(x, ref.new_state()), fast.decode(pf))
        assert torch.equal(ref.quantize_many(torch.stack([x, x]), [ref.new_state()] * 2)[0],
                           fast.decode(pf))


def test_nuqsgd_numba_path_matches_torch_path() -> None:
    codec = make_codec("nuqsgd(bits=5, bucket=100, min_numel=0)")
    x = grad((1000,), seed=2).reshape(1, -1)
    scales = bucket_scales(x, 100, "l2")
    keys = draw_key(codec.new_state().generator)
    expected = codes_torch(x, scales, codec.table, 100, codec.mbits, keys)
    assert torch.equal(codec._codes(x, scales, keys), expected)
    assert torch.equal(codec._dequant(expected, scales), codec._dequant_torch(expected, scales))


@pytest.mark.parametrize("spec", ["qsgd(min_numel=0)", "nuqsgd(min_numel=0)", "fp16", "onebit"])
def test_integer_tensors_are_rejected(spec: str) -> None:
    with pytest.raises(ConfigError, match="floating-point"):
        make_codec(spec).encode(torch.arange(20))


def test_l2_norm_overflow_is_reported() -> None:
    x = torch.full((600,), 3e37)
    with pytest.raises(CodecError, match="overflows float32"):
        make_codec("qsgd(min_numel=0)").encode(x)
    # the max norm does not overflow
    assert torch.isfinite(make_codec("qsgdinf(min_numel=0)").quantize(x)).all()


def test_uniforms_are_uniform_and_device_independent_formula() -> None:
    key = torch.tensor([123456789123], dtype=torch.int64)
    u = uniform24(key, torch.arange(200_000))
    assert float(u.min()) >= 0.0 and float(u.max()) < 1.0
    # mean 1/2, variance 1/12: 6-sigma tolerance from the variance of the estimators
    n = u.numel()
    assert abs(float(u.double().mean()) - 0.5) < 6 * math.sqrt(1 / 12 / n)
    assert abs(float(u.double().var()) - 1 / 12) < 6 * math.sqrt(1 / 180 / n)
    counts = torch.bincount((u * 16).long(), minlength=16).double()
    chi2 = float(((counts - n / 16) ** 2 / (n / 16)).sum())
    assert chi2 < 60  # 15 degrees of freedom: P(chi2 > 60) < 1e-6


@given(st.lists(st.integers(0, 2**24 - 1), max_size=50), st.integers(1, 24))
@settings(max_examples=80, deadline=None)
def test_bit_packing_numba_and_torch_agree(values: list[int], width: int) -> None:
    codes = torch.tensor([v % (1 << width) for v in values], dtype=torch.int32)
    a = pack_torch(codes, width)
    b = np.zeros(packed_nbytes(len(values), width), dtype=np.uint8)
    pack_numba(codes.numpy(), width, b)
    assert torch.equal(a, torch.from_numpy(b))
    assert torch.equal(unpack(a, len(values), width), codes)
    assert torch.equal(unpack_torch(a, len(values), width), codes)


def test_elias_omega_round_trip_and_lengths() -> None:
    ks = [1, 2, 3, 4, 7, 8, 15, 16, 17, 100, 511, 512, 10**6, 2**31 - 1, 2**40 + 3]
    buf = np.zeros(256, dtype=np.uint8)
    pos = 0
    for k in ks:
        pos = put_omega(buf, pos, k)
    assert pos == sum(omega_length(k) for k in ks)
    read = 0
    for k in ks:
        got, read = get_omega(buf, read)
        assert got == k
    # Known code words: 1 -> "0", 2 -> "100", 4 -> "101000", 16 -> "10100100000".
    assert [omega_length(k) for k in (1, 2, 3, 4, 7, 8, 16)] == [1, 3, 3, 6, 6, 7, 11]
    buf = np.zeros(2, dtype=np.uint8)
    put_omega(buf, 0, 4)
    assert buf[0] == 0b10100000


def test_measure_codec_reports_the_payload_bits_and_times() -> None:
    x = grad((300, 100))
    for spec in ("qsgd(bits=4)", "onebit", "powersgd"):
        codec = make_codec(spec)
        cost = measure_codec(codec, x, repeats=2, warmup=1, seed=3)
        assert cost.nbits == codec.encode(x, codec.new_state()).nbits
        assert cost.numel == x.numel() and cost.encode_s > 0 and cost.decode_s > 0
        assert cost.compression_ratio == pytest.approx(32 * x.numel() / cost.nbits)
    with pytest.raises(ConfigError, match="repeats"):
        measure_codec(make_codec("fp32"), x, repeats=0)


def test_state_shape_mismatch_is_reported() -> None:
    codec = make_codec("onebit(min_numel=0)")
    state = codec.new_state()
    codec.encode(grad((10, 10)), state)
    with pytest.raises(ConfigError, match="residual"):
        codec.encode(grad((5, 5)), state)
