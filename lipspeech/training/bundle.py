"""A trained LTBS model as a self-contained bundle, and the one loader of it.

Every checkpoint the train stage writes (``best.pt``, ``last.pt``) holds, besides the weights
and the model config, a ``bundle`` entry with what using the model needs and what made it:

``mel``
    the ``mel`` section the targets were computed with (the vocoder must invert this mel);
``roi``
    the ``roi`` section the mouth crops were cut with (a new video must be cropped the same way);
``speakers``
    speaker name -> embedding index for models with a speaker embedding (else null);
``config_hash``
    hash of the model, train, mel and roi sections and of the data's fingerprint;
``corpus``
    the corpus name.

The checkpoint also records ``git_commit`` and ``lipspeech_version`` (the trainer writes them)
and its ``format``. :func:`load_model` reads any format this code has written and upgrades the
older ones here, in one place, so ``synthesize``, ``speak`` and later commands see one shape:

- format 1 (before bundles): no ``bundle`` entry; speaker names were only in ``run.json``
  two folders up (``models/{exp}/run.json``), mel and ROI settings nowhere (the defaults are
  assumed, and :attr:`ModelBundle.assumed` says so); model keys added since then get the values
  that reproduce the older model (:data:`ADDED_MODEL_KEYS`); keys of options since removed are
  dropped when they hold the value that is today's model (:data:`REMOVED_MODEL_KEYS`).
- format 2: the bundle above. A checkpoint written by :func:`lipspeech.training.train` without
  a bundle (tests, notebooks) is format 2 with the same defaults assumed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from lipspeech.core.config import default_section
from lipspeech.core.settings import ModelConfig
from lipspeech.models.causal import align_centred_kernel, causal_kernels
from lipspeech.models.ltbs import LTBSModel, build_model
from lipspeech.models.presets import PRESETS
from lipspeech.training.checkpoint import load_checkpoint

# Model keys added after checkpoints were first written, with the value that reproduces
# the older model exactly (so older checkpoints still load).
# (streaming off: the other stream_* keys are then not read, so they take the presets' values)
ADDED_MODEL_KEYS = {
    "frontend_downsample": 1,
    **{k: v for k, v in PRESETS["paper"].items() if k == "streaming" or k.startswith("stream_")},
}
assert ADDED_MODEL_KEYS["streaming"] is False
# Model keys of options since removed, with the one value that is today's model (a checkpoint
# written with it loads without the key; with any other value it cannot be built any more).
REMOVED_MODEL_KEYS = {
    "stream_decoder_chunk_conv": False,  # 6cb726d's decoder convolutions within the chunk, reverted after it
}


@dataclass
class ModelBundle:
    """A loaded model and what came with it (module docstring)."""

    model: LTBSModel
    model_cfg: dict[str, Any]
    mel: dict[str, Any]
    roi: dict[str, Any]
    speakers: Optional[dict[str, int]]
    step: int
    format: int
    git_commit: str = "unknown"
    config_hash: Optional[str] = None
    corpus: Optional[str] = None
    path: Optional[Path] = None
    #: bundle parts this checkpoint did not carry and that took the defaults
    assumed: list[str] = field(default_factory=list)

    @property
    def config(self) -> ModelConfig:
        """The model config read (``model_cfg`` is the mapping the checkpoint stores)."""
        return ModelConfig.from_section(self.model_cfg)

    def speaker_index(self, speaker: Optional[str]) -> Optional[int]:
        """The embedding index of a speaker name (or index as text); None for single-speaker models.

        Raises:
            ValueError: a multi-speaker model without a (known) speaker; one line.
        """
        n = self.config.n_speakers
        if n <= 0:
            return None
        if speaker is None:
            raise ValueError("the model has a speaker embedding: give a training speaker's name or index")
        if speaker.isdigit() and int(speaker) < n:
            return int(speaker)
        if not self.speakers or speaker not in self.speakers:
            known = ", ".join(sorted(self.speakers)) if self.speakers else f"indices 0..{n - 1}"
            raise ValueError(f"speaker {speaker}: not a training speaker of this model (known: {known})")
        return int(self.speakers[speaker])


def make_bundle(mel: Mapping[str, Any], roi: Mapping[str, Any], speakers: Optional[Mapping[str, int]],
                config_hash: str, corpus: Optional[str]) -> dict[str, Any]:
    """The ``bundle`` entry the train stage hands the trainer (plain values only: weights_only loads it)."""
    return {"mel": dict(mel), "roi": dict(roi), "speakers": dict(speakers) if speakers is not None else None,
            "config_hash": config_hash, "corpus": corpus}


def upgrade(state: dict[str, Any], path: Optional[Path] = None) -> tuple[dict[str, Any], list[str]]:
    """A checkpoint of any known format as the current shape; returns it and the assumed parts."""
    state = dict(state)
    state["model_cfg"] = {**ADDED_MODEL_KEYS, **state["model_cfg"]}
    for key, today in REMOVED_MODEL_KEYS.items():
        if key in state["model_cfg"]:
            value = state["model_cfg"].pop(key)
            if value != today:
                raise ValueError(f"{path or 'checkpoint'}: trained with model key {key} = {value!r}, an option "
                                 f"since removed; only {today!r} (today's model) still loads")
    bundle = dict(state.get("bundle") or {})
    if int(state.get("format", 1)) < 2 and "speakers" not in bundle and path is not None:
        run_json = Path(path).resolve().parent.parent / "run.json"  # where format 1 kept the speaker names
        if run_json.exists():
            bundle["speakers"] = json.loads(run_json.read_text()).get("speakers")
    assumed = []
    for name in ("mel", "roi"):
        if not bundle.get(name):
            bundle[name] = default_section(name)
            assumed.append(name)
    model = ModelConfig.from_section(state["model_cfg"])
    if model.n_speakers > 0 and not bundle.get("speakers"):
        assumed.append("speakers")
    if int(bundle["mel"]["n_mels"]) != model.n_mels:
        if "mel" not in assumed:
            raise ValueError(f"bundle mel.n_mels {bundle['mel']['n_mels']} != model n_mels {model.n_mels}")
        bundle["mel"]["n_mels"] = model.n_mels
    state["bundle"] = bundle
    return state, assumed


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu", weights: str = "average") -> ModelBundle:
    """Build the model a checkpoint describes and load its weights (eval mode), with its bundle.

    ``weights``: ``average`` loads the averaged weights of a run trained with ``ema_decay`` (what its
    validation scored; the only weights of any other checkpoint), ``raw`` the optimiser's own.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an LTBS checkpoint, or one whose weights do not fit its config.
    """
    path = Path(path)
    state = load_checkpoint(path, map_location=device)
    if "model_cfg" not in state or "model" not in state:
        raise ValueError(f"{path}: not an LTBS model checkpoint (a vocoder's?)")
    state, assumed = upgrade(state, path)
    model = build_model(state["model_cfg"]).to(device)
    try:
        # a run with ema_decay validated and chose best.pt by the averaged weights: those are the model
        model.load_state_dict(state["ema"]["model"] if "ema" in state and weights == "average" else state["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ValueError(f"{path}: the weights do not fit the model config ({first})") from None
    b = state["bundle"]
    return ModelBundle(
        model=model.eval(), model_cfg=dict(state["model_cfg"]), mel=dict(b["mel"]), roi=dict(b["roi"]),
        speakers={str(k): int(v) for k, v in b["speakers"].items()} if b.get("speakers") else None,
        step=int(state.get("step", 0)), format=int(state.get("format", 1)),
        git_commit=str(state.get("git_commit", "unknown")), config_hash=b.get("config_hash"), corpus=b.get("corpus"),
        path=path, assumed=assumed,
    )


def start_from(model: torch.nn.Module, path: str | os.PathLike, align: bool
               ) -> tuple[list[str], list[str], list[str]]:
    """Copy into ``model`` each tensor of the model in checkpoint ``path`` (its averaged weights, as
    :func:`load_model` gives them) whose name and shape match: an experiment's ``init_from``.

    With ``align``, each temporal kernel that is causal in ``model`` and centred there (a streaming
    model started from an offline one) is copied aligned in time
    (:func:`lipspeech.models.causal.align_centred_kernel`): the same taps for the past and present.

    A speaker embedding that the checkpoint lacks (``n_speakers`` added to a model trained without)
    starts at zero, so that the started model computes what the checkpoint did until training moves it
    (its default draw, N(0, 1) in every dimension, would swamp the visual features it is added to).

    Returns:
        (copied, kept, aligned): the names of ``model``'s state copied, those that keep their values
        (or start at zero: the speaker embedding), and those of the copied ones that were aligned.
    """
    source_model = load_model(path, "cpu").model
    source = source_model.state_dict()
    own = model.state_dict()  # references to the model's own tensors
    copied = [k for k, v in own.items() if k in source and source[k].shape == v.shape]
    with torch.no_grad():
        for k in copied:
            own[k].copy_(source[k])
        if "speaker_embed.weight" in own and "speaker_embed.weight" not in copied:
            own["speaker_embed.weight"].zero_()
    aligned = _align_causal(model, source_model, set(copied)) if align else []
    return copied, [k for k in own if k not in copied], aligned


def _align_causal(model: torch.nn.Module, source: torch.nn.Module, copied: set[str]) -> list[str]:
    """Align in time the copied kernels of ``model``'s causal modules whose counterparts in ``source``
    are centred; their names."""
    names = {id(p): n for n, p in model.named_parameters()}
    theirs = dict(source.named_modules())
    aligned = []
    with torch.no_grad():
        for name, module in model.named_modules():
            other = theirs.get(name)
            if not getattr(module, "causal", False) or other is None or getattr(other, "causal", True):
                continue
            for weight, axis in causal_kernels(module):
                if names[id(weight)] in copied:
                    weight.copy_(align_centred_kernel(weight, axis))
                    aligned.append(names[id(weight)])
    return aligned
