"""The scenario schema: what a what-if YAML file may say, validated with every problem at once.

A scenario names the model and batch, the device (or a device profile to rescale to), the
cluster (a topology builder and its parameters, an inline list of links, or a graph file),
the number of workers, the codecs, the collectives, DDP bucket size, overlap, stragglers,
the seed and sweep axes. Units live in key names at this edge only (``bandwidth_Gbps``,
``latency_us``, ``bucket_MB``) and are converted to SI once by :mod:`gradwire.scenarios.convert`.

Validation is two passes: the structure (pydantic, unknown keys rejected) and the meaning
(registered names, builder parameters, sweep paths), and both report every problem with
its dotted path, e.g. ``cluster.links[2].bandwidth_Gbps: must be > 0 Gbit/s``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Strict(BaseModel):
    # strict: `workers: true` or `batch_size: 8.5` is an error, never silently 1 or 8
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


PosFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]


class MeasuredTimes(_Strict):
    """Per-iteration compute times the user measured on the target hardware (milliseconds)."""

    forward_ms: PosFloat
    backward_ms: PosFloat
    optimizer_ms: NonNegFloat = 0.0


class EfficiencyCfg(_Strict):
    """Achieved efficiency per operation class of the compute estimate (fractions of peak)
    and the fixed cost per operation; replaces the calibrated values (and their stated
    error) when given."""

    gemm: Annotated[float, Field(gt=0, le=1)]
    small_gemm: Annotated[float, Field(gt=0, le=1)]
    memory: Annotated[float, Field(gt=0, le=2)]
    optimizer: Annotated[float, Field(gt=0, le=2)]
    launch_us: NonNegFloat = 0.0


class LlmCfg(_Strict):
    """An inline Llama-style decoder (gradwire.models.zoo.llama), built on the meta device."""

    layers: Annotated[int, Field(gt=0)]
    hidden: Annotated[int, Field(gt=0)]
    intermediate: Annotated[int, Field(gt=0)]
    heads: Annotated[int, Field(gt=0)]
    kv_heads: Annotated[int, Field(gt=0)] | None = None  # grouped-query attention; None: heads
    vocab: Annotated[int, Field(gt=0)]
    tied_embeddings: bool = False
    seq_len: Annotated[int, Field(gt=0)] = 4096  # default sequence length (model.seq_len wins)
    rope_theta: PosFloat = 10_000.0


class ModelCfg(_Strict):
    name: str = "mlp"
    batch_size: Annotated[int, Field(gt=0)] = 32  # per worker
    device: Literal["auto", "cpu", "cuda"] = "auto"  # where profiling and codec timing run
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    target_device: str | None = None  # the GPU asked about (compute estimated unless measured)
    # codec cost model on a target's datasheet constants: fractions of its FP32 peak and
    # memory bandwidth codec kernels reach (the compute estimate has its own, model.efficiency)
    compute_efficiency: Annotated[float, Field(gt=0, le=1)] = 0.4
    memory_efficiency: Annotated[float, Field(gt=0, le=1)] = 0.7
    measured: MeasuredTimes | None = None  # or give compute times measured elsewhere
    profile_iters: Annotated[int, Field(gt=0, le=100)] = 3
    module: str | None = None  # the user's own model: "package.module:factory"
    loss: Literal["cross_entropy", "mse"] | None = None  # default cross-entropy
    profile: str | None = None  # a workload file written by `run_sim.py profile`
    precision: Literal["fp32", "tf32", "amp_bf16", "amp_fp16"] | None = None  # None: PyTorch's default
    efficiency: EfficiencyCfg | None = None  # override the calibrated per-class efficiencies
    seq_len: Annotated[int, Field(gt=0)] | None = None  # tokens per sequence of a decoder (LLM)
    llm: LlmCfg | None = None  # a decoder given by its configuration (model.name labels it)


class LinkCfg(_Strict):
    src: str | int
    dst: str | int
    bandwidth_Gbps: PosFloat
    latency_us: NonNegFloat = 1.0


class ClusterCfg(BaseModel):
    """A topology builder and its parameters; builder parameters are checked against the
    builder's signature in the semantic pass, so extra keys are allowed here."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    topology: str = "star"
    links: list[LinkCfg] | None = None  # with topology: links (an inline graph)
    gpus: list[str | int] | None = None  # with topology: links, which nodes are GPUs (rank order)
    graph_file: str | None = None  # with topology: graph_file


