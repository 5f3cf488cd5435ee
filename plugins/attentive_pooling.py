"""``attentive-pooling``: attentive statistics pooling of each encoder's frame sequence (torch).

Shared with ``weighted-layers``: :class:`FrameHead`, whose ``n_layers`` option says how many layers an
encoder's frames concatenate along features (``pooling: none`` with several layers gives (T, L*D)), so the
network can split them back into (T, L, D) and learn softmax weights over the layers.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from fusionkit.sdk import hookimpl
from fusionkit.sdk.neural import NeuralHead, NeuralOptions

LayerCount = Annotated[int, Field(ge=1)]


class FrameOptions(NeuralOptions):
    n_layers: LayerCount | dict[str, LayerCount] | None = Field(
        None, description="layers concatenated in each encoder's frames (pooling: none with several layers): "
                          "one count for every sequence encoder, or a mapping encoder -> count; the network "
                          "learns softmax weights over them. null: each frame is one feature vector")
    attention_width: int = Field(64, ge=1, description="hidden width of the frame attention scorer")


class FrameHead(NeuralHead):
    """Frame-sequence heads: per-encoder layer mix, projection, pooling over frames, linear classifier."""

    Options = FrameOptions
    require_layer_count = False

    def frame_pooling(self) -> str:
        """Pooling over frames: ``attentive`` here; ``weighted-layers`` reads its option."""
        return "attentive"

    def frame_layers(self, name: str, width: int) -> int:
        """How many layers the frames of sequence encoder ``name`` (``width`` features) concatenate."""
        count = self.options.n_layers
        if isinstance(count, dict):
            count = count.get(name)
        if count is None:
            if self.require_layer_count:
                raise ValueError(f"{self.name}: option n_layers does not give encoder '{name}' a layer count "
                                 f"(its frames have {width} features; e.g. 7 for whisper base with layers: all, "
                                 f"1 for one layer)")
            return 1
        if width % count:
            raise ValueError(f"{self.name}: option n_layers: encoder '{name}' has {width}-wide frames, "
                             f"which do not split into {count} layers")
        return count

    def check_layer_names(self) -> None:
        """Every encoder named in an ``n_layers`` mapping must be one the head is fitted on."""
        if isinstance(self.options.n_layers, dict):
            unknown = sorted(set(self.options.n_layers) - set(self.encoders))
            if unknown:
                raise ValueError(f"{self.name}: option n_layers names {', '.join(map(repr, unknown))}, not among "
                                 f"the encoders {self.encoders}")

    def specs(self) -> list[dict[str, Any]]:
        out = super().specs()
        self.check_layer_names()
        for spec in out:
            if spec["kind"] == "sequence":
                spec["n_layers"] = self.frame_layers(spec["name"], spec["dim"])
        return out

    def network(self, specs, n_classes):
        from fusionkit_plugins.attentive_pooling_network import FramePoolNet

        o = self.options
        return FramePoolNet(specs, n_classes, o.width, o.dropout, o.input_dropout, self.frame_pooling(),
                            o.attention_width)


class AttentivePoolingHead(FrameHead):
    """Per encoder: optional layer mix, projection, attentive statistics pooling; concatenated; classified."""

    name = "attentive-pooling"
    description = "attentive statistics pooling of frame sequences + linear classifier (torch, safetensors)"


@hookimpl
def register_fusions(register):
    register(AttentivePoolingHead)
