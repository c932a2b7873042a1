"""An LSTM acoustic model of the size class of the QSGD paper's AN4 speech LSTM (13M).

The QSGD paper (section 5) trains a 13M-parameter LSTM on the AN4 speech corpus without
giving its layout. This model is three LSTM layers of 768 cells over 120-dimensional
frames (40 filterbank energies with deltas and delta-deltas) and a per-frame linear
classifier over 1000 acoustic states: 2,734,080 + 2 x 4,724,736 + 769,000 = 12,952,552
parameters, 0.4% from 13M. Synthetic standard-normal features, 100 frames per utterance.
"""

from __future__ import annotations

from torch import Tensor, nn

from gradwire.models.spec import MODELS, ModelSpec
from gradwire.models.zoo.common import synthetic_frames

FEATURES = 120
HIDDEN = 768
LAYERS = 3
STATES = 1000
FRAMES = 100


class SpeechLSTM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(FEATURES, HIDDEN, num_layers=LAYERS, batch_first=True)
        self.head = nn.Linear(HIDDEN, STATES)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.lstm(x)
        return self.head(out)  # [B, T, STATES]


@MODELS.register("lstm")
def spec() -> ModelSpec:
    return ModelSpec(
        name="lstm",
        description=f"speech LSTM: {LAYERS}x{HIDDEN} cells over {FEATURES}-dim frames, {STATES} states per frame",
        published_params=13_000_000,
        source="Alistarh et al., QSGD, NeurIPS 2017, sec. 5: LSTM on AN4 speech, 13M (layout not given)",
        input_kind="sequence",
        data_source=f"synthetic: standard-normal {FRAMES}x{FEATURES} feature frames, uniform per-frame labels",
        builder=SpeechLSTM,
        batch_fn=synthetic_frames(FRAMES, FEATURES, STATES),
        params_rel_tol=0.01,
        sequence_loss=True,
    )
