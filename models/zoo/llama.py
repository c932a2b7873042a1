"""Llama-family decoder-only transformers given by their configuration, built on the meta device.

A :class:`DecoderConfig` (layers, hidden size, MLP intermediate size, query heads, key/value
heads for grouped-query attention, vocabulary, tied or separate output projection) builds a
:class:`Decoder` with the architecture of Meta's Llama models as Hugging Face's
``LlamaForCausalLM`` lays it out: a token embedding, ``layers`` pre-norm blocks (RMSNorm,
attention with rotary position embeddings and ``kv_heads`` key/value heads, RMSNorm, SwiGLU
MLP ``down(silu(gate(x)) * up(x))``), a final RMSNorm and the output projection; no biases.
Parameter names follow that layout (``layers.3.self_attn.q_proj.weight``).

These models are ``meta_only``: GradWire builds them on PyTorch's meta device, so their
shapes, the order backward produces their gradients and their FLOPs (the fast pass of
:mod:`gradwire.models.flops`) are exact with no memory and no download, and never runs them on
the host CPU. Their compute on a target GPU comes from the compute estimate or from a profile
file measured on a GPU; their codec payloads from synthetic gradients
(:mod:`gradwire.models.llm_grads`).

The shipped sizes (:data:`SHIPPED`) carry their published parameter counts: the figures of
the Hugging Face model cards of Meta's checkpoints (``meta-llama/...``, given there to three
significant digits), with the architecture from each checkpoint's ``config.json`` and the
papers (Touvron et al. 2023, "Llama 2", Table 1; Llama Team 2024, "The Llama 3 Herd of
Models", Table 3). The tests check every built count against the published one (0.5%).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from gradwire.errors import ConfigError
from gradwire.models.spec import MODELS, ModelSpec
from gradwire.models.zoo.common import synthetic_tokens

ROPE_THETA = {"llama-2": 10_000.0, "llama-3": 500_000.0}
CONFIG_FIELDS = ("layers", "hidden", "intermediate", "heads", "kv_heads", "vocab", "tied_embeddings")


@dataclass(frozen=True)
class DecoderConfig:
    """A Llama-style decoder: ``hidden`` must split into ``heads`` heads and ``heads`` into
    groups of ``heads / kv_heads`` sharing one key/value head."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    tied_embeddings: bool = False
    rope_theta: float = 10_000.0
    norm_eps: float = 1e-5

    def problems(self, where: str = "model.llm") -> list[tuple[str, str]]:
        """``(path, message)`` for every field that cannot hold."""
        out = []
        for f in ("layers", "hidden", "intermediate", "heads", "kv_heads", "vocab"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                out.append((f"{where}.{f}", f"must be a positive integer, got {v!r}"))
        if out:
            return out
        if self.hidden % self.heads:
            out.append((f"{where}.heads", f"{self.heads} heads do not divide hidden size {self.hidden}; "
                                          "use a divisor of hidden"))  # fmt: skip
        elif (self.hidden // self.heads) % 2:
            out.append((f"{where}.heads", f"head width {self.hidden // self.heads} is odd; rotary "
                                          "embeddings rotate pairs of channels, use an even width"))  # fmt: skip
        if self.heads % self.kv_heads:
            out.append((f"{where}.kv_heads", f"{self.kv_heads} key/value heads do not divide "
                                             f"{self.heads} query heads; use a divisor of heads"))  # fmt: skip
        return out

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def param_count(self) -> int:
        """The closed-form parameter count (what :class:`Decoder` builds)."""
        h, kv = self.hidden, self.kv_heads * self.head_dim
        block = 2 * h * h + 2 * h * kv + 3 * h * self.intermediate + 2 * h
        embed = self.vocab * h
        return self.layers * block + h + embed * (1 if self.tied_embeddings else 2)


class RMSNorm(nn.Module):
    """Root-mean-square normalization with a learned scale (Zhang & Sennrich 2019)."""

    def __init__(self, width: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class Attention(nn.Module):
    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        d, kv = cfg.head_dim, cfg.kv_heads * cfg.head_dim
        self.heads, self.kv_heads, self.head_dim = cfg.heads, cfg.kv_heads, d
        self.q_proj = nn.Linear(cfg.hidden, cfg.hidden, bias=False)
        self.k_proj = nn.Linear(cfg.hidden, kv, bias=False)
        self.v_proj = nn.Linear(cfg.hidden, kv, bias=False)
        self.o_proj = nn.Linear(cfg.hidden, cfg.hidden, bias=False)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        out = nn.functional.scaled_dot_product_attention(
            q, k, v, is_causal=True, enable_gqa=self.kv_heads != self.heads)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, -1))  # type: ignore[no-any-return]


class MLP(nn.Module):
    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden, cfg.intermediate, bias=False)
        self.up_proj = nn.Linear(cfg.hidden, cfg.intermediate, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate, cfg.hidden, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))  # type: ignore[no-any-return]


