"""Model presets and the flat model config.

A model config is one flat dict: a preset (``lipspeech/resources/model_presets.yaml``:
paper, tiny, small) merged with overrides by :func:`model_config`, which rejects
unknown keys and bad values with a one-line message. The schema's
``definitions.model_keys`` describes and checks every key; this module adds the
checks that relate keys to each other. :func:`lipspeech.models.build_model` turns a
config into a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

from lipspeech.core.config import ConfigError, check_flat, preset_config, preset_names
from lipspeech.core.settings import ModelConfig

#: the streaming mode's restrictions, each a switch of the ``stream_restrictions`` model key:
#: causal convolutions per part, relative positions in the conformers instead of absolute ones,
#: attention within chunks (sizes drawn from ``stream_train_chunks`` in training)
STREAM_RESTRICTIONS = ("causal_frontend", "causal_encoder", "causal_predictors", "causal_decoder",
                       "causal_postnet", "relative_positions", "chunked_attention")

#: the model presets (lipspeech/resources/model_presets.yaml, checked against the schema's
#: definitions.model_keys), each a complete flat model config
PRESETS: dict[str, dict[str, Any]] = {name: preset_config("model", name) for name in preset_names("model")}


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
        decoder_lookahead_frames: frames after each frame whose decoder states its own are read
            out with (:class:`lipspeech.models.causal.Lookahead`).
    """

    chunk_frames: int
    lookahead_frames: int
    left_context_frames: int
    train_chunks: tuple[int, ...]
    restrictions: frozenset[str] = frozenset(STREAM_RESTRICTIONS)
    decoder_lookahead_frames: int = 0

    @property
    def chunked(self) -> bool:
        """Whether attention works in chunks (training draws their size; eval passes use ``chunk_frames``)."""
        return "chunked_attention" in self.restrictions

    @property
    def can_stream(self) -> bool:
        """Whether chunk-by-chunk decoding is defined for the model (it has every restriction)."""
        return self.restrictions == frozenset(STREAM_RESTRICTIONS)


def streaming_config(cfg: ModelConfig) -> Optional[StreamingConfig]:
    """The streaming sizes of a checked flat model config; None for the offline model."""
    if not cfg.streaming:
        return None
    return StreamingConfig(cfg.stream_chunk_frames, cfg.stream_lookahead_frames, cfg.stream_left_context_frames,
                           tuple(cfg.stream_train_chunks), frozenset(cfg.stream_restrictions),
                           cfg.stream_decoder_lookahead_frames)


def model_config(preset: str, overrides: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """A validated flat model config: preset ``preset`` updated with ``overrides``.

    Raises:
        ConfigError: one line naming the unknown preset, unknown key or bad value.
    """
    return _check_relations(preset_config("model", preset, overrides))  # preset_config checked each key


def check_model_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Check a complete flat model config (every key of a preset, nothing else); returns a copy.

    Raises:
        ConfigError: one line naming the first unknown, missing or bad key.
    """
    return _check_relations(check_flat("definitions/model_keys", cfg, "model"))  # each key: the schema's checks


def _check_relations(cfg: dict[str, Any]) -> dict[str, Any]:
    """What the schema cannot say: the keys of a checked model config that constrain each other."""
    m = ModelConfig.from_section(cfg)
    for heads, n_heads in (("enc_heads", m.enc_heads), ("dec_heads", m.dec_heads)):
        if m.d_model % n_heads:
            raise ConfigError(f"model config key {heads}: {n_heads} does not divide d_model = {m.d_model}")
    if m.use_postnet and m.n_mels % m.flow_group_size:
        raise ConfigError(f"model config key flow_group_size: {m.flow_group_size} does not divide n_mels = {m.n_mels}")
    if m.frontend == "paper" and len(m.frontend_channels) != 5:
        raise ConfigError(f"model config key frontend_channels: the paper front-end needs 5 widths, "
                          f"got {m.frontend_channels}")
    return cfg
