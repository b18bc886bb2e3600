"""Configuration: the JSON-Schema of config.yaml, validation with defaults, hashes.

The schema (``lipspeech/resources/config.schema.yaml``, linked from
``workflow/schemas/``) is the one description of every key: its type, its default
and what it means. The Snakefile and the ``lipspeech`` command both validate
through :func:`validate_config`, so a mistyped key or a bad value stops either of
them with a one-line message that names the key.
"""

from __future__ import annotations

import copy
import hashlib
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import jsonschema
import yaml

#: evaluation systems that are not experiments (eval/{name}/): no experiment may take these names
RESERVED_SYSTEM_NAMES = ("ground_truth", "gt_vocoded")


class ConfigError(ValueError):
    """The configuration is invalid; the message names the offending key."""


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    """The config JSON-Schema shipped inside the package."""
    text = resources.files("lipspeech").joinpath("resources/config.schema.yaml").read_text()
    return yaml.safe_load(text)


def _fill_defaults(data: Any, schema: Mapping[str, Any]) -> None:
    """Fill in ``default`` values of object properties, recursively, in place."""
    if not isinstance(data, dict) or schema.get("type") != "object":
        return
    for key, sub in schema.get("properties", {}).items():
        if key not in data and "default" in sub:
            data[key] = copy.deepcopy(sub["default"])
        if key in data:
            _fill_defaults(data[key], sub)


def _describe(error: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(known))
        prefix = where + "." if error.absolute_path else ""
        return f"config key {prefix}{extra[0]!s}: unknown key (known here: {', '.join(known)})"
    return f"config key {where}: {error.message}"


def validate_config(config: dict[str, Any], experiment_refs: bool = True) -> dict[str, Any]:
    """Fill defaults into ``config`` (in place) and validate it against the schema.

    ``experiment_refs``: also check what experiments say of each other (model_from names a
    training experiment, decode_chunk_frames a streaming model); off for one entry on its own
    (a stage job's --experiment). Returns the same dict. Raises :class:`ConfigError` naming the
    first bad key.
    """
    schema = load_schema()
    _fill_defaults(config, schema)
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        raise ConfigError(_describe(errors[0]))
    _check_consistency(config, experiment_refs)
    return config


def _check_consistency(config: Mapping[str, Any], experiment_refs: bool = True) -> None:
    """Rules a schema cannot express comfortably."""
    corpus = config["corpus"]
    if corpus["kind"] != "synthgrid" and not corpus.get("root"):
        raise ConfigError(f"config key corpus.root: required for corpus.kind {corpus['kind']!r}")
    names = [e["name"] for e in config["experiments"]]
    reserved = next((n for n in names if n in RESERVED_SYSTEM_NAMES), None)
    if reserved is not None:
        raise ConfigError(f"config key experiments: name {reserved!r} is reserved for an evaluation system "
                          f"({', '.join(RESERVED_SYSTEM_NAMES)})")
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise ConfigError(f"config key experiments: name {dup!r} is used twice")
    trained = {e["name"]: e for e in config["experiments"] if not e.get("model_from")}
    for e in config["experiments"] if experiment_refs else []:
        source = e.get("model_from")
        if source and source not in trained:
            raise ConfigError(f"config key experiments: {e['name']}.model_from {source!r} names no experiment "
                              f"that trains a model (known: {', '.join(trained) or 'none'})")
        if source and (e.get("preset") or e.get("overrides") or e.get("streaming") or e.get("train")):
            raise ConfigError(f"config key experiments: {e['name']} uses the model of {source!r} "
                              "(model_from), so it cannot set preset, overrides, streaming or train")
        unknown = sorted(set(e.get("train") or {}) - set(config["train"]))
        if unknown:
            raise ConfigError(f"config key experiments: {e['name']}.train.{unknown[0]}: unknown key (the train "
                              "section's keys are allowed)")
        if e.get("decode_chunk_frames"):
            model_entry = trained.get(source or e["name"], {})
            if not (model_entry.get("streaming") or config["model"].get("streaming")
                    or (model_entry.get("overrides") or {}).get("streaming")
                    or (config["model"].get("overrides") or {}).get("streaming")):
                raise ConfigError(f"config key experiments: {e['name']}.decode_chunk_frames needs a streaming "
                                  "model (model.streaming or the experiment's streaming)")
    train = config["train"]
    if train["val_every"] > train["max_steps"]:
        raise ConfigError(f"config key train.val_every: {train['val_every']} > train.max_steps "
                          f"({train['max_steps']}): no validation, so no best.pt")
    vtrain = config["vocoder"]["train"]
    if vtrain["val_every"] > vtrain["max_steps"]:
        raise ConfigError(f"config key vocoder.train.val_every: {vtrain['val_every']} > vocoder.train.max_steps "
                          f"({vtrain['max_steps']}): no validation, so no best.pt")
    ratios = corpus["split_ratios"]
    if abs(sum(ratios) - 1.0) > 1e-6:
        raise ConfigError(f"config key corpus.split_ratios: must sum to 1 (got {sum(ratios):g})")
    mel = config["mel"]
    if mel["win_length"] > mel["n_fft"]:
        raise ConfigError(f"config key mel.win_length: {mel['win_length']} is larger than mel.n_fft ({mel['n_fft']})")
    if mel["fmin"] >= mel["fmax"]:
        raise ConfigError(f"config key mel.fmin: must be below mel.fmax ({mel['fmin']} >= {mel['fmax']})")
    prosody = config["prosody"]
    if prosody["f0_floor"] >= prosody["f0_ceil"]:
        raise ConfigError(
            f"config key prosody.f0_floor: must be below prosody.f0_ceil ({prosody['f0_floor']} >= {prosody['f0_ceil']})"
        )


def load_config(path: str | Path | None = None) -> dict[str, Any]:
    """Read a YAML config file (or nothing: all defaults) and validate it."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path}: not found") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path}: not valid YAML ({exc})") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path}: top level must be a mapping")
    return validate_config(data)


def default_section(name: str) -> dict[str, Any]:
    """One section of the all-defaults config."""
    return validate_config({})[name]


def config_hash(*sections: Any) -> str:
    """A short, stable hash of one or more config sections (canonical JSON)."""
    blob = json.dumps(sections, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
