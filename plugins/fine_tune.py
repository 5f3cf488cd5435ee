"""``fine-tune``: train an encoder's own upper blocks, with a pooled classifier, on the training fold (torch).

Each encoder gives the frames of one layer (``layers: L``, ``pooling: none``), which are cached like any
features; the head starts from a copy of the encoder's blocks after layer L (the encoder's ``trainable_top``),
so each epoch runs only those blocks: partial fine-tuning on the CPU, or every block above the front end
(``layers: 0``) where ``device: cuda`` makes that affordable. Training-time augmentation masks random spans of
frames and feature channels (SpecAugment-style). Epochs are chosen by early stopping on held-out training
speakers, as for every torch head; the blocks' trained weights are saved in the fold's safetensors file and
rebuilt from the spec in ``head.json`` (the encoder plugin's ``build_top``), so a bundle carries them.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from fusionkit.sdk import hookimpl
from fusionkit.sdk.heads import HeadFileError, Standardizer
from fusionkit.sdk.neural import NeuralHead, NeuralOptions, _kind
from fusionkit.sdk.torch_models import DeviceName


class FineTuneOptions(NeuralOptions):
    blocks: int | None = Field(None, ge=1, description="blocks to train after each encoder's cached layer (null: "
                                                       "all up to the model's last)")
    encoder_lr: float = Field(5e-5, gt=0, description="AdamW learning rate of the encoder's blocks (lr: the "
                                                      "classifier's)")
    init: Literal["random", "probe"] = Field(
        "random", description="the classifier's starting weights: random, or probe: a logistic regression on the "
                              "pooled output of the pretrained blocks over the training clips (linear probing, then "
                              "fine-tuning), and that starting point competes with every epoch on validation")
    pooling: Literal["mean", "attentive"] = Field("mean", description="pooling over frames: mean, or attentive "
                                                                      "statistics (weighted mean and std)")
    mask_time: float = Field(0.1, ge=0, lt=1, description="augmentation: share of frames masked in training, in "
                                                          "spans of mask_span frames")
    mask_span: int = Field(10, ge=1, description="frames per time mask (Whisper: 20 ms each)")
    mask_channels: float = Field(0.0, ge=0, lt=1, description="augmentation: share of feature channels masked per "
                                                              "clip in training")
    epochs: int = Field(30, ge=1, description="maximum training epochs")
    patience: int = Field(5, ge=1, description="stop after this many epochs without a better validation score")
    batch_size: int = Field(16, ge=2)
    max_frames: int = Field(1500, ge=1, description="longer sequences are average-pooled in time to this length "
                                                    "(1500 = Whisper's 30 s)")
    device: DeviceName = Field("cpu", description="cpu, cuda, cuda:N, mps or auto (CUDA trains in bfloat16 "
                                                  "autocast)")
    group_by_length: bool = Field(False, description="batch clips of similar length together in training (less "
                                                     "padding: faster on corpora whose lengths vary widely)")
    predict_batch: int = Field(32, ge=1, description="clips per forward pass when predicting")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (null: torch's default)")
    attention_width: int = Field(64, ge=1, description="hidden width of the attentive pooling scorer")


_POOLED = "fine-tune: encoder '{name}' gives pooled features; give it one layer and pooling: none"


def _refuse_untrainable(name: str, encoder) -> None:
    """A ``ValueError`` naming the encoder when its plugin offers no trainable blocks."""
    from fusionkit.sdk.base import Encoder

    if type(encoder).trainable_top is Encoder.trainable_top:
        raise ValueError(f"fine-tune: encoder '{name}' ({encoder.name}) cannot be fine-tuned: its plugin offers no "
                         f"trainable_top (built in: whisper, wav2vec2, hf-text; for a sentence-transformers "
                         f"checkpoint use hf-text with the same model)")


class FineTuneHead(NeuralHead):
    """An encoder's upper blocks (from its own weights) -> pooling over frames -> linear classifier."""

    name = "fine-tune"
    description = "fine-tunes an encoder's upper blocks on cached lower-layer frames + classifier (torch)"
    Options = FineTuneOptions
    requires = ("torch", "sklearn")
    wants_encoders = True

    def __init__(self, options: FineTuneOptions, seed: int = 0):
        super().__init__(options, seed)
        self.tops: dict[str, dict[str, Any]] = {}  # encoder name -> {"plugin", spec of its trainable blocks}
        self._pretrained: dict[str, dict] = {}

    @classmethod
    def check_encoders(cls, options: FineTuneOptions, encoders: dict) -> None:
        """Every encoder gives one layer's frames and has ``blocks`` blocks above it (from its config)."""
        for name, encoder in encoders.items():
            _refuse_untrainable(name, encoder)
            if not encoder.is_sequence():
                raise ValueError(_POOLED.format(name=name))
            encoder.fine_tune_blocks(options.blocks)

    def _fit_scalers(self, X: dict) -> None:
        """The blocks take the encoder's own states: no standardisation, one check per encoder."""
        self.kinds, self.scalers = {}, {}
        for name in self.encoders:
            x = X[name]
            if _kind(x) != "sequence":
                raise ValueError(_POOLED.format(name=name))
            width = next((np.asarray(s).shape[-1] for s in x if len(s)), None)
            if width is None:
                raise ValueError(f"fine-tune: encoder '{name}' gave no frames for any training clip")
            self.kinds[name] = "sequence"
            self.scalers[name] = Standardizer(np.zeros(width), np.ones(width))

    def _fit(self, X, y, groups):
        for name, encoder in self.sources.items():
            if name in self.encoders:
                _refuse_untrainable(name, encoder)
        self._fit_scalers(X)  # checks the inputs before any model is loaded
        missing = [n for n in self.encoders if n not in self.sources]
        if missing:
            raise ValueError(f"fine-tune: no encoder object for {missing}: the run attaches the recipe's encoders "
                             f"(head.attach) before fitting")
        self.tops, self._pretrained = {}, {}
        for name in self.encoders:
            encoder = self.sources[name]
            top, spec = encoder.trainable_top(self.options.blocks)
            self.tops[name] = {"plugin": encoder.name, **spec}
            self._pretrained[name] = {k: v.detach().clone() for k, v in top.state_dict().items()}
        try:
            super()._fit(X, y, groups)
        finally:
            self._pretrained = {}
        self.history["tops"] = {n: {"start": t.get("start"), "count": t.get("count")} for n, t in self.tops.items()}

    def _top(self, name: str):
        """Encoder ``name``'s trainable blocks: its plugin's ``build_top`` from the saved spec (+ pretrained weights
        while fitting)."""
        from fusionkit.registry import PluginError, registry

        spec = self.tops[name]
        try:
            cls = registry().get("encoder", spec["plugin"])
        except (PluginError, KeyError) as exc:
            raise HeadFileError(f"fine-tune: encoder plugin {spec.get('plugin')!r} of '{name}' is not available "
                                f"({exc})") from None
        top = cls.build_top(spec)
        if name in self._pretrained:
            top.load_state_dict(self._pretrained[name])
        return top

    def network(self, specs, n_classes):
        from fusionkit_plugins.fine_tune_network import FineTuneNet, ProbedFineTuneNet

        o = self.options
        net = ProbedFineTuneNet if o.init == "probe" else FineTuneNet
        return net([self._top(s["name"]) for s in specs], [s["dim"] for s in specs], n_classes, o)

    def _state(self, directory):
        config, arrays = super()._state(directory)
        return {**config, "tops": self.tops}, arrays

    def _restore(self, config, arrays, directory) -> None:
        self.tops = dict(config["tops"])
        missing = [n for n in self.encoders if n not in self.tops]
        if missing:
            raise HeadFileError(f"{directory / 'head.json'}: 'tops' lacks encoder(s) {missing}")
        super()._restore(config, arrays, directory)


@hookimpl
def register_fusions(register):
    register(FineTuneHead)