class NetworkCfg(_Strict):
    per_message_overhead_us: NonNegFloat = 0.0  # alpha: software cost of one message
    efficiency: Annotated[float, Field(gt=0, le=1)] = 1.0  # payload bytes per wire byte


class ExchangeCfg(_Strict):
    """Which collective each kind of payload uses, with that collective's own options
    (checked against its parameters, e.g. ``summable_options: {num_servers: 2}`` for a
    parameter server)."""

    summable: str = "ring_allreduce"  # fp32/fp16/bf16/powersgd payloads
    quantized: str = "ring_allgather"  # payloads that cannot be summed without decoding
    summable_options: dict[str, Any] = Field(default_factory=dict)
    quantized_options: dict[str, Any] = Field(default_factory=dict)
    # NCCL's choice for the summable collective (NCCL_ALGO / NCCL_PROTO); auto: its tuning model
    algorithm: Literal["auto", "ring", "tree"] = "auto"
    protocol: Literal["auto", "ll", "ll128", "simple"] = "auto"


class Straggler(_Strict):
    rank: Annotated[int, Field(ge=0)]
    slowdown: Annotated[float, Field(ge=1)]  # compute time multiplier


class MeasureCfg(_Strict):
    repeats: Annotated[int, Field(gt=0, le=50)] = 3
    ranks: Annotated[int, Field(gt=0, le=64)] = 2  # distinct seeds whose payload sizes are measured


class CodecCostCfg(_Strict):
    """Where codec times come from (see gradwire.codec_costs) and stated overheads."""

    costs: str | None = None  # calibration file made by `run_sim.py calibrate-codecs`
    # extra host time per tensor per encode and per decode: another framework's codec
    # implementation (a Python loop over tensors, unfused operations)
    per_tensor_overhead_us: NonNegFloat = 0.0


class ConvergenceCfg(_Strict):
    enabled: bool = False
    model: str = "mlp"
    task: str = "digits"
    workers: Annotated[int, Field(gt=0, le=256)] | None = None  # default: the scenario's workers
    steps: Annotated[int, Field(gt=0)] = 150
    batch_per_worker: Annotated[int, Field(gt=0)] = 16
    lr: PosFloat = 0.1
    eval_every: Annotated[int, Field(gt=0)] = 10
    target: Annotated[float, Field(gt=0, le=1)] | None = None  # absolute test accuracy
    target_fraction: Annotated[float, Field(gt=0, le=1)] = 0.99  # of fp32's best accuracy


class PublishedFigure(_Strict):
    """A published measurement that this scenario reproduces, shown beside the prediction."""

    figure: str  # e.g. "QSGD paper §5, AlexNet 16 GPUs"
    quantity: Literal["speedup_vs_fp32", "comm_fraction_fp32", "comm_reduction"]
    codec: str  # spec of the codec the figure is about
    value: float
    point: dict[str, Any] = Field(default_factory=dict)  # swept values selecting the point


