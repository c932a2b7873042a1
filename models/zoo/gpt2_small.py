"""A GPT-2-small-sized decoder-only transformer (Radford et al., 2019).

12 pre-norm blocks of width 768 with 12 heads and a 3072-wide GELU MLP, 50,257-token
vocabulary, 1024 learned positions, final layer norm, and an output projection tied to
the token embedding: 124,439,808 parameters, the count of Hugging Face's ``gpt2``
checkpoint. Profiling uses causal next-token prediction on 128 uniform random tokens.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gradwire.models.spec import MODELS, ModelSpec
from gradwire.models.zoo.common import synthetic_tokens

VOCAB = 50257
POSITIONS = 1024
WIDTH = 768
HEADS = 12
LAYERS = 12
SEQ_LEN = 128


class GPT2(nn.Module):
    def __init__(self, dropout: float = 0.1) -> None:
        super().__init__()
        self.wte = nn.Embedding(VOCAB, WIDTH)
        self.wpe = nn.Embedding(POSITIONS, WIDTH)
        self.drop = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            WIDTH, HEADS, 4 * WIDTH, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
        self.ln_f = nn.LayerNorm(WIDTH)
        nn.init.normal_(self.wte.weight, std=0.02)
        nn.init.normal_(self.wpe.weight, std=0.01)

    def forward(self, tokens: Tensor) -> Tensor:
        t = tokens.shape[1]
        pos = torch.arange(t, device=tokens.device)
        h = self.drop(self.wte(tokens) + self.wpe(pos))
        mask = nn.Transformer.generate_square_subsequent_mask(
            t, device=tokens.device, dtype=h.dtype
        )
        h = self.ln_f(self.blocks(h, mask=mask, is_causal=True))
        return h @ self.wte.weight.t()  # tied output projection: logits [B, T, VOCAB]


@MODELS.register("gpt2_small")
def spec() -> ModelSpec:
    return ModelSpec(
        name="gpt2_small",
        description=f"GPT-2 small: {LAYERS} layers, width {WIDTH}, {HEADS} heads, tied embeddings; {SEQ_LEN}-token sequences",
        published_params=124_439_808,
        source="Radford et al. 2019 (GPT-2 small, '117M'); exact count of Hugging Face gpt2",
        input_kind="tokens",
        data_source=f"synthetic: uniform random tokens, {SEQ_LEN} per sequence, next-token targets",
        builder=GPT2,
        batch_fn=synthetic_tokens(SEQ_LEN, VOCAB, per_token_targets=True),
        sequence_loss=True,
    )
