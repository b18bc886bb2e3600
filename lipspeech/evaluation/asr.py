"""Speech recognisers for the WER/CER of synthesised speech.

pocketsphinx (default, offline)
    pocketsphinx 5 with its bundled US-English acoustic model and CMU dictionary.
    With a slot grammar (:mod:`lipspeech.evaluation.grammar`) it decodes a JSGF
    finite-state grammar, otherwise the bundled general language model. Words
    of the grammar the dictionary does not know cannot be recognised: they are
    dropped from the grammar and listed in :attr:`PocketSphinxASR.missing_words`
    (and in the stage's summary).

    Determinism: one :class:`pocketsphinx.Decoder` per process, reused; its
    feature extraction keeps state from one utterance to the next (noise
    estimate, cepstral mean), so the same audio could be transcribed differently
    depending on what came before. ``reinit_feat()`` before every utterance
    resets that state (measured: transcripts then no longer depend on the order).

    Dither: pocketsphinx's front end breaks down on digital silence (exact zero
    samples, as espeak-ng and decoded MPEG audio have between words): on
    SynthGRID the grammar WER went from 0.08 to 0.20 without it. So white noise
    of standard deviation ``dither * peak|x|`` is added before recognition,
    drawn from a fixed seed: the transcript depends only on the audio.

faster-whisper (optional)
    ``evaluate.asr: whisper`` with ``evaluate.whisper_model`` the folder of a
    CTranslate2 Whisper model (nothing is downloaded). Greedy/beam decoding at
    temperature 0 only (no sampling fallback), no conditioning on previous text,
    so it is deterministic. Whisper has no grammar; ``evaluate.grammar`` is
    ignored. The package is an optional dependency (``pip install
    'lipspeech[whisper]'``); without it the stage stops with a one-line reason.

Both take 16 kHz mono float audio (the pipeline's rate); other rates are
resampled (:func:`resample`).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from lipspeech.core.settings import EvaluateConfig
from lipspeech.core.shards import StageError
from lipspeech.evaluation.grammar import SlotGrammar, choose_grammar
from lipspeech.evaluation.text import normalize_text

ASR_RATE = 16_000
DITHER_SEED = 20240101
_PRON_VARIANT = re.compile(r"\(\d+\)$")


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """(N,) float audio at ``rate_in`` -> (~N * rate_out / rate_in,) float32 (polyphase, scipy)."""
    if rate_in == rate_out:
        return np.asarray(audio, dtype=np.float32)
    from scipy.signal import resample_poly

    g = math.gcd(int(rate_in), int(rate_out))
    return resample_poly(np.asarray(audio, dtype=np.float64), rate_out // g, rate_in // g).astype(np.float32)


class ASR(Protocol):
    """A recogniser: 16 kHz audio in, words out."""

    description: str

    def transcribe(self, audio: np.ndarray, sample_rate: int = ASR_RATE) -> str:
        """(N,) float audio -> transcript (raw; the stage normalises)."""
        ...


class PocketSphinxASR:
    """pocketsphinx 5 with the bundled en-us model; a slot grammar or the default LM.

    Args:
        grammar: the slot grammar to decode with, or None for the language model.
        dither: noise std relative to the utterance's peak (see the module docstring); 0 = none.
    """

    def __init__(self, grammar: SlotGrammar | None = None, dither: float = 1e-3):
        import pocketsphinx

        self.dither = float(dither)
        self.decoder = pocketsphinx.Decoder(loglevel="FATAL")
        self.missing_words: list[str] = []
        self.grammar = grammar
        version = getattr(pocketsphinx, "__version__", None) or _dist_version("pocketsphinx")
        if grammar is not None:
            self.missing_words = [w for w in grammar.words if self.decoder.lookup_word(w) is None]
            self.grammar = grammar.without(self.missing_words) if self.missing_words else grammar
            self.decoder.add_jsgf_string("slots", self.grammar.jsgf())
            self.decoder.activate_search("slots")
            what = f"JSGF slot grammar from the corpus transcripts: {self.grammar.describe()}"
        else:
            what = "bundled en-us language model"
        missing = f"; not in the dictionary, unrecognisable: {' '.join(self.missing_words)}" if self.missing_words else ""
        self.description = f"pocketsphinx {version} (en-us acoustic model, CMUdict), {what}{missing}"

    def oov(self, texts: Sequence[str]) -> list[str]:
        """Words of the (normalised) texts that the dictionary does not have."""
        words = sorted({w for t in texts for w in normalize_text(t).split()})
        return [w for w in words if self.decoder.lookup_word(w) is None]

    def transcribe(self, audio: np.ndarray, sample_rate: int = ASR_RATE) -> str:
        x = resample(audio, sample_rate, ASR_RATE).astype(np.float64)
        if x.size == 0:
            return ""
        peak = float(np.max(np.abs(x)))
        if self.dither > 0 and peak > 0:
            x = x + self.dither * peak * np.random.default_rng(DITHER_SEED).standard_normal(x.size)
        pcm = np.clip(np.round(x * 32767.0), -32768, 32767).astype("<i2").tobytes()
        d = self.decoder
        d.reinit_feat()  # forget the previous utterance's noise/CMN state: order-independent results
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        hyp = d.hyp()
        if hyp is None:
            return ""
        words = [_PRON_VARIANT.sub("", w) for w in hyp.hypstr.split()]
        return " ".join(w for w in words if w and not w.startswith(("<", "[")))


class WhisperASR:
    """faster-whisper with a local CTranslate2 model folder (optional dependency).

    Args:
        model_path: folder of a converted Whisper model (``model.bin``, ``config.json``, ...).
        device: ``auto``, ``cpu`` or ``cuda``.
        compute_type: CTranslate2 compute type (``default``, ``int8``, ``float16``, ...).
        beam_size: beam width (1 = greedy).
        language: language code passed to Whisper (no language detection).
    """

    def __init__(self, model_path: str | Path | None, device: str, compute_type: str, beam_size: int, language: str):
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise StageError("evaluate.asr is whisper but faster-whisper is not installed "
                             "(pip install 'lipspeech[whisper]', or set evaluate.asr: pocketsphinx)") from None
        if not model_path:
            raise StageError("evaluate.asr is whisper: set evaluate.whisper_model to a local CTranslate2 model folder")
        path = Path(model_path)
        if not path.is_dir():
            raise StageError(f"evaluate.whisper_model {path}: no such folder (a converted faster-whisper model)")
        self.model = WhisperModel(str(path), device=device, compute_type=compute_type)
        self.beam_size, self.language = int(beam_size), language
        version = _dist_version("faster-whisper")
        self.description = (f"faster-whisper {version} ({path.name}, beam {self.beam_size}, temperature 0, "
                            f"language {language}), no grammar")

    def transcribe(self, audio: np.ndarray, sample_rate: int = ASR_RATE) -> str:
        x = resample(audio, sample_rate, ASR_RATE)
        segments, _ = self.model.transcribe(
            x, language=self.language, beam_size=self.beam_size, temperature=0.0,
            condition_on_previous_text=False, vad_filter=False,
        )
        return " ".join(s.text.strip() for s in segments)


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


def build_asr(cfg: Mapping[str, Any] | EvaluateConfig, transcripts: Sequence[str | None]
              ) -> tuple[ASR | None, dict[str, Any]]:
    """The recogniser the ``evaluate`` section asks for, and what to record about it.

    Args:
        cfg: the ``evaluate`` config section (a mapping or read).
        transcripts: every transcript of the manifest (all splits), for the grammar.

    Returns:
        (the recogniser or None for ``asr: none``, details for summary.json:
        ``description``, ``grammar``, ``missing_words``, ``oov_words``).
    """
    evaluate = EvaluateConfig.from_section(cfg)
    kind = evaluate.asr
    if kind == "none":
        return None, {"description": "none (evaluate.asr: none)"}
    if kind == "whisper":
        asr = WhisperASR(evaluate.whisper_model, evaluate.whisper_device, evaluate.whisper_compute_type,
                         evaluate.whisper_beam_size, evaluate.whisper_language)
        return asr, {"description": asr.description, "grammar": "not applicable (whisper)"}
    if kind != "pocketsphinx":
        raise StageError(f"evaluate.asr: unknown recogniser {kind!r}")
    texts = list(transcripts)
    try:
        grammar, why = choose_grammar(evaluate.grammar, texts)
    except ValueError as exc:
        raise StageError(f"evaluate.grammar {evaluate.grammar}: {exc}") from None
    ps = PocketSphinxASR(grammar, dither=evaluate.asr_dither)
    oov = ps.oov([t for t in texts if t])
    info = {"description": ps.description, "grammar": why, "missing_words": ps.missing_words,
            "n_oov_words": len(oov), "oov_words": oov[:50]}
    if ps.grammar is not None:
        info["grammar_slots"] = [" ".join(s) for s in ps.grammar.slots]
    return ps, info
