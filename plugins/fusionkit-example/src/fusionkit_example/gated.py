"""``example-gated``: a torch fusion head defined entirely outside fusionkit.

Each encoder's features become one vector (pooled as is, layers by a learned weighted sum, frames
by their mean), projected to a common width; a gate per encoder and clip, computed from all the
projections, scales each one before they are summed; an MLP classifies the sum. So the network can
lean on whichever encoder is informative for a given clip.

fusionkit's :class:`~fusionkit.sdk.neural.NeuralHead` does the rest: standardisation on the
training fold, speaker-held-out early stopping, class weights, seeding, and save/load as
safetensors + JSON. This module imports no torch (plugin modules are imported to list plugins);
the network lives in :mod:`fusionkit_example.gated_network`, imported by :meth:`GatedHead.network`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fusionkit.sdk import hookimpl
from fusionkit.sdk.neural import NeuralHead, NeuralOptions


class GatedOptions(NeuralOptions):
    """Options of ``example-gated``: those of every torch head, plus the kind of gate."""

    gate: Literal["sigmoid", "softmax"] = Field(
        "sigmoid", description="'sigmoid': each encoder's gate in (0, 1) on its own; 'softmax': gates sum to 1")


class GatedHead(NeuralHead):
    """Per-encoder gates, then an MLP over the gated sum of the encoders' projections."""

    name = "example-gated"
    description = "per-encoder gates, then an MLP (torch, safetensors; an out-of-tree network head)"
    Options = GatedOptions

    def network(self, specs, n_classes):
        from fusionkit_example.gated_network import GatedFusion

        o = self.options
        return GatedFusion(specs, n_classes, o.width, o.dropout, o.input_dropout, o.layers, gate=o.gate)


@hookimpl
def register_fusions(register):
    register(GatedHead)
