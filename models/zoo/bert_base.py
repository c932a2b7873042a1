"""A BERT-base-sized encoder (Devlin et al., 2019) with a two-way classification head.

Word (30,522), position (512) and segment (2) embeddings with layer norm, 12 post-norm
blocks of width 768, 12 heads, 3072-wide GELU MLP, and the tanh pooler over the first
token: 109,482,240 parameters, the count of Hugging Face's ``bert-base-uncased``
``BertModel`` (the paper's 110M); a 768x2 sentence-classification head adds 1,538.
Profiling uses 128 uniform random tokens per sequence.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gradwire.models.spec import MODELS, ModelSpec
from gradwire.models.zoo.common import synthetic_tokens

VOCAB = 30522
POSITIONS = 512
SEGMENTS = 2
WIDTH = 768
HEADS = 12
LAYERS = 12
CLASSES = 2
SEQ_LEN = 128
ENCODER_PARAMS = 109_482_240
HEAD_PARAMS = WIDTH * CLASSES + CLASSES


class BertBase(nn.Module):
    def __init__(self, dropout: float = 0.1) -> None:
        super().__init__()
        self.word = nn.Embedding(VOCAB, WIDTH)
        self.position = nn.Embedding(POSITIONS, WIDTH)
        self.segment = nn.Embedding(SEGMENTS, WIDTH)
        self.emb_norm = nn.LayerNorm(WIDTH, eps=1e-12)
        self.drop = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            WIDTH,
            HEADS,
            4 * WIDTH,
            dropout,
            activation="gelu",
            batch_first=True,
            layer_norm_eps=1e-12,
        )
        self.encoder = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
        self.pooler = nn.Linear(WIDTH, WIDTH)
        self.classifier = nn.Linear(WIDTH, CLASSES)

    def forward(self, tokens: Tensor) -> Tensor:
        t = tokens.shape[1]
        pos = torch.arange(t, device=tokens.device)
        seg = torch.zeros_like(tokens)
        h = self.word(tokens) + self.position(pos) + self.segment(seg)
        h = self.encoder(self.drop(self.emb_norm(h)))
        pooled = torch.tanh(self.pooler(h[:, 0]))
        return self.classifier(self.drop(pooled))


@MODELS.register("bert_base")
def spec() -> ModelSpec:
    return ModelSpec(
        name="bert_base",
        description=f"BERT-base encoder ({LAYERS} layers, width {WIDTH}) + 2-way classifier; {SEQ_LEN}-token sequences",
        published_params=ENCODER_PARAMS + HEAD_PARAMS,
        source="Devlin et al. 2019 (BERT-base, 110M); exact count of Hugging Face bert-base-uncased BertModel 109,482,240 + head 1,538",
        input_kind="tokens",
        data_source=f"synthetic: uniform random tokens, {SEQ_LEN} per sequence, uniform 2-class labels",
        builder=BertBase,
        batch_fn=synthetic_tokens(SEQ_LEN, VOCAB, per_token_targets=False, classes=CLASSES),
    )