class Block(nn.Module):
    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden, cfg.norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, h: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        h = h + self.self_attn(self.input_layernorm(h), cos, sin)
        return h + self.mlp(self.post_attention_layernorm(h))  # type: ignore[no-any-return]


class Decoder(nn.Module):
    """The decoder of ``cfg``: token ids ``[B, T]`` -> next-token logits ``[B, T, vocab]``."""

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab, cfg.hidden)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = RMSNorm(cfg.hidden, cfg.norm_eps)
        self.lm_head = None if cfg.tied_embeddings else nn.Linear(cfg.hidden, cfg.vocab, bias=False)

    def forward(self, tokens: Tensor) -> Tensor:
        t = tokens.shape[1]
        d = self.cfg.head_dim
        inv = 1.0 / self.cfg.rope_theta ** (torch.arange(0, d, 2, device=tokens.device).float() / d)
        freqs = torch.outer(torch.arange(t, device=tokens.device).float(), inv)
        angles = torch.cat((freqs, freqs), dim=-1)
        h = self.embed_tokens(tokens)
        # in the activations' dtype, so that q, k and v agree when the weights are 16-bit
        cos, sin = angles.cos().to(h.dtype), angles.sin().to(h.dtype)
        for block in self.layers:
            h = block(h, cos, sin)
        h = self.norm(h)
        if self.lm_head is None:
            return h @ self.embed_tokens.weight.t()
        return self.lm_head(h)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class ShippedLLM:
    """One published size: its configuration, default sequence length (the pre-training
    context), published parameter count and where the figures come from."""

    name: str
    config: DecoderConfig
    seq_len: int
    published_params: int
    source: str


def _hf(repo: str, shown: str, paper: str) -> str:
    return (f"Hugging Face model card of {repo} ({shown} parameters) and its config.json; "
            f"{paper}")  # fmt: skip


_L2 = "Touvron et al. 2023, Llama 2, Table 1 (4k context)"
_L3 = "Llama Team 2024, The Llama 3 Herd of Models, Table 3 (8k pre-training context)"
_L32 = "Meta's Llama 3.2 model card (1B and 3B, shared embeddings)"

SHIPPED: tuple[ShippedLLM, ...] = (
    ShippedLLM("llama-3.2-1b", DecoderConfig(16, 2048, 8192, 32, 8, 128_256, True, ROPE_THETA["llama-3"]),
               8192, 1_240_000_000, _hf("meta-llama/Llama-3.2-1B", "1.24B", _L32)),
    ShippedLLM("llama-3.2-3b", DecoderConfig(28, 3072, 8192, 24, 8, 128_256, True, ROPE_THETA["llama-3"]),
               8192, 3_210_000_000, _hf("meta-llama/Llama-3.2-3B", "3.21B", _L32)),
    ShippedLLM("llama-2-7b", DecoderConfig(32, 4096, 11008, 32, 32, 32_000, False, ROPE_THETA["llama-2"]),
               4096, 6_740_000_000, _hf("meta-llama/Llama-2-7b-hf", "6.74B", _L2)),
    ShippedLLM("llama-3-8b", DecoderConfig(32, 4096, 14336, 32, 8, 128_256, False, ROPE_THETA["llama-3"]),
               8192, 8_030_000_000, _hf("meta-llama/Meta-Llama-3-8B", "8.03B", _L3)),
    ShippedLLM("llama-2-13b", DecoderConfig(40, 5120, 13824, 40, 40, 32_000, False, ROPE_THETA["llama-2"]),
               4096, 13_000_000_000, _hf("meta-llama/Llama-2-13b-hf", "13B", _L2)),
    ShippedLLM("llama-2-70b", DecoderConfig(80, 8192, 28672, 64, 8, 32_000, False, ROPE_THETA["llama-2"]),
               4096, 69_000_000_000, _hf("meta-llama/Llama-2-70b-hf", "69B", _L2)),
    ShippedLLM("llama-3-70b", DecoderConfig(80, 8192, 28672, 64, 8, 128_256, False, ROPE_THETA["llama-3"]),
               8192, 70_600_000_000, _hf("meta-llama/Meta-Llama-3-70B", "70.6B", _L3)),
)
# The model cards give three significant digits: the built count must be within 0.5%.
PUBLISHED_REL_TOL = 0.005