class VerdictCfg(_Strict):
    """The per-point verdict's interval (gradwire.verdict): Monte Carlo draws of the
    inputs' stated errors, their seed, and the network's efficiency range (payload bytes
    per wire byte; default: network.efficiency -+ 6.7%, at most 1; see docs/verdict.md)."""

    enabled: bool = True
    draws: Annotated[int, Field(ge=19, le=100_000)] = 100  # 19: the fewest for a 90% interval
    seed: Annotated[int, Field(ge=0)] = 0
    network_efficiency: Annotated[list[Annotated[float, Field(gt=0, le=1)]],
                                  Field(min_length=2, max_length=2)] | None = None

    @field_validator("network_efficiency")
    @classmethod
    def _low_high(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and v[0] > v[1]:
            raise ValueError(f"must be [low, high] with low <= high, got {v}")
        return v


class BreakevenCfg(_Strict):
    """Break-even searches run after the sweep (docs/breakeven.md): per point and compressed
    codec, the bandwidth below which it beats the best uncompressed baseline and the worker
    count above which it stops paying, each by bisection with the simulator."""

    bandwidth: bool = True
    workers: bool = True
    bandwidth_range_Gbps: Annotated[list[PosFloat], Field(min_length=2, max_length=2)] = Field(
        default_factory=lambda: [0.1, 1000.0])
    workers_range: Annotated[list[Annotated[int, Field(ge=1, le=65536)]], Field(min_length=2, max_length=2)] = Field(
        default_factory=lambda: [2, 1024])
    tolerance: Annotated[float, Field(gt=0, le=0.1)] = 0.01  # relative, on the bandwidth
    max_points: Annotated[int, Field(ge=0)] = 200  # more scenario points: skipped, with a note


class ShardingCfg(_Strict):
    """Sharded data parallelism (``parallelism`` other than ``ddp``; docs/sharding.md)."""

    # units (FSDP's wrapping): None, a decoder's blocks one unit each and the rest in the
    # root, another model's top-level modules; k: the first k components of a parameter name
    unit_depth: Annotated[int, Field(gt=0, le=16)] | None = None
    prefetch: bool = True  # the next unit's all-gather issued ahead (FSDP's default)
    group: Annotated[int, Field(gt=0)] | None = None  # hsdp: ranks per shard group (default: a server)
    # parameters on the wire (FSDP2's MixedPrecisionPolicy.param_dtype); None: model.dtype
    param_dtype: Literal["float32", "float16", "bfloat16"] | None = None
    # a codec for the parameter all-gather (ZeRO++'s qwZ: "qsgdinf(bits=8, bucket=256)"); None: as they are
    param_codec: str | None = None
    # optimizer state bytes per parameter (Adam: 12 with fp32 master weights in mixed
    # precision, 8 without); None: 12 when parameters are 16-bit, else 8
    optimizer_bytes: Annotated[float, Field(ge=0, le=64)] | None = None


class Scenario(_Strict):
    name: str = "scenario"
    description: str = ""
    seed: int = 0
    model: ModelCfg = Field(default_factory=ModelCfg)
    workers: Annotated[int, Field(gt=0, le=65536)] = 4
    cluster: ClusterCfg = Field(default_factory=ClusterCfg)
    network: NetworkCfg = Field(default_factory=NetworkCfg)
    codecs: Annotated[list[str], Field(min_length=1)] = Field(
        default_factory=lambda: ["fp32", "qsgd(bits=4, bucket=512)", "onebit"]
    )
    exchange: ExchangeCfg = Field(default_factory=ExchangeCfg)
    # uncompressed exchanges every point runs besides `codecs` (gradwire.baselines); unset:
    # PyTorch's for a decoder (bf16), none added otherwise
    baselines: list[str] | None = None
    # DDP's bucket_cap_mb (MiB). Left unset, DDP's default: 25 MiB with a first bucket of
    # 1 MiB, which starts communication early in backward; DDP gives an explicit
    # bucket_cap_mb no small first bucket (first_bucket_MB = bucket_MB) unless
    # first_bucket_MB says otherwise.
    bucket_MB: PosFloat | None = None
    first_bucket_MB: PosFloat | None = None
    overlap: bool = True
    # codec work on the same device as compute ("shared": it slows backward) or on other
    # hardware ("free")
    codec_overlap: Literal["shared", "free"] = "shared"
    # ddp: every rank holds the whole model, gradients allreduced in DDP buckets; fsdp /
    # zero1 / zero2 / zero3 / hsdp: sharded (gradwire.simulator.sharded, docs/sharding.md)
    parallelism: Literal["ddp", "fsdp", "zero1", "zero2", "zero3", "hsdp"] = "ddp"
    sharding: ShardingCfg = Field(default_factory=ShardingCfg)
    stragglers: list[Straggler] = Field(default_factory=list)
    jitter: Annotated[float, Field(ge=0, le=1)] = 0.0  # std of compute time / mean
    measure: MeasureCfg = Field(default_factory=MeasureCfg)
    codec: CodecCostCfg = Field(default_factory=CodecCostCfg)
    sweep: dict[str, Annotated[list[Any], Field(min_length=1)]] = Field(default_factory=dict)
    # explicit points (each a set of path: value overrides, plus an optional `case` name),
    # crossed with the sweep axes
    cases: list[dict[str, Any]] = Field(default_factory=list)
    convergence: ConvergenceCfg = Field(default_factory=ConvergenceCfg)
    published: list[PublishedFigure] = Field(default_factory=list)
    assumptions: list[str] = Field(default_factory=list)
    verdict: VerdictCfg = Field(default_factory=VerdictCfg)
    breakeven: BreakevenCfg = Field(default_factory=BreakevenCfg)
