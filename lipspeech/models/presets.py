"""Model presets and the flat model config.

A model config is one flat dict (the ``model`` section of config.yaml, later):
a preset merged with overrides by :func:`model_config`, which rejects unknown
keys and bad values with a one-line message. :func:`lipspeech.models.build_model`
turns it into a model.

In ``paper``, "(paper)" marks sizes the paper states for GRID (Kim, Kim & Chung,
AAAI 2024); everything marked "(ours)" is our choice, to be revisited when the
paper's code or appendix says otherwise.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from lipspeech.core.config import ConfigError

#: the streaming mode's restrictions, each a switch of the ``stream_restrictions`` model key:
#: causal convolutions per part, relative positions in the conformers instead of absolute ones,
#: attention within chunks (sizes drawn from ``stream_train_chunks`` in training)
STREAM_RESTRICTIONS = ("causal_frontend", "causal_encoder", "causal_predictors", "causal_decoder",
                       "causal_postnet", "relative_positions", "chunked_attention")

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        # --- visual front-end
        "frontend": "paper",  # 3D conv (5x7x7, stride 1x2x2) + max-pool + ResNet-18 trunk per frame (paper)
        "frontend_channels": [64, 64, 128, 256, 512],  # 3D stem, then the 4 ResNet-18 stages (ResNet-18 widths)
        "frontend_downsample": 1,  # average-pool each 88x88 crop by this factor first (1: full resolution) (ours)
        # --- conformer encoder h_v
        "d_model": 384,  # hidden size of the encoder (paper, GRID)
        "enc_heads": 6,  # attention heads (paper, GRID)
        "enc_layers": 6,  # conformer blocks (ours)
        "enc_ffn": 1536,  # feed-forward inner width, 4 x d_model (ours)
        "enc_kernel": 31,  # depthwise conv kernel, Conformer's default (ours)
        # --- variance adaptor (one predictor class, used three times)
        "n_units": 200,  # k-means clusters of HuBERT-LARGE layer 12 (paper)
        "var_hidden": 256,  # predictor conv channels (ours)
        "var_kernel": 3,  # predictor conv kernel (ours)
        "var_layers": 2,  # predictor conv layers (ours)
        "var_dropout": 0.5,  # predictor dropout (ours)
        "pitch_bins": 256,  # pitch embedding bins (ours)
        "pitch_min": -4.0,  # bin range over per-speaker normalised log-F0, in std units (ours)
        "pitch_max": 4.0,
        "energy_bins": 256,  # energy embedding bins (ours)
        "energy_min": -4.0,  # bin range over per-speaker normalised energy (ours)
        "energy_max": 4.0,
        "variance_loss": "mse",  # "mse" or "l1" for pitch and energy (ours)
        "pitch_voiced_only": False,  # pitch loss on voiced frames only; False: continuous log-F0 everywhere (ours)
        "n_speakers": 0,  # >0 adds a speaker embedding to h_v (needs speaker ids); 0: none (ours)
        # --- upsampling and mel decoder
        "upsample": "repeat",  # video -> mel rate (x4): "repeat" or "transposed" (stride-4 transposed conv) (ours)
        "dec_heads": 6,  # decoder attention heads (ours, as the encoder)
        "dec_layers": 6,  # decoder conformer blocks (ours)
        "dec_ffn": 1536,  # decoder feed-forward width (ours)
        "dec_kernel": 31,  # decoder conv kernel (ours)
        "dropout": 0.1,  # dropout in encoder and decoder (ours)
        "n_mels": 80,  # mel bins, as lipspeech.features.audio.AudioConfig
        # --- flow post-net (Glow)
        "flow_blocks": 8,  # flow steps (ActNorm, 1x1 conv, coupling) (ours)
        "flow_hidden": 192,  # WaveNet channels in each coupling (ours)
        "flow_kernel": 3,  # WaveNet kernel (ours)
        "flow_dilation_rate": 2,  # WaveNet dilation growth per layer (ours)
        "flow_wn_layers": 4,  # WaveNet layers per coupling (ours)
        "flow_group_size": 4,  # channels mixed by each invertible 1x1 conv (ours)
        "flow_dropout": 0.0,  # WaveNet dropout (ours)
        "flow_residual": True,  # model target - coarse (True) or the target itself (False) (ours)
        "flow_detach": True,  # no flow gradient into the coarse mel / decoder states (ours)
        "temperature": 0.667,  # std of z ~ N(0, t^2) at inference (ours)
        # --- ablation switches (a disabled part is neither computed nor added)
        "use_linguistic": True,
        "use_pitch": True,
        "use_energy": True,
        "use_postnet": True,
        # --- loss weights: total = mel L1 + l_ling CE + l_pitch + l_energy + l_flow NLL (ours)
        "lambda_ling": 1.0,
        "lambda_pitch": 1.0,
        "lambda_energy": 1.0,
        "lambda_flow": 1.0,
        # --- streaming mode (ours; config.yaml model.streaming). Off: the paper's offline model.
        # On: causal convolutions everywhere, no absolute positions, chunked attention in the
        # conformers; trained with a chunk size drawn per batch (dynamic chunk training), so one
        # checkpoint decodes whole clips or chunks (lipspeech.models.streaming, lipspeech live).
        "streaming": False,
        "stream_chunk_frames": 5,  # video frames per chunk when decoding in chunks (and validating)
        "stream_lookahead_frames": 2,  # frames past its chunk the first encoder block reads
        "stream_left_context_frames": 25,  # frames before its chunk a frame attends to (mel side: x4)
        "stream_train_chunks": [0, 2, 3, 4, 5, 6, 8, 12],  # chunk sizes drawn per training batch; 0 = whole clip
        # which of the streaming restrictions the model has (all: a model that streams; fewer: a study
        # model, decoded whole clip only, that measures what each restriction costs)
        "stream_restrictions": list(STREAM_RESTRICTIONS),
    },
}

# `tiny`: the paper's wiring at toy sizes, for tests, CI and CPU smoke runs (all ours).
PRESETS["tiny"] = {
    **PRESETS["paper"],
    "frontend": "tiny",  # 3D conv + 3 strided 2D convs
    "frontend_channels": [16, 32, 64, 64],
    "d_model": 64,
    "enc_heads": 2,
    "enc_layers": 2,
    "enc_ffn": 128,
    "enc_kernel": 7,
    "var_hidden": 64,
    "var_dropout": 0.1,
    "pitch_bins": 32,
    "energy_bins": 32,
    "dec_heads": 2,
    "dec_layers": 2,
    "dec_ffn": 128,
    "dec_kernel": 7,
    "dropout": 0.1,
    "flow_blocks": 2,
    "flow_hidden": 32,
    "flow_wn_layers": 2,
}

# `small`: the CPU demo's model (all ours): tiny's wiring, wider, one more conformer block on each
# side, and the 88x88 crops average-pooled to 44x44 before the front-end so a CPU step stays cheap
# (about 0.5 s at batch 8 on 2 cores). On SynthGRID (400 utterances) 1000 steps at lr 1e-3 bring the
# test split to WER 0.29 through the evaluation's ASR; measured in benchmarks/README.md ("Demo training").
PRESETS["small"] = {
    **PRESETS["tiny"],
    "frontend_channels": [32, 64, 96, 128],
    "frontend_downsample": 2,
    "d_model": 128,
    "enc_layers": 3,
    "enc_ffn": 256,
    "var_hidden": 128,
    "dec_layers": 3,
    "dec_ffn": 256,
}

@dataclass(frozen=True)
class StreamingConfig:
    """The streaming mode's sizes, in video frames (the ``stream_*`` model keys).

    Attributes:
        chunk_frames: frames per chunk when decoding in chunks (and when validating).
        lookahead_frames: frames after its chunk the first encoder block reads.
        left_context_frames: frames before its chunk a frame attends to.
        train_chunks: chunk sizes drawn per training batch (0: the whole clip).
        restrictions: the restrictions the model has (:data:`STREAM_RESTRICTIONS`; all of them
            by default, the only models that can decode chunk by chunk).
    """

    chunk_frames: int
    lookahead_frames: int
    left_context_frames: int
    train_chunks: tuple[int, ...]
    restrictions: frozenset[str] = frozenset(STREAM_RESTRICTIONS)

    @property
    def chunked(self) -> bool:
        """Whether attention works in chunks (training draws their size; eval passes use ``chunk_frames``)."""
        return "chunked_attention" in self.restrictions

    @property
    def can_stream(self) -> bool:
        """Whether chunk-by-chunk decoding is defined for the model (it has every restriction)."""
        return self.restrictions == frozenset(STREAM_RESTRICTIONS)


def streaming_config(cfg: Mapping[str, Any]) -> Optional[StreamingConfig]:
    """The streaming sizes of a checked flat model config; None for the offline model."""
    if not cfg["streaming"]:
        return None
    return StreamingConfig(cfg["stream_chunk_frames"], cfg["stream_lookahead_frames"],
                           cfg["stream_left_context_frames"], tuple(cfg["stream_train_chunks"]),
                           frozenset(cfg["stream_restrictions"]))



_CHOICES = {"frontend": ("paper", "tiny"), "upsample": ("repeat", "transposed"), "variance_loss": ("mse", "l1")}
_ODD = ("enc_kernel", "dec_kernel", "var_kernel", "flow_kernel")


def _type_ok(value: Any, reference: Any) -> bool:
    if isinstance(reference, bool):
        return isinstance(value, bool)
    if isinstance(reference, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(reference, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(reference, list):
        return isinstance(value, (list, tuple)) and all(_type_ok(v, reference[0]) for v in value)
    return isinstance(value, type(reference))


def check_type(section: str, key: str, value: Any, reference: Any) -> None:
    """Raise a one-line :class:`ConfigError` unless ``value`` has the type of ``reference``
    (an int passes for a float; a list's items are checked against its first item)."""
    if not _type_ok(value, reference):
        raise ConfigError(f"{section} config key {key}: expected {type(reference).__name__}, got {value!r}")


def model_config(preset: str = "paper", overrides: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """A validated flat model config: ``PRESETS[preset]`` updated with ``overrides``.

    Raises:
        ConfigError: one line naming the unknown preset, unknown key or bad value.
    """
    if preset not in PRESETS:
        raise ConfigError(f"model preset {preset!r}: unknown (known: {', '.join(PRESETS)})")
    cfg = copy.deepcopy(PRESETS[preset])
    for key, value in (overrides or {}).items():
        if key not in cfg:
            raise ConfigError(f"model config key {key}: unknown key (known: {', '.join(sorted(cfg))})")
        cfg[key] = value
    return check_model_config(cfg)


def check_flat_config(
    section: str, cfg: Mapping[str, Any], reference: Mapping[str, Any], choices: Mapping[str, tuple]
) -> dict[str, Any]:
    """The checks model and train configs share: exactly the reference's keys, each of the
    reference value's type, enumerated keys within their choices. Returns a deep copy
    (tuples as lists); raises :class:`ConfigError` naming the first bad key."""
    for key in cfg:
        if key not in reference:
            raise ConfigError(f"{section} config key {key}: unknown key (known: {', '.join(sorted(reference))})")
    missing = [k for k in reference if k not in cfg]
    if missing:
        raise ConfigError(f"{section} config key {missing[0]}: missing (build configs with {section}_config())")
    out = {k: (list(v) if isinstance(v, tuple) else copy.deepcopy(v)) for k, v in cfg.items()}
    for key, value in out.items():
        check_type(section, key, value, reference[key])
    for key, allowed in choices.items():
        if out[key] not in allowed:
            raise ConfigError(f"{section} config key {key}: {out[key]!r} is not one of {', '.join(allowed)}")
    return out


def check_model_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Check a complete flat model config (every key of a preset, nothing else); returns a copy.

    Raises:
        ConfigError: one line naming the first unknown, missing or bad key.
    """
    cfg = check_flat_config("model", cfg, PRESETS["paper"], _CHOICES)
    for key in _ODD:
        if cfg[key] % 2 != 1:
            raise ConfigError(f"model config key {key}: must be odd, got {cfg[key]}")
    for width, heads in (("d_model", "enc_heads"), ("d_model", "dec_heads")):
        if cfg[width] % cfg[heads]:
            raise ConfigError(f"model config key {heads}: {cfg[heads]} does not divide {width} = {cfg[width]}")
    if cfg["use_postnet"] and cfg["n_mels"] % cfg["flow_group_size"]:
        raise ConfigError(
            f"model config key flow_group_size: {cfg['flow_group_size']} does not divide n_mels = {cfg['n_mels']}"
        )
    widths = cfg["frontend_channels"]
    if cfg["frontend"] == "paper" and len(widths) != 5:
        raise ConfigError(f"model config key frontend_channels: the paper front-end needs 5 widths, got {widths}")
    if cfg["frontend"] == "tiny" and len(widths) < 2:
        raise ConfigError(f"model config key frontend_channels: the tiny front-end needs >= 2 widths, got {widths}")
    if cfg["frontend_downsample"] < 1:
        raise ConfigError(f"model config key frontend_downsample: must be >= 1, got {cfg['frontend_downsample']}")
    if cfg["stream_chunk_frames"] < 1:
        raise ConfigError(f"model config key stream_chunk_frames: must be >= 1, got {cfg['stream_chunk_frames']}")
    for key in ("stream_lookahead_frames", "stream_left_context_frames"):
        if cfg[key] < 0:
            raise ConfigError(f"model config key {key}: must be >= 0, got {cfg[key]}")
    if not cfg["stream_train_chunks"] or min(cfg["stream_train_chunks"]) < 0:
        raise ConfigError(
            f"model config key stream_train_chunks: needs one or more sizes >= 0 (0 = whole clip), "
            f"got {cfg['stream_train_chunks']}"
        )
    unknown = sorted(set(cfg["stream_restrictions"]) - set(STREAM_RESTRICTIONS))
    if unknown or len(set(cfg["stream_restrictions"])) != len(cfg["stream_restrictions"]):
        raise ConfigError(
            f"model config key stream_restrictions: needs distinct names of {', '.join(STREAM_RESTRICTIONS)}, "
            f"got {cfg['stream_restrictions']}"
        )
    if cfg["temperature"] < 0:
        raise ConfigError(f"model config key temperature: must be >= 0, got {cfg['temperature']}")
    return cfg
