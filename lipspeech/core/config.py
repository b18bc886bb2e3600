"""Configuration: the JSON-Schema of config.yaml, presets, validation with defaults, hashes.

The schema (``lipspeech/resources/config.schema.yaml``, linked from
``workflow/schemas/``) is the one description of every key: its type, its default
and what it means. The Snakefile and the ``lipspeech`` command both validate
through :func:`validate_config`, so a mistyped key or a bad value stops either of
them with a one-line message that names the key.

The model and vocoder sizes come in presets, data files beside the schema
(``resources/{family}_presets.yaml``) whose keys the schema's ``definitions``
describe (``model_keys``, ``hifigan_keys``); :func:`preset_config` is the one way
to read a preset with overrides, and :func:`check_flat` the one way to check a
complete flat config against its definition. No default is written in Python.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
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


def _is_int(_checker: Any, value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# JSON-Schema's "integer" admits 2.0; a size must be a Python int (torch layers reject floats)
_Validator = jsonschema.validators.extend(
    jsonschema.Draft7Validator,
    type_checker=jsonschema.Draft7Validator.TYPE_CHECKER.redefine("integer", _is_int),
)


def _fill_defaults(data: Any, schema: Mapping[str, Any]) -> None:
    """Fill in ``default`` values of object properties, recursively, in place."""
    if not isinstance(data, dict) or schema.get("type") != "object":
        return
    for key, sub in schema.get("properties", {}).items():
        if key not in data and "default" in sub:
            data[key] = copy.deepcopy(sub["default"])
        if key in data:
            _fill_defaults(data[key], sub)


_TYPE_NAMES = {"boolean": "bool", "integer": "int", "number": "float", "string": "str", "array": "list",
               "object": "mapping"}


def _reason(error: jsonschema.ValidationError) -> str:
    """One readable clause for the common validators (jsonschema's own message otherwise)."""
    v, arg, value = error.validator, error.validator_value, error.instance
    if v == "type":
        names = [arg] if isinstance(arg, str) else arg
        return f"expected {' or '.join(_TYPE_NAMES.get(n, n) for n in names)}, got {value!r}"
    if v == "enum":
        return f"{value!r} is not one of {', '.join(map(str, arg))}"
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        op = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[v]
        return f"must be {op} {arg}, got {value!r}"
    if v == "not" and arg == {"multipleOf": 2}:
        return f"must be odd, got {value!r}"
    if v in ("minItems", "maxItems"):
        return f"needs {'at least' if v == 'minItems' else 'at most'} {arg} items, got {value!r}"
    return error.message


def _describe(error: jsonschema.ValidationError, section: str = "") -> str:
    path = [str(p) for p in error.absolute_path]
    head = f"{section} config key" if section else "config key"
    if error.validator == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(known))
        return f"{head} {'.'.join(path + [str(extra[0])])}: unknown key (known here: {', '.join(known)})"
    if error.validator == "required":
        missing = next(k for k in error.validator_value if k not in error.instance)
        return f"{head} {'.'.join(path + [missing])}: missing"
    return f"{head} {'.'.join(path) or '(top level)'}: {_reason(error)}"


