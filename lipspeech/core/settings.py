"""The validated config as typed objects: one frozen dataclass per object of the schema.

The schema (:mod:`lipspeech.core.config`) holds every key's default, type, range and meaning;
the classes here name its keys and their Python types, and nothing else: no defaults. Each
says where it sits in the schema (``SECTION``: a dotted path, ``[]`` for the items of a
list, ``#name`` for a definition) and is read from a mapping the schema has validated::

    cfg = load_config("config.yaml")
    train = TrainConfig.from_section(cfg["train"])       # train.max_steps, train.lr, ...
    settings = Settings.from_section(cfg)                # settings.mel.n_fft, ...

A key the mapping lacks, or one the class does not know, is a :class:`ConfigError` naming it (an optional key
with no default reads as None); section fields are read recursively. ``tests/test_settings.py`` checks each key.

``model.overrides``, an experiment's ``overrides``, ``streaming`` and ``train`` are partial (keys over a
preset or a section) and stay mappings; their complete configs are :class:`ModelConfig`, :class:`TrainConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Optional

from lipspeech.core.sections import Section


@dataclass(frozen=True)
class ModelConfig(Section):
    SECTION: ClassVar[str] = "#model_keys"

    frontend: str
    frontend_channels: list[int]
    frontend_downsample: int
    d_model: int
    enc_heads: int
    enc_layers: int
    enc_ffn: int
    enc_kernel: int
    n_units: int
    var_hidden: int
    var_kernel: int
    var_layers: int
    var_dropout: float
    pitch_bins: int
    pitch_min: float
    pitch_max: float
    energy_bins: int
    energy_min: float
    energy_max: float
    variance_loss: str
    pitch_voiced_only: bool
    n_speakers: int
    upsample: str
    dec_heads: int
    dec_layers: int
    dec_ffn: int
    dec_kernel: int
    dropout: float
    n_mels: int
    flow_blocks: int
    flow_hidden: int
    flow_kernel: int
    flow_dilation_rate: int
    flow_wn_layers: int
    flow_group_size: int
    flow_dropout: float
    flow_residual: bool
    flow_detach: bool
    temperature: float
    use_linguistic: bool
    use_pitch: bool
    use_energy: bool
    use_postnet: bool
    lambda_ling: float
    lambda_pitch: float
    lambda_energy: float
    lambda_flow: float
    streaming: bool
    stream_chunk_frames: int
    stream_lookahead_frames: int
    stream_decoder_lookahead_frames: int
    stream_left_context_frames: int
    stream_train_chunks: list[int]
    stream_restrictions: list[str]


@dataclass(frozen=True)
class HifiganConfig(Section):
    SECTION: ClassVar[str] = "#hifigan_keys"

    upsample_rates: list[int]
    upsample_kernels: list[int]
    upsample_initial_channel: int
    resblock: int
    resblock_kernels: list[int]
    resblock_dilations: list[list[int]]
    mpd_periods: list[int]
    mpd_channels: list[int]
    msd_channels: list[int]


@dataclass(frozen=True)
class Lrs3Config(Section):
    SECTION: ClassVar[str] = "corpus.lrs3"

    subset: str
    val_speakers: int
    val_list: Optional[str]


@dataclass(frozen=True)
class CorpusConfig(Section):
    SECTION: ClassVar[str] = "corpus"

    name: str
    kind: str
    root: Optional[str]
    audio_root: Optional[str]
    split: str
    split_lists: Optional[str]
    split_ratios: list[float]
    speakers: Optional[list[str]]
    lrs3: Lrs3Config


@dataclass(frozen=True)
class VoiceConfig(Section):
    SECTION: ClassVar[str] = "synth.voices[]"

    voice: str
    pitch: int
    range: int
    rate: int


@dataclass(frozen=True)
class JitterConfig(Section):
    SECTION: ClassVar[str] = "synth.jitter"

    pitch: int
    range: int
    rate: int


@dataclass(frozen=True)
class SynthConfig(Section):
    SECTION: ClassVar[str] = "synth"

    seed: int
    speakers: list[str]
    utterances_per_speaker: int
    faces: list[str]
    voices: list[VoiceConfig]
    jitter: JitterConfig
    frame_size: list[int]
    fps: float
    container: str
    silence: list[float]
    head_motion: float
    lighting: float


@dataclass(frozen=True)
class ManifestConfig(Section):
    SECTION: ClassVar[str] = "manifest"

    shards: int
    min_duration: float
    max_duration: float
    transcripts: str


@dataclass(frozen=True)
class DecodeConfig(Section):
    SECTION: ClassVar[str] = "decode"

    max_av_mismatch: float
    reject_damaged: bool


@dataclass(frozen=True)
class MelConfig(Section):
    SECTION: ClassVar[str] = "mel"

    n_fft: int
    win_length: int
    n_mels: int
    fmin: float
    fmax: float
    log_floor: float


@dataclass(frozen=True)
class MfccConfig(Section):
    SECTION: ClassVar[str] = "ssl.mfcc"

    n_mfcc: int
    n_mels: int
    deltas: int


@dataclass(frozen=True)
class SslConfig(Section):
    SECTION: ClassVar[str] = "ssl"

    source: str
    model: str
    layer: int
    device: str
    half: bool
    batch_seconds: float
    mfcc: MfccConfig


@dataclass(frozen=True)
class KmeansConfig(Section):
    SECTION: ClassVar[str] = "kmeans"

    k: int
    seed: int
    sample_frames: int
    niter: int
    init: str


@dataclass(frozen=True)
class UnitsAnalysisConfig(Section):
    SECTION: ClassVar[str] = "units_analysis"

    enabled: bool
    layers: list[int]
    k: list[int]
    split: str
    sample_frames: int
    max_utterances: int
    alignments: Optional[str]
    tier: str
    strip_stress: bool


@dataclass(frozen=True)
class ProsodyConfig(Section):
    SECTION: ClassVar[str] = "prosody"

    f0_method: str
    f0_floor: float
    f0_ceil: float
    energy: str


@dataclass(frozen=True)
class RoiConfig(Section):
    SECTION: ClassVar[str] = "roi"

    backend: str
    crop_size: int
    mouth_width_fraction: float
    smoothing: int
    keyframe_interval: int
    track_max_shift: float
    track_max_scale: float
    detect_max_side: int
    detect_upsample: int
    max_gap: int
    min_detection_rate: float
    max_length_mismatch: int
    contact_sheet: int


@dataclass(frozen=True)
class ModelSection(Section):
    SECTION: ClassVar[str] = "model"

    preset: str
    overrides: dict[str, Any]
    streaming: Optional[dict[str, Any]]


@dataclass(frozen=True)
class TrainConfig(Section):
    SECTION: ClassVar[str] = "train"

    seed: int
    device: str
    batch_size: int
    max_steps: int
    lr: float
    betas: list[float]
    eps: float
    weight_decay: float
    warmup_steps: int
    decay: str
    min_lr_ratio: float
    exp_decay_rate: float
    exp_decay_steps: int
    grad_clip: float
    bf16: bool
    deterministic: bool
    bucket: bool
    bucket_window: int
    drop_last: bool
    random_crop: bool
    hflip: bool
    num_workers: int
    reader_cache_mb: float
    val_every: int
    val_batch_size: int
    val_max_batches: int
    val_free_running: bool
    best_metric: str
    ckpt_every: int
    log_every: int
    max_nonfinite: int
    patience: int
    ema_decay: float
    time_mask_max_frames: int
    time_masks_per_second: float
    lead_in_max_frames: int
    snapshot_every: int
    tensorboard: bool


@dataclass(frozen=True)
class CurveConfig(Section):
    SECTION: ClassVar[str] = "curve"

    max_utterances: int
    seed: int
    temperature: Optional[float]
    temperatures: list[float]
    dnsmos: bool


@dataclass(frozen=True)
class ReportConfig(Section):
    SECTION: ClassVar[str] = "report"

    n_examples: int
    selection: str
    dpi: int


@dataclass(frozen=True)
class ExperimentConfig(Section):
    SECTION: ClassVar[str] = "experiments[]"

    name: str
    preset: Optional[str]
    overrides: dict[str, Any]
    streaming: Optional[dict[str, Any]]
    model_from: Optional[str]
    init_from: Optional[str]
    init_align: bool
    distill_from: Optional[str]
    distill_weight: float
    distill_mel_weight: float
    train: Optional[dict[str, Any]]
    weights: Optional[str]
    temperature: Optional[float]
    decode_chunk_frames: Optional[int]
    description: Optional[str]


@dataclass(frozen=True)
class EvaluateConfig(Section):
    SECTION: ClassVar[str] = "evaluate"

    metrics: list[str]
    bootstrap_resamples: int
    bootstrap_seed: int
    asr: str
    grammar: str
    asr_dither: float
    whisper_model: Optional[str]
    whisper_device: str
    whisper_compute_type: str
    whisper_beam_size: int
    whisper_language: str
    pesq: bool
    mcd_order: int
    f0_silence_db: float
    max_length_mismatch: int


@dataclass(frozen=True)
class GriffinLimConfig(Section):
    SECTION: ClassVar[str] = "vocoder.griffin_lim"

    n_iter: int
    momentum: float
    nnls_iter: int
    seed: int


@dataclass(frozen=True)
class VocoderTrainConfig(Section):
    SECTION: ClassVar[str] = "vocoder.train"

    seed: int
    device: str
    max_steps: int
    batch_size: int
    segment_frames: int
    lr: float
    betas: list[float]
    lr_decay: float
    lambda_mel: float
    lambda_fm: float
    val_every: int
    val_max_utterances: int
    ckpt_every: int
    log_every: int
    deterministic: bool
    tensorboard: bool


@dataclass(frozen=True)
class VocoderConfig(Section):
    SECTION: ClassVar[str] = "vocoder"

    kind: str
    checkpoint: Optional[str]
    preset: str
    device: str
    griffin_lim: GriffinLimConfig
    train: VocoderTrainConfig


@dataclass(frozen=True)
class Settings(Section):
    SECTION: ClassVar[str] = ""

    fail_fast: bool
    corpus: CorpusConfig
    synth: SynthConfig
    manifest: ManifestConfig
    decode: DecodeConfig
    mel: MelConfig
    ssl: SslConfig
    kmeans: KmeansConfig
    units_analysis: UnitsAnalysisConfig
    prosody: ProsodyConfig
    roi: RoiConfig
    model: ModelSection
    train: TrainConfig
    curve: CurveConfig
    report: ReportConfig
    experiments: list[ExperimentConfig]
    evaluate: EvaluateConfig
    vocoder: VocoderConfig