def decoder_spec(name: str, cfg: DecoderConfig, seq_len: int, *, published: int = 0,
                 source: str = "", rel_tol: float = PUBLISHED_REL_TOL) -> ModelSpec:
    """The :class:`ModelSpec` of ``cfg`` trained on ``seq_len``-token sequences."""
    bad = cfg.problems()
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len <= 0:
        bad.append(("model.seq_len", f"must be a positive integer number of tokens, got {seq_len!r}"))
    if bad:
        raise ConfigError("; ".join(f"{p}: {m}" for p, m in bad))
    gqa = f", {cfg.kv_heads} KV heads" if cfg.kv_heads != cfg.heads else ""
    tied = ", tied embeddings" if cfg.tied_embeddings else ""
    return ModelSpec(
        name=name,
        description=(f"Llama-style decoder: {cfg.layers} layers, hidden {cfg.hidden}, MLP "
                     f"{cfg.intermediate}, {cfg.heads} heads{gqa}, vocabulary {cfg.vocab}{tied}; "
                     f"{seq_len}-token sequences (meta device only)"),
        published_params=published,
        source=source or f"configuration given in the scenario: {asdict(cfg)}",
        input_kind="tokens",
        data_source=f"none: built on the meta device (token ids [batch, {seq_len}], no weights, no data)",
        builder=partial(Decoder, cfg),
        batch_fn=synthetic_tokens(seq_len, cfg.vocab, per_token_targets=True),
        params_rel_tol=rel_tol if published else 0.0,
        sequence_loss=True,
        meta_only=True,
    )


def spec_seq_len(spec: ModelSpec) -> int:
    """The sequence length a decoder's spec draws its token batches at."""
    x, _ = spec.batch_like(1, "meta")
    return int(x.shape[1])


def shipped(name: str) -> ShippedLLM:
    for s in SHIPPED:
        if s.name == name:
            return s
    raise KeyError(name)


def _register(entry: ShippedLLM) -> None:
    @MODELS.register(entry.name)
    def spec() -> ModelSpec:
        return decoder_spec(entry.name, entry.config, entry.seq_len,
                            published=entry.published_params, source=entry.source)


for _entry in SHIPPED:
    _register(_entry)


def config_from(llm: Any) -> DecoderConfig:
    """A :class:`DecoderConfig` from a scenario's ``model.llm`` section."""
    d = {f: getattr(llm, f) for f in CONFIG_FIELDS}
    if d["kv_heads"] is None:
        d["kv_heads"] = d["heads"]
    return DecoderConfig(**d, rope_theta=float(llm.rope_theta))


def llm_spec(m: Any) -> ModelSpec | None:
    """The spec of a scenario's ``model`` section when it names a decoder: a shipped size
    (``model.name``) or an inline ``model.llm``, at ``model.seq_len`` when given; ``None``
    for every other model."""
    llm, seq = getattr(m, "llm", None), getattr(m, "seq_len", None)
    if llm is not None:
        cfg = config_from(llm)
        return decoder_spec(m.name, cfg, seq if seq is not None else llm.seq_len)
    names = {s.name for s in SHIPPED}
    if m.module is None and m.name in names:
        e = shipped(m.name)
        return decoder_spec(e.name, e.config, seq if seq is not None else e.seq_len,
                            published=e.published_params, source=e.source)
    return None


def attention_flops(cfg: DecoderConfig, batch: int, seq_len: int) -> float:
    """Training FLOPs of the attention scores and their weighted sum: ``14 B s^2 L h``.

    Forward: ``Q K^T`` and ``P V``, ``2 s^2 h`` each per layer and sequence (full score
    matrices, as Narayanan et al. 2021 count them in eq. 3); backward: their four gradient
    products plus the recomputation of ``Q K^T`` that a fused kernel makes instead of
    storing the scores (Dao et al. 2022, FlashAttention, Algorithm 4): five products. A
    causal kernel skips about half the score blocks; this count, like PyTorch's, does not."""
    return 14.0 * batch * seq_len**2 * cfg.layers * cfg.hidden


def matmul_params(cfg: DecoderConfig) -> int:
    """Parameters that take part in a matrix product (every weight but the norms and, when
    separate from the output projection, the embedding lookup)."""
    norms = (2 * cfg.layers + 1) * cfg.hidden
    lookup = 0 if cfg.tied_embeddings else cfg.vocab * cfg.hidden
    return cfg.param_count() - norms - lookup


def training_flops(cfg: DecoderConfig, batch: int, seq_len: int) -> float:
    """Closed-form FLOPs of one training step: ``6 N_matmul T + 14 B s^2 L h`` (forward
    ``2 N`` per token, backward twice that; Kaplan et al. 2020, sec. 2.1)."""
    return 6.0 * matmul_params(cfg) * batch * seq_len + attention_flops(cfg, batch, seq_len)


__all__ = ["SHIPPED", "Decoder", "DecoderConfig", "ShippedLLM", "attention_flops", "decoder_spec",
           "llm_spec", "matmul_params", "spec_seq_len", "training_flops"]