def _first_error(validator: Any, instance: Any) -> jsonschema.ValidationError | None:
    errors = sorted(validator.iter_errors(instance),
                    key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    return errors[0] if errors else None


def _plain(value: Any) -> Any:
    """A deep copy with tuples as lists (JSON-Schema arrays are lists)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return copy.deepcopy(value)


def check_flat(pointer: str, cfg: Mapping[str, Any], section: str) -> dict[str, Any]:
    """Check a complete flat config against the schema at ``pointer`` (``"definitions/model_keys"``,
    ``"properties/train"``): every key it describes, nothing else, each value valid. Returns a
    plain deep copy (tuples as lists).

    Raises:
        ConfigError: one line, ``"{section} config key {key}: {reason}"``.
    """
    schema = load_schema()
    target: Any = schema
    for part in pointer.split("/"):
        target = target[part]
    wrapper = {"definitions": schema["definitions"], "allOf": [target], "required": list(target["properties"])}
    out = _plain(cfg)
    error = _first_error(_Validator(wrapper), out)
    if error is not None:
        raise ConfigError(_describe(error, section))
    return out


def apply_overrides(base: Mapping[str, Any], overrides: Mapping[str, Any] | None, section: str) -> dict[str, Any]:
    """``base`` (copied) updated with ``overrides``; a key ``base`` lacks is a :class:`ConfigError`."""
    out = _plain(base)
    for key, value in (overrides or {}).items():
        if key not in out:
            raise ConfigError(f"{section} config key {key}: unknown key (known: {', '.join(sorted(out))})")
        out[key] = _plain(value)
    return out


#: preset families: the file under resources/, the schema definition of their keys, the name in messages
PRESET_FAMILIES = {"model": ("model_presets.yaml", "model_keys", "model"),
                   "vocoder": ("vocoder_presets.yaml", "hifigan_keys", "vocoder")}


@lru_cache(maxsize=None)
def _presets(family: str) -> dict[str, dict[str, Any]]:
    filename, definition, section = PRESET_FAMILIES[family]
    raw = yaml.safe_load(resources.files("lipspeech").joinpath(f"resources/{filename}").read_text())
    out: dict[str, dict[str, Any]] = {}
    for name, entry in raw.items():  # a preset names its base above it (the file is in order)
        entry = dict(entry)
        base = entry.pop("base", None)
        if base is not None and base not in out:
            raise ConfigError(f"{filename}: preset {name!r} starts from {base!r}, which is not above it")
        merged = apply_overrides(out[base], entry, section) if base else entry
        out[name] = check_flat(f"definitions/{definition}", merged, f"{section} preset {name}:")
    return out


def preset_names(family: str) -> tuple[str, ...]:
    """The presets of a family (``model`` or ``vocoder``), in file order."""
    return tuple(_presets(family))


def preset_config(family: str, preset: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A checked flat config: preset ``preset`` of ``family`` updated with ``overrides``
    (``ConfigError`` naming an unknown preset, an unknown key or a bad value)."""
    presets = _presets(family)
    if preset not in presets:
        raise ConfigError(f"{family} preset {preset!r}: unknown (known: {', '.join(presets)})")
    _, definition, section = PRESET_FAMILIES[family]
    return check_flat(f"definitions/{definition}", apply_overrides(presets[preset], overrides, section), section)


def section_config(path: str, overrides: Mapping[str, Any] | None = None, complete: bool = False) -> dict[str, Any]:
    """One section of the config (``"train"``, ``"vocoder.train"``): the schema's defaults updated
    with ``overrides`` and checked by the schema. (Rules between sections, and between a section
    and the workflow, are :func:`validate_config`'s.) ``complete``: ``overrides`` must name every
    key of the section.

    Raises:
        ConfigError: one line naming the first unknown, missing or bad key.
    """
    base: Any = validate_config({})
    for name in path.split("."):
        base = base[name]
    if complete:
        missing = next((k for k in base if k not in (overrides or {})), None)
        if missing is not None:
            raise ConfigError(f"{path} config key {missing}: missing")
    pointer = "/".join(f"properties/{name}" for name in path.split("."))
    return check_flat(pointer, apply_overrides(base, overrides, path), path)


def validate_config(config: dict[str, Any], experiment_refs: bool = True) -> dict[str, Any]:
    """Fill defaults into ``config`` (in place) and validate it against the schema.

    ``experiment_refs``: also check what experiments say of each other (model_from names a
    training experiment, decode_chunk_frames a streaming model); off for one entry on its own
    (a stage job's --experiment). Returns the same dict. Raises :class:`ConfigError` naming the
    first bad key.
    """
    schema = load_schema()
    _fill_defaults(config, schema)
    error = _first_error(_Validator(schema), config)
    if error is not None:
        raise ConfigError(_describe(error))
    _check_consistency(config, experiment_refs)
    return config


def _check_no_circle(trained: Mapping[str, Mapping[str, Any]], name: str, path: tuple[str, ...] = ()) -> None:
    """Raise ConfigError when the weights an experiment starts from or learns from (init_from,
    distill_from) lead, through other experiments, back to ``name``'s path."""
    path = (*path, name)
    for key in ("init_from", "distill_from"):
        other = trained[name].get(key)
        if other is None:
            continue
        if other in path:
            raise ConfigError(f"config key experiments: {key} goes round in a circle ({' -> '.join((*path, other))})")
        _check_no_circle(trained, other, path)


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
        for key in ("init_from", "distill_from"):  # the weights it starts from, the model it learns from
            other = e.get(key)
            if other is not None and (source or other == e["name"] or other not in trained):
                raise ConfigError(f"config key experiments: {e['name']}.{key} {other!r} must name another experiment "
                                  f"that trains a model (known: {', '.join(n for n in trained if n != e['name']) or 'none'})"
                                  + (", and cannot go with model_from" if source else ""))
        for key, needs in (("init_align", "init_from"), ("distill_mel_weight", "distill_from")):
            if e.get(key) and e.get(needs) is None:
                raise ConfigError(f"config key experiments: {e['name']}.{key} needs {needs}")
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
    for name in trained if experiment_refs else []:  # init_from/distill_from chains end (each names a trained model)
        _check_no_circle(trained, name)
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


def read_config_file(path: str | Path) -> dict[str, Any]:
    """One YAML config file as a mapping, not yet validated (one-line :class:`ConfigError` otherwise)."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path}: not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: top level must be a mapping")
    return data


def merge_config(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base`` as snakemake merges --configfile files: mappings key by key,
    recursively; any other value (a list included) replaced whole."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_config(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config(*paths: str | Path | None) -> dict[str, Any]:
    """Read YAML config files (later over earlier; none: all defaults) and validate the result."""
    data: dict[str, Any] = {}
    for path in paths:
        if path is not None:
            data = merge_config(data, read_config_file(path))
    return validate_config(data)


def describe_config(view: Mapping[str, Any], section: str = "") -> str:
    """``view`` (a validated config, or its section ``section``: ``"train"``, ``"vocoder.train"``) as
    YAML with each key's meaning from the schema as a comment: the first sentence of its
    description. What ``lipspeech config --describe`` prints; the demo's config.yaml points here."""
    node: Any = load_schema()
    for name in filter(None, section.split(".")):
        node = node.get("properties", {}).get(name, {})
    return "".join(_describe_lines(view, node, 0))


def _first_sentence(text: str, width: int = 100) -> str:
    """The description's first sentence ("e.g.", "i.e." and "et al." do not end one), cut to ``width``."""
    parts = re.split(r"(?<!e\.g)(?<!i\.e)(?<!et al)\.\s", text, maxsplit=1)
    first = parts[0].rstrip(".")
    return first if len(first) <= width else first[:width - 3].rsplit(" ", 1)[0] + "..."


def _describe_lines(view: Mapping[str, Any], node: Mapping[str, Any], depth: int) -> list[str]:
    lines = []
    props = node.get("properties", {})
    for key, value in view.items():
        sub = props.get(key, {})
        text = " ".join(str(sub.get("description", "")).split())
        comment = _first_sentence(text)
        pad = "  " * depth
        if isinstance(value, dict) and value and "properties" in sub:
            lines.append(f"{pad}{key}:{'  # ' + comment if comment else ''}\n")
            lines.extend(_describe_lines(value, sub, depth + 1))
            continue
        flow = yaml.safe_dump({key: value}, default_flow_style=True, width=10_000, sort_keys=False)
        entry = f"{pad}{flow.strip()[1:-1]}"
        lines.append(f"{entry:<40}  # {comment}\n" if comment else f"{entry}\n")
    return lines


def default_section(name: str) -> dict[str, Any]:
    """One section of the all-defaults config."""
    return validate_config({})[name]


def config_hash(*sections: Any) -> str:
    """A short, stable hash of one or more config sections (canonical JSON)."""
    blob = json.dumps(sections, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
