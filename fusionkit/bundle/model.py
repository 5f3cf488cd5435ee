"""A loaded bundle: :class:`Bundle` behind ``fusionkit predict`` and ``fusionkit.load``."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path

import numpy as np

from fusionkit.bundle.files import (
    BundleError,
    bundle_recipe_raw,
    check_files,
    check_identities,
    localized_models,
    read_manifest,
    read_training_stats,
    remote_code_requests,
    typed_recipe,
)

log = logging.getLogger("fusionkit")
MIN_ENROL_CLIPS = 2
"""Fewer enrolment clips give no spread: every feature would be 0 after normalising."""
FEW_ENROL_CLIPS = 10
"""Below this many enrolment clips a warning says the statistics are noisy."""


# ---------------------------------------------------------------- loading and predicting


@dataclass
class Segment:
    """One labelled stretch: a class label and probabilities, or (regression) target values."""

    start: float
    end: float
    label: str | None
    probabilities: dict[str, float] | None
    text: str | None = None
    values: dict[str, float] | None = None
    warning: str | None = None  # the window is silent or very short (fusionkit.audio.signal_warning)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def _result(scores: dict[str, float], regression: bool) -> dict:
    """A whole-file result: ``{"label", "probabilities"}``, or ``{"values"}`` for regression."""
    if regression:
        return {"values": scores}
    return {"label": max(scores, key=scores.get), "probabilities": scores}


class EnrolmentError(ValueError):
    """Normalisation that cannot be done as asked: a normalised bundle given no enrolment, too few usable enrolment
    clips, or enrolment given to a bundle that does not normalise. The message is one line; ``skipped`` holds the
    enrolment inputs that were passed over, each with the reason (as ``Normaliser.skipped``)."""

    def __init__(self, message: str, skipped: dict[str, str] | None = None):
        super().__init__(message)
        self.skipped = dict(skipped or {})


@dataclass
class Normaliser:
    """Per-encoder statistics that z-score a normalised bundle's features as training z-scored each group.

    Made by :meth:`Bundle.enrol` from unlabelled audio of one speaker or source (``source == "enrolment"``), or by
    :meth:`Bundle.training_normaliser` from the statistics stored in the bundle (``"training corpus"``).
    """

    kind: str  # the bundle's normalize: corpus or speaker
    stats: dict  # encoder name -> fusionkit.pipeline.data.GroupStats
    clips: int  # how many clips the statistics come from
    source: str
    skipped: dict[str, str] = dataclass_field(default_factory=dict)  # enrolment input -> why it could not be used

    def __repr__(self) -> str:
        """Kind, clip count, source and each encoder's width; not the statistics themselves (hundreds of floats)."""
        widths = {name: int(np.size(s.mean)) for name, s in self.stats.items()}
        skipped = f", skipped={len(self.skipped)}" if self.skipped else ""
        return f"Normaliser(kind={self.kind!r}, clips={self.clips}, source={self.source!r}, widths={widths}{skipped})"

    def apply(self, name: str, rows) -> np.ndarray:
        """Encoder ``name``'s features of some clips, stacked and z-scored (float32)."""
        from fusionkit.pipeline.data import apply_stats

        if name not in self.stats:
            raise EnrolmentError(f"the normaliser holds no statistics for encoder {name} (made for another bundle?)")
        return apply_stats(rows, self.stats[name])


def _file_key(source) -> tuple | None:
    """What identifies a file's content for the feature memo (path, size, mtime); None for arrays or odd files."""
    if not isinstance(source, (str, Path)):
        return None
    try:
        st = os.stat(source)
        return str(Path(source).resolve()), st.st_size, st.st_mtime_ns
    except OSError:
        return None


MEMO_BYTES = 256 * 2**20
"""Whole-file features kept after enrolment, so that labelling the same files does not encode them again."""


