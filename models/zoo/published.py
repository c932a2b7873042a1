"""The workloads of the published single-GPU throughputs the compute estimate is checked on.

``../shared/reference/gpu_throughput.csv`` (NVIDIA DeepLearningExamples, PyTorch) times
ResNet-50 v1.5 (in :mod:`.resnet`), BERT-Large, GNMT v2, Transformer-big and
Transformer-XL base. These modules follow the architectures those examples train, from
the published configurations (papers and the examples' default arguments), so that the
fast meta-device pass can count their work; they are never downloaded and carry no
weights from anywhere. Where a module simplifies its original the docstring says how
(it changes the work by a few percent at most). Token models take synthetic uniform
tokens; sequence lengths are the examples' training settings.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from gradwire.models.spec import MODELS, ModelSpec
from gradwire.models.zoo.common import synthetic_tokens

# ---------------------------------------------------------------- BERT-Large (Devlin et al. 2019)

BERT_VOCAB = 30522
BERT_WIDTH = 1024
BERT_LAYERS = 24
BERT_HEADS = 16
BERT_ENCODER_PARAMS = 335_141_888  # Hugging Face bert-large-uncased BertModel


class BertLarge(nn.Module):
    """BERT-Large encoder (24 post-norm layers, width 1024, 16 heads, GELU MLP 4096, pooler)
    with a head. ``head="pretrain"``: the masked-LM transform and the decoder tied to the word
    embedding, applied to the ``predictions`` masked positions per sequence (the example's
    ``max_predictions_per_seq``; the next-sentence head, 2,050 parameters, is left out).
    ``head="squad"``: start/end logits over the positions (a 1024x2 linear layer; no pooler,
    as in Hugging Face's ``BertForQuestionAnswering``)."""

    def __init__(self, seq_len: int, head: str, predictions: int = 0) -> None:
        super().__init__()
        self.head, self.predictions = head, predictions
        self.word = nn.Embedding(BERT_VOCAB, BERT_WIDTH)
        self.position = nn.Embedding(512, BERT_WIDTH)
        self.segment = nn.Embedding(2, BERT_WIDTH)
        self.emb_norm = nn.LayerNorm(BERT_WIDTH, eps=1e-12)
        self.drop = nn.Dropout(0.1)
        layer = nn.TransformerEncoderLayer(BERT_WIDTH, BERT_HEADS, 4 * BERT_WIDTH, 0.1,
                                           activation="gelu", batch_first=True, layer_norm_eps=1e-12)  # fmt: skip
        self.encoder = nn.TransformerEncoder(layer, BERT_LAYERS, enable_nested_tensor=False)
        if head == "pretrain":
            self.pooler = nn.Linear(BERT_WIDTH, BERT_WIDTH)
            self.transform = nn.Linear(BERT_WIDTH, BERT_WIDTH)
            self.transform_norm = nn.LayerNorm(BERT_WIDTH, eps=1e-12)
            self.decoder_bias = nn.Parameter(torch.zeros(BERT_VOCAB))
        else:
            self.qa = nn.Linear(BERT_WIDTH, 2)

    def forward(self, tokens: Tensor) -> Tensor:
        t = tokens.shape[1]
        pos = torch.arange(t, device=tokens.device)
        h = self.word(tokens) + self.position(pos) + self.segment(torch.zeros_like(tokens))
        h = self.encoder(self.drop(self.emb_norm(h)))
        if self.head == "pretrain":
            # The pooled first token feeds the (omitted) next-sentence head; kept for its work.
            pooled = torch.tanh(self.pooler(h[:, 0]))
            m = h[:, : self.predictions]  # the masked positions (a gather of as many rows)
            m = self.transform_norm(nn.functional.gelu(self.transform(m)))
            logits = m @ self.word.weight.t() + self.decoder_bias
            return logits + 0.0 * pooled.sum()
        return self.qa(h).transpose(1, 2)  # [B, 2, T]: start and end logits


def _bert_spec(name: str, seq_len: int, head: str, predictions: int, what: str) -> ModelSpec:
    pooler = BERT_WIDTH * BERT_WIDTH + BERT_WIDTH
    extra = (BERT_WIDTH * BERT_WIDTH + BERT_WIDTH + 2 * BERT_WIDTH + BERT_VOCAB
             if head == "pretrain" else 2 * BERT_WIDTH + 2 - pooler)  # fmt: skip

    def batch(b: int, g: torch.Generator, d: torch.device) -> tuple[Tensor, Tensor]:
        x = torch.randint(0, BERT_VOCAB, (b, seq_len), generator=g)
        if head == "pretrain":
            y = torch.randint(0, BERT_VOCAB, (b, predictions), generator=g)
        else:
            y = torch.randint(0, seq_len, (b, 2), generator=g)
        return x.to(d), y.to(d)

    return ModelSpec(
        name=name,
        description=f"BERT-Large {what}, {seq_len}-token sequences",
        published_params=BERT_ENCODER_PARAMS + extra,
        source="Devlin et al. 2019 (BERT-Large, 340M); encoder count of Hugging Face "
        "bert-large-uncased BertModel 335,141,888 + the head by construction",
        input_kind="tokens",
        data_source=f"synthetic: uniform random tokens, {seq_len} per sequence",
        builder=lambda: BertLarge(seq_len, head, predictions),
        batch_fn=batch,
    )


@MODELS.register("bert_large_seq128")
def bert_large_seq128() -> ModelSpec:
    return _bert_spec("bert_large_seq128", 128, "pretrain", 20,
                      "pre-training (phase 1, 20 masked predictions per sequence)")  # fmt: skip


@MODELS.register("bert_large_seq512")
def bert_large_seq512() -> ModelSpec:
    return _bert_spec("bert_large_seq512", 512, "pretrain", 80,
                      "pre-training (phase 2, 80 masked predictions per sequence)")  # fmt: skip


@MODELS.register("bert_large_squad")
def bert_large_squad() -> ModelSpec:
    return _bert_spec("bert_large_squad", 384, "squad", 0, "SQuAD fine-tuning")


# ---------------------------------------------------------------- GNMT v2 (Wu et al. 2016)

GNMT_VOCAB = 32320
GNMT_HIDDEN = 1024
GNMT_LEN = 50  # the example's maximum training sentence length (source and target)


class GNMT(nn.Module):
    """GNMT v2 as in NVIDIA's PyTorch example: shared 32,320-token embedding of width 1024;
    encoder: a bidirectional LSTM layer, then three LSTM layers (residual from the third);
    decoder: one LSTM layer whose outputs query a normalized Bahdanau attention over the
    encoder outputs, then three LSTM layers fed with [output, context] (residual from the
    third), and a linear classifier over the vocabulary."""

    def __init__(self) -> None:
        super().__init__()
        h = GNMT_HIDDEN
        self.embed = nn.Embedding(GNMT_VOCAB, h)
        self.enc_bi = nn.LSTM(h, h, batch_first=True, bidirectional=True)
        self.enc = nn.ModuleList([nn.LSTM(2 * h, h, batch_first=True)]
                                 + [nn.LSTM(h, h, batch_first=True) for _ in range(2)])  # fmt: skip
        self.dec0 = nn.LSTM(h, h, batch_first=True)
        self.att_q = nn.Linear(h, h, bias=False)
        self.att_k = nn.Linear(h, h, bias=False)
        self.att_v = nn.Parameter(torch.zeros(h))
        self.att_b = nn.Parameter(torch.zeros(h))
        self.att_g = nn.Parameter(torch.ones(1))
        self.dec = nn.ModuleList([nn.LSTM(2 * h, h, batch_first=True) for _ in range(3)])
        self.classifier = nn.Linear(h, GNMT_VOCAB)

    def forward(self, pair: Tensor) -> Tensor:
        src, tgt = pair[:, 0], pair[:, 1]
        x, _ = self.enc_bi(self.embed(src))
        for i, layer in enumerate(self.enc):
            y, _ = layer(x)
            x = y + x if i >= 1 else y
        keys = self.att_k(x)  # [B, S, H]
        q, _ = self.dec0(self.embed(tgt))
        v = self.att_g * self.att_v / self.att_v.norm().clamp_min(1e-6)
        scores = torch.tanh(self.att_q(q)[:, :, None, :] + keys[:, None, :, :] + self.att_b) @ v
        ctx = torch.softmax(scores, dim=-1) @ x  # [B, T, H]
        h = q
        for i, layer in enumerate(self.dec):
            y, _ = layer(torch.cat([h, ctx], dim=-1))
            h = y + h if i >= 1 else y
        return self.classifier(h)  # [B, T, V]


@MODELS.register("gnmt_v2")
def gnmt_v2() -> ModelSpec:
    h = GNMT_HIDDEN
    lstm = lambda i: 4 * h * (i + h) + 8 * h  # noqa: E731
    count = (GNMT_VOCAB * h + 2 * lstm(h) + lstm(2 * h) + 2 * lstm(h) + lstm(h)
             + 2 * h * h + 2 * h + 1 + 3 * lstm(2 * h) + h * GNMT_VOCAB + GNMT_VOCAB)  # fmt: skip

    def batch(b: int, g: torch.Generator, d: torch.device) -> tuple[Tensor, Tensor]:
        pair = torch.randint(0, GNMT_VOCAB, (b, 2, GNMT_LEN), generator=g)
        y = torch.randint(0, GNMT_VOCAB, (b, GNMT_LEN), generator=g)
        return pair.to(d), y.to(d)

    return ModelSpec(
        name="gnmt_v2",
        description=f"GNMT v2 (4+4 LSTM layers of {h}, attention), {GNMT_LEN}-token sentences",
        published_params=count,
        source="Wu et al. 2016 (GNMT) as configured in NVIDIA DeepLearningExamples "
        "PyTorch/Translation/GNMT (shared embeddings); count by construction",
        input_kind="tokens",
        data_source=f"synthetic: uniform random source and target tokens, {GNMT_LEN} each",
        builder=GNMT,
        batch_fn=batch,
    )


# ---------------------------------------------------------------- Transformer big (Vaswani et al. 2017)

TBIG_VOCAB = 32768  # a joint 32k BPE vocabulary
TBIG_LEN = 32  # tokens per sentence: batches are given in tokens and divided by this


class TransformerBig(nn.Module):
    """Transformer big: 6+6 post-norm layers, width 1024, 16 heads, ReLU MLP 4096, one
    embedding shared by source, target and the output projection."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(TBIG_VOCAB, 1024)
        self.core = nn.Transformer(1024, 16, 6, 6, 4096, 0.3, batch_first=True)

    def forward(self, pair: Tensor) -> Tensor:
        src, tgt = pair[:, 0], pair[:, 1]
        scale = math.sqrt(1024)
        mask = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1], device=tgt.device)
        h = self.core(self.embed(src) * scale, self.embed(tgt) * scale, tgt_mask=mask,
                      tgt_is_causal=True)  # fmt: skip
        return h @ self.embed.weight.t()


@MODELS.register("transformer_big")
def transformer_big() -> ModelSpec:
    def batch(b: int, g: torch.Generator, d: torch.device) -> tuple[Tensor, Tensor]:
        pair = torch.randint(0, TBIG_VOCAB, (b, 2, TBIG_LEN), generator=g)
        y = torch.randint(0, TBIG_VOCAB, (b, TBIG_LEN), generator=g)
        return pair.to(d), y.to(d)

    return ModelSpec(
        name="transformer_big",
        description=f"Transformer big (6+6 layers, width 1024), {TBIG_LEN}-token sentences",
        published_params=213_000_000,
        source="Vaswani et al. 2017, Table 3: big model 213M",
        input_kind="tokens",
        data_source=f"synthetic: uniform random source and target tokens, {TBIG_LEN} each",
        builder=TransformerBig,
        batch_fn=batch,
        params_rel_tol=0.02,
    )


# ---------------------------------------------------------------- Transformer-XL base (Dai et al. 2019)

TXL_VOCAB = 267735
TXL_WIDTH = 512
TXL_HEADS = 8
TXL_LAYERS = 16
TXL_LEN = 192  # tgt_len
TXL_MEM = 192  # mem_len
TXL_HEAD_CLASSES = 19997 + 3  # adaptive softmax head: first cutoff + one logit per tail cluster


class _TXLLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        d = TXL_WIDTH
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.r_net = nn.Linear(d, d, bias=False)
        self.o = nn.Linear(d, d, bias=False)
        self.norm1 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, 2048), nn.ReLU(), nn.Dropout(0.1), nn.Linear(2048, d),
                                nn.Dropout(0.1))  # fmt: skip
        self.norm2 = nn.LayerNorm(d)
        self.drop = nn.Dropout(0.1)

    def forward(self, h: Tensor, mem: Tensor, pos: Tensor, rw: Tensor, rr: Tensor) -> Tensor:
        b, t, d = h.shape
        nh, dh = TXL_HEADS, d // TXL_HEADS
        q, k, v = self.qkv(torch.cat([mem, h], dim=1)).chunk(3, dim=-1)
        q = q[:, -t:].reshape(b, t, nh, dh).transpose(1, 2)
        k = k.reshape(b, -1, nh, dh).transpose(1, 2)
        v = v.reshape(b, -1, nh, dh).transpose(1, 2)
        r = self.r_net(pos).reshape(-1, nh, dh).transpose(0, 1)  # [H, M+T, Dh]
        ac = (q + rw[:, None, :]) @ k.transpose(-1, -2)
        bd = (q + rr[:, None, :]) @ r.transpose(-1, -2)
        # relative shift: pad a zero column and reinterpret (one copy of the score tensor)
        bd = nn.functional.pad(bd, (1, 0)).reshape(b, nh, -1, t)[:, :, 1:].reshape(b, nh, t, -1)
        scores = (ac + bd) / math.sqrt(dh)
        mask = torch.ones(t, scores.shape[-1], dtype=torch.bool, device=h.device).triu(
            1 + scores.shape[-1] - t)
        att = self.drop(torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1))
        out = self.o((att @ v).transpose(1, 2).reshape(b, t, d))
        h = self.norm1(h + self.drop(out))
        return self.norm2(h + self.ff(h))


class TransformerXLBase(nn.Module):
    """Transformer-XL base for WikiText-103: 16 layers, width 512, 8 heads of 64, MLP 2048,
    segments of 192 tokens attending to a 192-token memory of the previous segment
    (detached, as in training), relative position scores with the two global biases,
    adaptive input embedding with ``div_val=1`` (one 267,735 x 512 table) tied to an
    adaptive softmax. The softmax is counted as its head (19,997 frequent words and 3
    cluster logits for every token); the tail clusters, which only the rarer target
    words reach, are left out."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(TXL_VOCAB, TXL_WIDTH)
        self.layers = nn.ModuleList([_TXLLayer() for _ in range(TXL_LAYERS)])
        dh = TXL_WIDTH // TXL_HEADS
        self.r_w_bias = nn.Parameter(torch.zeros(TXL_HEADS, dh))
        self.r_r_bias = nn.Parameter(torch.zeros(TXL_HEADS, dh))
        self.cluster = nn.Linear(TXL_WIDTH, 3)
        self.drop = nn.Dropout(0.1)

    def forward(self, tokens: Tensor) -> Tensor:
        b, t = tokens.shape
        h = self.drop(self.embed(tokens) * math.sqrt(TXL_WIDTH))
        klen = t + TXL_MEM
        inv = 1.0 / (10000 ** (torch.arange(0, TXL_WIDTH, 2, device=h.device) / TXL_WIDTH))
        pos_seq = torch.arange(klen - 1, -1, -1.0, device=h.device)
        pos = torch.cat([torch.sin(pos_seq[:, None] * inv), torch.cos(pos_seq[:, None] * inv)], -1)
        for layer in self.layers:
            mem = torch.zeros(b, TXL_MEM, TXL_WIDTH, device=h.device, dtype=h.dtype)
            h = layer(h, mem, self.drop(pos), self.r_w_bias, self.r_r_bias)
        h = self.drop(h)
        head = h @ self.embed.weight[: TXL_HEAD_CLASSES - 3].t()
        return torch.cat([head, self.cluster(h)], dim=-1)  # [B, T, head classes]


@MODELS.register("transformer_xl_base")
def transformer_xl_base() -> ModelSpec:
    d = TXL_WIDTH
    layer = 3 * d * d + d * d + d * d + 2 * (d * 2048) + 2048 + d + 4 * d
    count = TXL_VOCAB * d + TXL_LAYERS * layer + 2 * d + d * 3 + 3
    return ModelSpec(
        name="transformer_xl_base",
        description=f"Transformer-XL base ({TXL_LAYERS} layers, width {d}), {TXL_LEN}-token segments",
        published_params=count,
        source="Dai et al. 2019 as configured in NVIDIA DeepLearningExamples "
        "PyTorch/LanguageModeling/Transformer-XL (base, WT103, div_val 1); count by construction",
        input_kind="tokens",
        data_source=f"synthetic: uniform random tokens, {TXL_LEN} per segment, next-token targets",
        builder=TransformerXLBase,
        batch_fn=synthetic_tokens(TXL_LEN, TXL_HEAD_CLASSES, per_token_targets=True),
    )
