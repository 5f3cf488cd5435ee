"""featurize: files, signals at any rate and texts; batched, at the encoder's own rate, failures isolated."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from fusionkit.audio import AudioError, to_mono_resampled
from fusionkit.pipeline.featurize import EncodeError, featurize
from fusionkit.sdk.base import Encoder, Options


class Probe(Encoder):
    """Returns [len(x), peak frequency (Hz)] at 22.05 kHz; records batch sizes; fails on signals of ``fail_len``."""

    name = "probe"
    Options = Options
    sample_rate = 22050

    def __init__(self, options=None, batch=3, fail_len=None, wrong_count=False):
        super().__init__(options or Options())
        self.batch, self.fail_len, self.wrong_count, self.batches = batch, fail_len, wrong_count, []

    def batch_size(self) -> int:
        return self.batch

    def encode_batch(self, inputs):
        self.batches.append(len(inputs))
        if self.fail_len is not None and any(len(x) == self.fail_len for x in inputs):
            raise RuntimeError("cannot take this one")
        out = []
        for x in inputs:
            peak = np.argmax(np.abs(np.fft.rfft(x))) * self.sample_rate / len(x)
            out.append({"features": np.array([len(x), peak], dtype=np.float64)})
        return out[:-1] if self.wrong_count else out


class Words(Encoder):
    name = "words"
    modality = "text"
    Options = Options

    def encode_batch(self, inputs):
        return [{"features": np.array([len(t.split())], dtype=np.float32)} for t in inputs]


def tone(freq: float, sr: int, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_files_and_signals_reach_the_encoder_at_its_own_rate(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, tone(9500.0, 44100), 44100)
    enc = Probe()
    (from_file,) = featurize(enc, [path])
    (from_signal,) = featurize(enc, [tone(9500.0, 44100)], 44100)
    stereo_48k = np.stack([tone(9500.0, 48000)] * 2, axis=1)
    (from_stereo,) = featurize(enc, [stereo_48k], 48000)
    for out in (from_file, from_signal, from_stereo):
        assert out.ok and out.features[0] == pytest.approx(0.5 * 22050, abs=2)
        assert out.features[1] == pytest.approx(9500.0, abs=5)  # only representable at 22.05 kHz, not 16 kHz
    np.testing.assert_allclose(from_file.features, from_signal.features, rtol=1e-6)
    # the same tone sent through 16 kHz first has lost it
    (via_16k,) = featurize(enc, [to_mono_resampled(tone(9500.0, 44100), 44100, 16000)], 16000)
    assert abs(via_16k.features[1] - 9500.0) > 100


def test_batches_follow_batch_size_and_one_bad_input_costs_only_itself(tmp_path):
    enc = Probe(batch=3, fail_len=int(0.25 * 22050))
    signals = [tone(440.0, 22050, s) for s in (0.5, 0.25, 0.5, 0.5, 0.5)]
    signals.insert(2, np.array([0.0, np.nan, 0.0], dtype=np.float32))
    outs = list(featurize(enc, signals, 22050))
    assert [o.index for o in outs] == list(range(6))
    assert [o.ok for o in outs] == [True, False, False, True, True, True]
    assert outs[1].reason == "probe failed: RuntimeError: cannot take this one"
    assert outs[2].reason == "samples are not finite numbers"
    # batch [0, 1] (2 was not decodable) failed and was retried one by one; then [3, 4, 5] in one go
    assert enc.batches == [2, 1, 1, 3]
    with pytest.raises(EncodeError, match="^signal: probe failed"):
        outs[1].unwrap("signal")
    with pytest.raises(AudioError, match="not finite"):
        outs[2].unwrap()


def test_an_encoder_that_drops_outputs_is_caught():
    outs = list(featurize(Probe(batch=2, wrong_count=True), [tone(440.0, 22050)] * 2, 22050))
    assert all(not o.ok for o in outs)  # the batch is retried clip by clip: each single call returns nothing
    assert "encode_batch returned 0 results for 1 inputs" in outs[0].reason


class DropsInBatches(Probe):
    """A plugin bug: a batch of more than one signal loses its last result; one signal alone is fine."""

    def encode_batch(self, inputs):
        out = super().encode_batch(inputs)
        return out[:-1] if len(inputs) > 1 else out


def test_a_failing_batch_is_told_once_then_retried_one_by_one(caplog):
    enc = DropsInBatches(batch=2)
    with caplog.at_level("WARNING", logger="fusionkit"):
        outs = list(featurize(enc, [tone(440.0, 22050)] * 5, 22050))
    assert all(o.ok for o in outs) and enc.batches == [2, 1, 1, 2, 1, 1, 1]  # the retry still saves every input
    told = [r.getMessage() for r in caplog.records if "retried one by one" in r.getMessage()]
    assert told == ["probe: a batch of 2 failed (ValueError: encode_batch returned 1 results for 2 inputs); "
                    "its inputs are retried one by one"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="fusionkit"):
        list(featurize(Probe(batch=3, fail_len=5), [np.zeros(5, dtype=np.float32)] * 3, 22050))
    assert [r.getMessage() for r in caplog.records] == [
        "probe: a batch of 3 failed (RuntimeError: cannot take this one); its inputs are retried one by one"]


def test_texts_and_wrong_inputs():
    outs = list(featurize(Words(Options()), ["one two", "three"]))
    assert [float(o.features[0]) for o in outs] == pytest.approx([2.0, 1.0])
    with pytest.raises(TypeError, match="words: a text encoder takes strings"):
        list(featurize(Words(Options()), [np.zeros(10)]))
    with pytest.raises(ValueError, match="probe: signal arrays need their sampling_rate"):
        list(featurize(Probe(), [np.zeros(10, dtype=np.float32)]))
    with pytest.raises(ValueError, match="sampling_rate: expected a positive integer"):
        list(featurize(Probe(), [np.zeros(10, dtype=np.float32)], 0))


def test_process_methods_share_featurize_and_name_the_bad_file(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, tone(3000.0, 44100), 44100)
    enc = Probe(batch=2)
    np.testing.assert_allclose(enc.process_file(good), enc.process_signal(tone(3000.0, 44100), 44100), rtol=1e-6)
    missing = tmp_path / "missing.wav"
    with pytest.raises(AudioError, match=r"missing\.wav: file not found"):
        enc.process_files([good, missing])
    assert len(enc.process_files([good, good, good])) == 3
    with pytest.raises(EncodeError, match="probe failed"):
        Probe(fail_len=100).process_signal(np.ones(100, dtype=np.float32) * 0.1, 22050)