class Bundle:
    """A loaded bundle: ``Bundle.load(path).predict(path_or_array)``."""

    def __init__(self, root: Path, recipe, encoders: dict, head, outputs: list[str],
                 training_stats: tuple[dict, int] | None = None):
        from collections import OrderedDict

        self.root, self.recipe, self.encoders, self.head = root, recipe, encoders, head
        self.regression = recipe.task.kind == "regression"
        #: class names (classification) or target names (regression), in the head's output order
        self.outputs = outputs
        self.classes = [] if self.regression else outputs
        #: ``none``, ``corpus`` or ``speaker``: how training z-scored the features (then predict needs enrolment)
        self.normalize = recipe.normalize
        self._training_stats = training_stats
        self._transcriber = None
        self._memo: OrderedDict = OrderedDict()  # file key -> (features per encoder, transcript, warning)
        self._memo_bytes = 0

    @classmethod
    def load(cls, path: str | Path, verify: bool = True, trust_remote_code: bool = False,
             device: str | None = None) -> Bundle:
        """Check the bundle (see :func:`check_files`), then load its head and encoders.

        Nothing about the training data is looked at. A recipe asking for ``trust_remote_code`` is refused
        unless ``trust_remote_code`` is passed here; model folders must lie inside the bundle; each encoder's
        model identity (weights digest) must be the one recorded at export. ``device`` (cpu, cuda, cuda:N, mps,
        auto): where every part with a device option runs; by default where it was trained if this machine has
        that device, else the CPU (see :mod:`fusionkit.bundle.placement`).
        """
        root = Path(path)
        recipe, head, outputs, encoders = cls.read_parts(root, verify, trust_remote_code, device)
        check_identities(root, encoders)
        return cls.assemble(root, recipe, encoders, head, outputs)

    @staticmethod
    def read_parts(root: Path, verify: bool = True, trust_remote_code: bool = False,
                   device: str | None = None) -> tuple:
        """(recipe, head, outputs, encoders not yet loaded) of a checked bundle folder: the steps every runtime
        shares (file checks, the remote-code rule, models inside the bundle, the head, the output names, the
        device each part runs on)."""
        from fusionkit.bundle.placement import place_head, place_recipe
        from fusionkit.pipeline.encode import build_encoders
        from fusionkit.recipe import plugin_options
        from fusionkit.sdk.heads import load_head

        check_files(root, read_manifest(root), verify)
        raw = bundle_recipe_raw(root)
        asked = remote_code_requests(raw)
        if asked and not trust_remote_code:
            raise BundleError(f"{root}: its recipe asks for trust_remote_code ({', '.join(asked)}), which runs code "
                              "shipped with a model; if you trust where the bundle came from, pass "
                              "--trust-remote-code (fusionkit.load(path, trust_remote_code=True))")
        recipe = typed_recipe(root, localized_models(root, raw))
        place_recipe(recipe, device)
        fusion_cls, fusion_options = plugin_options("fusion", recipe.fusion.plugin, recipe.fusion.options)
        head = load_head(fusion_cls, root / "head", fusion_options, recipe.run_seeds()[0])
        place_head(head, device)
        labels = json.loads((root / "labels.json").read_text())
        outputs = labels["targets"] if recipe.task.kind == "regression" else labels["classes"]
        return recipe, head, outputs, build_encoders(recipe)

    @classmethod
    def assemble(cls, root: Path, recipe, encoders: dict, head, outputs: list[str]) -> Bundle:
        """A bundle from its parts: the training statistics a normalising bundle needs, every encoder loaded and,
        where it can (``for_prediction``), set to compute only the features its recipe selects."""
        stats = read_training_stats(root, list(encoders)) if recipe.normalize != "none" else None
        for enc in encoders.values():
            enc.load()
            narrow = getattr(enc, "for_prediction", None)
            if callable(narrow):
                narrow()
        return cls(root, recipe, encoders, head, outputs, stats)

    @property
    def uses_text(self) -> bool:
        return any(e.modality == "text" for e in self.encoders.values())

    def _texts(self, signals: list, sr: int) -> list[str]:
        if self.recipe.text.source != "asr":
            raise ValueError("this bundle's text encoders need transcripts, and its recipe has no ASR "
                             "(text: {source: asr}); it cannot label raw audio")
        from fusionkit.audio import to_mono_resampled
        from fusionkit.pipeline.transcripts import SAMPLE_RATE, make_transcriber

        if self._transcriber is None:
            self._transcriber = make_transcriber(self.recipe.text)
        return [self._transcriber(to_mono_resampled(x, sr, SAMPLE_RATE)) for x in signals]

    @staticmethod
    def _signal(source, sampling_rate: int | None):
        """(mono signal, its rate): a file read once at its own rate, or an array at ``sampling_rate`` (required;
        integer PCM is scaled to [-1, 1])."""
        from fusionkit.audio import signal_rate, to_mono_resampled
        from fusionkit.pipeline.featurize import load_native

        if isinstance(source, (str, Path)):
            return load_native(source)
        sr = signal_rate(sampling_rate)
        return to_mono_resampled(source, sr, sr), sr

    def _featurize(self, signals: list, sr: int) -> tuple[dict[str, list], list[str] | None]:
        """Each encoder's :class:`~fusionkit.pipeline.featurize.Featurized` outcomes, every signal at its own rate."""
        from fusionkit.pipeline.featurize import featurize

        texts = self._texts(signals, sr) if self.uses_text else None
        outcomes = {}
        for name, enc in self.encoders.items():
            inputs = texts if enc.modality == "text" else signals
            outcomes[name] = list(featurize(enc, inputs, sr))
        return outcomes, texts

    def _outcomes(self, signals: list, sr: int) -> tuple[list[dict | None], list[str] | None, dict]:
        """(per signal: encoder name -> features, None where an encoder failed; transcripts; signal index -> the
        failed outcome)."""
        outcomes, texts = self._featurize(signals, sr)
        failed = {}
        for outs in outcomes.values():
            for out in outs:
                if not out.ok:
                    failed.setdefault(out.index, out)
        feats = [None if i in failed else {name: outcomes[name][i].features for name in self.encoders}
                 for i in range(len(signals))]
        return feats, texts, failed

    def _head_scores(self, feats: list[dict], norm: Normaliser | None) -> list[dict]:
        """The head's scores (class -> probability, or target -> value) for clips' features, normalised by ``norm``
        when the bundle normalises."""
        X = {}
        for name, enc in self.encoders.items():
            rows = [f[name] for f in feats]
            if enc.is_sequence():
                X[name] = rows
            else:
                X[name] = norm.apply(name, rows) if norm is not None else np.stack(rows).astype(np.float32)
        from fusionkit.sdk.heads import checked_outputs

        P = self.head.predict(X) if self.regression else self.head.predict_proba(X)
        name = getattr(self.head, "name", None) or type(self.head).__name__
        P = checked_outputs(name, P, len(feats), len(self.outputs), probabilities=not self.regression)
        return [dict(zip(self.outputs, map(float, p))) for p in P]

    def _scores(self, signals: list, sr: int, norm: Normaliser | None = None
                ) -> tuple[list[dict | None], list[str] | None, dict]:
        """(scores per signal, None where it failed; transcripts; signal index -> the failed outcome)."""
        feats, texts, failed = self._outcomes(signals, sr)
        ok = [i for i, f in enumerate(feats) if f is not None]
        scores: list[dict | None] = [None] * len(signals)
        for i, score in zip(ok, self._head_scores([feats[i] for i in ok], norm) if ok else []):
            scores[i] = score
        return scores, texts, failed

    # ------------------------------------------------------------ normalisation from enrolment audio

    def enrolment_hint(self, serve: bool = False) -> str:
        """What to pass to a normalised bundle, in one line (``serve``: what ``fusionkit serve`` takes)."""
        who = "speaker" if self.normalize == "speaker" else "source (corpus, channel, recording set-up)"
        why = (f"{self.root}: this bundle was trained with normalize: {self.normalize} (each {self.normalize}'s "
               f"features z-scored with its own statistics), so it needs unlabelled audio of the same {who} to "
               "normalise with")
        if serve:
            return (f"{why}: start serve with --enrol PATH (a folder or files); serve labels each upload on its "
                    "own, so it cannot take its statistics from the files being labelled")
        return (f"{why}: pass --enrol PATH (a folder or files), or --enrol-self [--group-by REGEX] to use "
                "the files being labelled (Python: bundle.predict(x, enrol=bundle.enrol(paths)))")

    def enrol(self, sources, sampling_rate: int | None = None, batch: int = 32, warn: bool = True) -> Normaliser:
        """A :class:`Normaliser` from unlabelled enrolment audio of one speaker or source: files or signal arrays
        (at ``sampling_rate``), featurized as :meth:`predict` featurizes, each encoder's features' mean and std.

        Inputs that cannot be encoded, or are silent, are passed over: listed in ``Normaliser.skipped`` with the
        reason (and each logged as a warning unless ``warn`` is False, for a caller that lists them itself);
        fewer than ``MIN_ENROL_CLIPS`` usable ones raise :class:`EnrolmentError` (its ``skipped`` lists them)."""
        if self.normalize == "none":
            raise EnrolmentError(f"{self.root}: this bundle was trained with normalize: none; it takes no enrolment")
        from fusionkit.pipeline.data import group_stats

        sources = [sources] if isinstance(sources, (str, Path)) else list(sources)
        feats, skipped = self._enrol_features(sources, sampling_rate, batch, warn)
        if len(feats) < MIN_ENROL_CLIPS:
            why = f" ({next(iter(skipped.items()))[0]}: {next(iter(skipped.values()))})" if skipped else ""
            raise EnrolmentError(f"enrolment: {len(feats)} usable clip(s) of {len(sources)}; at least "
                                 f"{MIN_ENROL_CLIPS} are needed for a mean and a spread{why}", skipped)
        if len(feats) < FEW_ENROL_CLIPS:
            log.warning("enrolment: statistics of only %d clips are noisy; %d or more are better", len(feats),
                        FEW_ENROL_CLIPS)
        stats = {name: group_stats([f[name] for f in feats]) for name in self.encoders}
        return Normaliser(self.normalize, stats, len(feats), "enrolment", skipped)

    def training_normaliser(self) -> Normaliser:
        """The training corpus's statistics stored in the bundle. Right only for audio from that corpus's own
        source: for another source this is the raw shift normalisation exists to remove (and for ``normalize:
        speaker`` it is the whole corpus's statistics, not one speaker's)."""
        if self._training_stats is None:
            raise EnrolmentError(f"{self.root}: this bundle was trained with normalize: none; it holds no statistics")
        stats, clips = self._training_stats
        return Normaliser(self.normalize, dict(stats), clips, "training corpus")

    def _enrol_features(self, sources: list, sampling_rate: int | None, batch: int, warn: bool = True
                        ) -> tuple[list[dict], dict[str, str]]:
        """Features of every enrolment input that every encoder could take and that is not silent, and the others
        with their reason (each logged as a warning when ``warn``)."""
        feats: list[dict] = []
        skipped: dict[str, str] = {}
        for start in range(0, len(sources), batch):
            part = sources[start:start + batch]
            for i, (got, error) in enumerate(self._whole_files(part, sampling_rate)):
                label = str(part[i]) if isinstance(part[i], (str, Path)) else f"signal {start + i}"
                if got is None or (got[2] is not None and got[2].silent):
                    reason = str(error) if got is None else f"{got[2]}: would bias the statistics"
                    skipped[label] = reason
                    if warn:
                        log.warning("enrolment file passed over: %s: %s", label, reason)
                else:
                    feats.append(got[0])
        return feats, skipped

    def _whole_files(self, sources: list, sampling_rate: int | None) -> list[tuple[tuple | None, Exception | None]]:
        """Per source: ((features per encoder, transcript, warning), None), or (None, the error naming the reason);
        the warning says why the audio is unlikely to hold speech (:func:`fusionkit.audio.signal_warning`). Files
        already seen (same path, size and modification time) come from the memo, new ones are decoded, grouped by
        rate, and kept."""
        from fusionkit.audio import AudioError, signal_warning
        from fusionkit.pipeline.featurize import EncodeError

        out: list = [None] * len(sources)
        by_rate: dict[int, list[tuple[int, np.ndarray]]] = {}
        warnings: dict[int, str | None] = {}
        for i, src in enumerate(sources):
            key = _file_key(src)
            if key is not None and key in self._memo:
                self._memo.move_to_end(key)
                out[i] = (self._memo[key], None)
                continue
            try:
                x, sr = self._signal(src, sampling_rate)
            except (AudioError, ValueError, OSError) as exc:
                out[i] = (None, exc)
                continue
            by_rate.setdefault(sr, []).append((i, x))
            warnings[i] = signal_warning(x, sr)
        for sr, items in by_rate.items():
            feats, texts, failed = self._outcomes([x for _, x in items], sr)
            for k, (i, _) in enumerate(items):
                if feats[k] is None:
                    try:
                        failed[k].unwrap()
                    except (AudioError, EncodeError) as exc:
                        out[i] = (None, exc)
                    continue
                out[i] = ((feats[k], texts[k] if texts else None, warnings[i]), None)
                self._remember(_file_key(sources[i]), out[i][0])
        return out

    def _remember(self, key: tuple | None, value: tuple) -> None:
        """Keep a file's features for a later whole-file prediction, within ``MEMO_BYTES``."""
        if key is None:
            return
        size = sum(np.asarray(v).nbytes for v in value[0].values())
        self._memo[key] = value
        self._memo_bytes += size
        while self._memo_bytes > MEMO_BYTES and self._memo:
            _, old = self._memo.popitem(last=False)
            self._memo_bytes -= sum(np.asarray(v).nbytes for v in old[0].values())

    def _normaliser(self, enrol, sampling_rate: int | None) -> Normaliser | None:
        """The normaliser ``predict`` uses: ``enrol`` as given (a Normaliser, or enrolment files/arrays), or None
        for a bundle that does not normalise; :class:`EnrolmentError` when the two do not go together."""
        if enrol is None:
            if self.normalize != "none":
                raise EnrolmentError(self.enrolment_hint())
            return None
        if self.normalize == "none":
            raise EnrolmentError(f"{self.root}: this bundle was trained with normalize: none; it takes no enrolment")
        return enrol if isinstance(enrol, Normaliser) else self.enrol(enrol, sampling_rate)

    def features(self, source, sampling_rate: int | None = None) -> dict[str, object]:
        """Each encoder's features of a file or signal array, computed as :meth:`predict` computes them."""
        x, sr = self._signal(source, sampling_rate)
        outcomes, _ = self._featurize([x], sr)
        return {name: outs[0].unwrap(name) for name, outs in outcomes.items()}

    def predict_signals(self, signals: list, sr: int | None = None, enrol=None) -> tuple[list[dict], list[str] | None]:
        """Scores for mono signals at ``sr`` Hz (required: a positive whole number): one dict per signal, class ->
        probability (or target -> value). Each encoder gets the signals resampled to its own rate; a signal
        that cannot be encoded raises :class:`~fusionkit.audio.AudioError` or ``EncodeError`` naming it.
        ``enrol``: as in :meth:`predict`."""
        from fusionkit.audio import signal_rate

        norm = self._normaliser(enrol, sr)
        scores, texts, failed = self._scores(signals, signal_rate(sr), norm)
        for i, out in sorted(failed.items())[:1]:
            out.unwrap(f"signal {i}")
        return scores, texts

    def predict(self, source, sampling_rate: int | None = None, window: float | None = None,
                hop: float | None = None, vad: bool = False, smooth: int = 1, batch: int = 16, enrol=None):
        """Label a file path or a signal array.

        Without ``window``/``vad``: ``{"label", "probabilities"}`` for the whole recording
        (``{"values"}`` for a regression bundle). With them: a list of :class:`Segment`.
        A file is read once at its own rate; an array needs its ``sampling_rate`` (a positive whole number of
        Hz; integer PCM such as int16 is scaled to [-1, 1]). Every encoder gets the signal resampled to its own rate.

        A bundle trained with ``normalize: corpus | speaker`` needs ``enrol``: a :class:`Normaliser` from
        :meth:`enrol`, or the enrolment files/arrays themselves (arrays at ``sampling_rate``); without it
        :class:`EnrolmentError` says what to pass.
        """
        if window is None and not vad and (hop is not None or smooth != 1):
            raise ValueError(f"{'hop' if hop is not None else 'smooth'} applies to timelines: give window (or vad)")
        norm = self._normaliser(enrol, sampling_rate)
        if window is None and not vad:
            got, error = self._whole_files([source], sampling_rate)[0]
            if error is not None:
                raise error
            feats, text, warning = got
            out = _result(self._head_scores([feats], norm)[0], self.regression)
            if text:
                out["text"] = text
            if warning is not None:
                out["warning"] = str(warning)
            return out
        return list(self.timeline(source, sampling_rate, window, hop, vad, smooth, batch, enrol=norm))

    def timeline(self, source, sampling_rate=None, window=None, hop=None, vad=False, smooth=1,
                 batch=16, enrol=None) -> Iterator[Segment]:
        """Windows of a file (read block by block at its own rate) or array, labelled ``batch`` at a time;
        a window that cannot be encoded is left out with a warning. ``enrol``: as in :meth:`predict` (windows are
        normalised with the enrolment clips' statistics)."""
        from fusionkit.audio import signal_rate, signal_warning
        from fusionkit.pipeline.featurize import DEFAULT_SAMPLING_RATE, native_rate
        from fusionkit.windows import iter_windows, smooth_probabilities, speech_regions, window_problem

        problem = window_problem(window, hop, smooth)
        if problem:
            raise ValueError(problem)
        norm = self._normaliser(enrol, sampling_rate)
        window = window or 4.0
        hop = hop or window
        is_file = isinstance(source, (str, Path))
        # an unreadable file's header gives no rate: iter_windows then raises the reason
        rate = (native_rate(source) or DEFAULT_SAMPLING_RATE) if is_file else signal_rate(sampling_rate)
        regions = speech_regions(source, sampling_rate) if vad else None
        spans = iter_windows(source, sampling_rate, window, hop, regions=regions, target_sr=rate)
        segments: list[Segment] = []
        chunk: list = []

        def flush():
            probs, texts, failed = self._scores([x for _, _, x in chunk], rate, norm)
            for i, ((s, e, _), p) in enumerate(zip(chunk, probs)):
                if i in failed:
                    log.warning("%s: window %.2f-%.2f s skipped: %s", source if is_file else "signal", s, e,
                                failed[i].reason)
                    continue
                r = _result(p, self.regression)
                warning = signal_warning(chunk[i][2], rate)
                segments.append(Segment(round(s, 3), round(e, 3), r.get("label"), r.get("probabilities"),
                                        texts[i] if texts else None, r.get("values"),
                                        str(warning) if warning else None))
            chunk.clear()

        for span in spans:
            chunk.append(span)
            if len(chunk) >= batch:
                flush()
        if chunk:
            flush()
        if smooth > 1:
            segments = smooth_probabilities(segments, smooth, self.outputs)
        yield from segments

