"""Speech synthesis for SynthGRID: espeak-ng through ctypes, with phoneme and word timing.

espeak-ng runs in synchronous mode: ``espeak_Synth`` calls our callback with blocks of
16-bit samples and a list of events (word starts, phoneme starts, end of sentence)
whose ``audio_position`` is in milliseconds from the start of the message and whose
``sample`` is the running sample count of the synthesis.  We keep the sample-accurate
positions.  One :class:`Espeak` per process (the library is not reentrant).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import pickle
from dataclasses import dataclass, field

import numpy as np

AUDIO_OUTPUT_SYNCHRONOUS = 2
INIT_PHONEME_EVENTS = 0x0001
INIT_DONT_EXIT = 0x8000
POS_CHARACTER = 1
CHARS_AUTO = 0
SSML = 0x10
PHONEMES_INPUT = 0x100  # espeakPHONEMES: allow [[...]] phoneme input

espeakRATE, espeakVOLUME, espeakPITCH, espeakRANGE = 1, 2, 3, 4

EV_LIST_TERMINATED, EV_WORD, EV_SENTENCE, EV_MARK, EV_PLAY, EV_END, EV_MSG_TERMINATED, \
    EV_PHONEME, EV_SAMPLERATE = range(9)


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class EspeakEvent(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(EspeakEvent))

# How a word is written for espeak.  A lone letter is read as its name, except "a",
# which espeak takes for the article; "eigh" gives the letter name /eI/.
SPOKEN_FORM = {"a": "eigh"}


@dataclass
class Synthesis:
    audio: np.ndarray                      # int16 mono
    sample_rate: int
    phonemes: list = field(default_factory=list)  # [(name, start_s, end_s)]
    words: list = field(default_factory=list)     # [(word, start_s, end_s)]

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate

    def __iter__(self):
        """Unpacks as (audio, sample_rate, phonemes, words)."""
        return iter((self.audio, self.sample_rate, self.phonemes, self.words))


def load_library() -> ctypes.CDLL:
    """libespeak-ng, loaded (RuntimeError with what to install when it cannot be)."""
    names = ["libespeak-ng.so.1", "libespeak-ng.so", ctypes.util.find_library("espeak-ng")]
    for n in names:
        if not n:
            continue
        try:
            return ctypes.CDLL(n)
        except OSError:
            continue
    raise RuntimeError("espeak-ng library (libespeak-ng.so.1) not found: apt-get install espeak-ng")


class Espeak:
    """A process-wide espeak-ng engine in synchronous mode."""

    _instance: "Espeak | None" = None

    @classmethod
    def get(cls) -> "Espeak":
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def __init__(self):
        lib = load_library()
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        # espeak-ng (1.51) opens a PulseAudio client while initialising, even in synchronous mode
        # where it never plays anything, and libpulse then writes runtime files to ~/.config/pulse
        # and $TMPDIR: a stage must write nothing outside results/, so no server is named meanwhile
        saved = os.environ.get("PULSE_SERVER")
        os.environ["PULSE_SERVER"] = "none"
        try:
            sr = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 200, None,
                                       INIT_PHONEME_EVENTS | INIT_DONT_EXIT)
        finally:
            if saved is None:
                os.environ.pop("PULSE_SERVER", None)
            else:
                os.environ["PULSE_SERVER"] = saved
        if sr <= 0:
            raise RuntimeError(f"espeak_Initialize failed ({sr}): apt-get install espeak-ng espeak-ng-data")
        self.lib = lib
        self.sample_rate = int(sr)
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple] = []
        self._cb = _CALLBACK(self._callback)  # keep a reference
        lib.espeak_SetSynthCallback(self._cb)

    def _callback(self, wav, numsamples, events):
        if numsamples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        i = 0
        while True:
            ev = events[i]
            if ev.type == EV_LIST_TERMINATED:
                break
            if ev.type == EV_PHONEME:
                name = bytes(ev.id.string).split(b"\0", 1)[0].decode("latin-1")
            else:
                name = None
            self._events.append((ev.type, ev.text_position, ev.length, ev.audio_position,
                                 ev.sample, name))
            i += 1
        return 0

    def set_voice(self, voice: str) -> None:
        """Select a voice; "en-gb+f2" falls back to "en+f2" when the region has no own name."""
        base, plus, variant = voice.partition("+")
        cands = [voice]
        parts = base.split("-")
        while len(parts) > 1:
            parts = parts[:-1]
            cands.append("-".join(parts) + plus + variant)
        for c in cands:
            if self.lib.espeak_SetVoiceByName(c.encode()) == 0:
                return
        raise RuntimeError(f"espeak-ng has no voice {voice!r} (see espeak-ng --voices)")

    def synth_raw(self, text: str, voice: str, pitch: int, range_: int, rate: int) -> tuple[np.ndarray, list]:
        """Synthesize text; returns (int16 audio, [(type, text_pos, length, ms, sample, name)])."""
        lib = self.lib
        self.set_voice(voice)
        for par, val in ((espeakRATE, rate), (espeakPITCH, pitch), (espeakRANGE, range_),
                         (espeakVOLUME, 100)):
            lib.espeak_SetParameter(par, int(val), 0)
        self._chunks, self._events = [], []
        buf = ctypes.create_string_buffer(text.encode("utf-8"))
        err = lib.espeak_Synth(buf, len(buf), 0, POS_CHARACTER, 0, CHARS_AUTO, None, None)
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed with {err}")
        lib.espeak_Synchronize()
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return audio.astype(np.int16), list(self._events)


def _sentence_text(words: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """Text spoken for a GRID sentence and the character span of each word (1-based)."""
    spoken = [SPOKEN_FORM.get(w, w) for w in words]
    spans, pos = [], 1
    for s in spoken:
        spans.append((pos, pos + len(s)))
        pos += len(s) + 1
    return " ".join(spoken), spans


def synthesize(words, voice: str, pitch: int, range_: int, rate: int, isolate: bool = True) -> Synthesis:
    """Speak a list of words; returns audio plus phoneme and word timings (seconds).

    Phonemes are espeak-ng mnemonics; each ends where the next begins and the last at
    the END event (or end of sound).  Pauses espeak inserts appear as phoneme "_:" etc.

    espeak-ng keeps synthesis state from one message to the next (pitch flutter phase,
    wave phase, ...), so the same text sounds slightly different depending on what was
    spoken before.  With ``isolate`` (default, POSIX) the engine is initialised once in
    this process but never used here: every message is spoken in a forked child that
    starts from that pristine state, so the result depends only on the arguments.
    """
    if isinstance(words, str):
        words = words.split()
    words = [str(w) for w in words]
    Espeak.get()
    if isolate and hasattr(os, "fork"):
        return _in_child(_synthesize_here, words, voice, pitch, range_, rate)
    return _synthesize_here(words, voice, pitch, range_, rate)


def _in_child(fn, *args):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: run, send the pickled result, leave without any cleanup
        code = 0
        try:
            os.close(r)
            try:
                data = pickle.dumps(("ok", fn(*args)), protocol=pickle.HIGHEST_PROTOCOL)
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                data = pickle.dumps(("err", f"{type(e).__name__}: {e}"))
            with os.fdopen(w, "wb") as f:
                f.write(data)
        except BaseException:  # noqa: BLE001
            code = 1
        os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        raise RuntimeError(f"espeak-ng synthesis child failed (status {status})")
    kind, val = pickle.loads(data)
    if kind != "ok":
        raise RuntimeError(val)
    return val


def _synthesize_here(words, voice, pitch, range_, rate) -> Synthesis:
    eng = Espeak.get()
    text, spans = _sentence_text(words)
    audio, events = eng.synth_raw(text, voice, pitch, range_, rate)
    sr = eng.sample_rate
    n = len(audio)
    end_sample = None
    ph_starts, word_starts = [], []
    for typ, tpos, _length, _apos, sample, name in events:
        if typ == EV_PHONEME:
            ph_starts.append((name, sample))
        elif typ == EV_WORD:
            word_starts.append((tpos, sample))
        elif typ == EV_END and end_sample is None:
            end_sample = sample
    if end_sample is None or end_sample <= 0:
        end_sample = n
    end_sample = min(end_sample, n)
    phonemes = []
    for i, (name, s) in enumerate(ph_starts):
        e = ph_starts[i + 1][1] if i + 1 < len(ph_starts) else max(end_sample, s)
        phonemes.append((name, s / sr, min(e, n) / sr))
    # map word events back onto the input words by text position (fall back to order)
    starts: list = [None] * len(words)
    for tpos, s in word_starts:
        for k, (a, b) in enumerate(spans):
            if a <= tpos < b and starts[k] is None:
                starts[k] = s
                break
    if any(s is None for s in starts) or any(starts[k] > starts[k + 1] for k in range(len(words) - 1)):
        ws = [s for _, s in word_starts]
        if len(ws) < len(words):
            raise RuntimeError(f"espeak gave {len(ws)} word events for {len(words)} words: {text!r}")
        starts = ws[:len(words)]
    # a word starts at its first phoneme (espeak's word event can precede it by a pause)
    ph_s = [p[1] for p in phonemes]
    bounds = [w / sr for w in starts] + [end_sample / sr]
    wstart = []
    for k in range(len(words)):
        inside = [t for t, p in zip(ph_s, phonemes) if bounds[k] - 1e-6 <= t < bounds[k + 1]
                  and not p[0].startswith("_")]
        wstart.append(inside[0] if inside else bounds[k])
    speech = [p for p in phonemes if not p[0].startswith("_")]
    last_end = speech[-1][2] if speech else end_sample / sr
    wlist = []
    for k, w in enumerate(words):
        e = wstart[k + 1] if k + 1 < len(words) else max(last_end, wstart[k])
        wlist.append((w, wstart[k], e))
    return Synthesis(audio=audio, sample_rate=sr, phonemes=phonemes, words=wlist)
