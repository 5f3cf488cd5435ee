"""``lstm``: a bidirectional LSTM over frame sequences (LLD frames, log-mel, encoder states), masked mean or
attentive pooling, a classifier (torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fusionkit.sdk import hookimpl
from fusionkit.sdk.neural import NeuralHead, NeuralOptions


class LSTMOptions(NeuralOptions):
    width: int = Field(64, ge=4, le=1024, description="LSTM hidden size per direction")
    num_layers: int = Field(1, ge=1, le=4, description="stacked bidirectional LSTM layers")
    pool: Literal["mean", "attention"] = Field("attention", description="masked mean or attentive pooling over time")
    max_frames: int = Field(200, ge=1, description="longer sequences are average-pooled in time to this length")


class LSTMHead(NeuralHead):
    """Per encoder a packed bidirectional LSTM over frames with masked pooling, then a classifier."""

    name = "lstm"
    description = "bidirectional LSTM over frame sequences, mean/attentive pooling (torch, safetensors)"
    Options = LSTMOptions

    def network(self, specs, n_classes):
        from fusionkit_plugins.lstm_head_network import SequenceLSTM

        o = self.options
        return SequenceLSTM(specs, n_classes, o.width, o.dropout, o.input_dropout, o.layers,
                            num_layers=o.num_layers, pool=o.pool)


@hookimpl
def register_fusions(register):
    register(LSTMHead)
