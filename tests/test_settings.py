"""The typed config (lipspeech/core/settings.py) against the schema, both ways: every key of the
schema is a field of the class of its section, every field is a key, no field has a default, and
every field is read by the code (an attribute read of its name in a module, or the workflow's rule
files, that imports its class or a class that holds it). And the readers: nested sections, optional keys, unknown and missing
keys, and the round trip of the whole default config."""

from __future__ import annotations

import ast
import dataclasses
import re
import typing
from pathlib import Path
from typing import Any, Iterator

import pytest

from lipspeech.core import sections, settings
from lipspeech.core.config import ConfigError, load_config, load_schema, validate_config
from lipspeech.core.sections import Section

PACKAGE = Path(__file__).resolve().parents[1] / "lipspeech"
SETTINGS_FILE = PACKAGE / "core" / "settings.py"
WORKFLOW_RULES = PACKAGE.parent / "workflow" / "rules"

# definitions.streaming keys are partial: each k sets the model key stream_k (walked in ModelConfig)
PARTIAL = {"#streaming": "stream_"}


def _objects() -> Iterator[tuple[str, dict[str, Any]]]:
    """(section path, schema node) of every object of the schema that lists its properties."""
    schema = load_schema()

    def walk(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
        if node.get("type") == "object" and "properties" in node:
            yield path, node
            for key, sub in node["properties"].items():
                yield from walk(sub, f"{path}.{key}" if path else key)
        items = node.get("items")
        if node.get("type") == "array" and isinstance(items, dict):
            yield from walk(items, f"{path}[]")

    yield from walk(schema, "")
    for name, node in schema["definitions"].items():
        if f"#{name}" not in PARTIAL:
            yield from walk(node, f"#{name}")


def _classes() -> dict[str, type[Section]]:
    out: dict[str, type[Section]] = {}
    for obj in vars(settings).values():
        if isinstance(obj, type) and issubclass(obj, Section) and obj is not Section:
            assert obj.SECTION not in out, f"two classes for section {obj.SECTION!r}"
            out[obj.SECTION] = obj
    return out


def test_every_schema_object_has_its_class_and_back():
    objects = dict(_objects())
    classes = _classes()
    assert sorted(objects) == sorted(classes), (
        f"schema objects without a class: {sorted(set(objects) - set(classes))}; "
        f"classes without a schema object: {sorted(set(classes) - set(objects))}")
    for path, node in objects.items():
        fields = [f.name for f in dataclasses.fields(classes[path])]
        assert fields == list(node["properties"]), f"{path}: fields {fields} != schema keys {list(node['properties'])}"


def test_no_field_has_a_default():
    for cls in _classes().values():
        for f in dataclasses.fields(cls):
            assert f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING, (
                f"{cls.__name__}.{f.name} has a default: the schema holds it")


def test_partial_definitions_name_model_keys():
    schema = load_schema()
    model_keys = schema["definitions"]["model_keys"]["properties"]
    for name, prefix in PARTIAL.items():
        for key in schema["definitions"][name.lstrip("#")]["properties"]:
            assert prefix + key in model_keys, f"definitions.{name.lstrip('#')}.{key}: no model key {prefix}{key}"


def _holders(classes: dict[str, type[Section]]) -> dict[str, set[str]]:
    """Class name -> the names of the classes it is part of: itself and its parents up to the root
    (a definition, ``#name``, stands alone)."""
    out = {}
    for path, cls in classes.items():
        names = {cls.__name__}
        while path and not path.startswith("#"):
            path = path.rsplit(".", 1)[0] if "." in path else ""
            names.add(classes[path].__name__)
        out[cls.__name__] = names
    return out


def _modules_reading() -> dict[str, tuple[set[str], set[str]]]:
    """Module path -> (settings classes it imports, attribute names it reads)."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        if path == SETTINGS_FILE:
            continue
        tree = ast.parse(path.read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                    and node.module == "lipspeech.core.settings" for alias in node.names}
        reads = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                 and isinstance(node.ctx, ast.Load)}
        out[str(path.relative_to(PACKAGE))] = (imported, reads)
    # the workflow's rule files share one namespace (common.smk imports for all of them); Snakemake's
    # syntax is not Python's, so their attribute reads are found as text
    rules = "\n".join(p.read_text() for p in sorted(WORKFLOW_RULES.glob("*.smk")))
    imported = {name.strip() for line in re.findall(r"^from lipspeech\.core\.settings import (.+)$", rules, re.M)
                for name in line.split(",")}
    out["workflow/rules"] = (imported, set(re.findall(r"\.([A-Za-z_]\w*)", rules)))
    return out


def _is_section(hint: Any) -> bool:
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    inner = typing.get_args(args[0]) if typing.get_origin(args[0]) is list else args
    return all(isinstance(a, type) and issubclass(a, Section) for a in inner)


def test_every_field_is_read_by_the_code():
    classes = _classes()
    holders = _holders(classes)
    modules = _modules_reading()
    unread = []
    for path, cls in sorted(classes.items()):
        readers = [reads for imported, reads in modules.values() if imported & holders[cls.__name__]]
        for f in dataclasses.fields(cls):
            if _is_section(sections._hints(cls)[f.name]):
                continue  # a section (or a list of them): walked as its own class
            if not any(f.name in reads for reads in readers):
                unread.append(f"{path or '(root)'}.{f.name}")
    assert not unread, (f"{len(unread)} schema keys that no module importing their section class reads "
                        f"as an attribute: {', '.join(unread)}")


# --------------------------------------------------------------------------- readers
def test_whole_config_round_trip():
    cfg = load_config()
    s = settings.Settings.from_section(cfg)
    assert isinstance(s.vocoder.train, settings.VocoderTrainConfig)
    assert isinstance(s.synth.voices[0], settings.VoiceConfig)
    assert s.mel.n_fft == cfg["mel"]["n_fft"] and s.train.betas == cfg["train"]["betas"]
    for name in ("corpus", "synth", "mel", "roi", "train", "evaluate", "vocoder"):
        assert s.as_dict()[name] == cfg[name], name
    assert settings.Settings.from_section(s.as_dict()) == s


def test_optional_key_absent_reads_none_and_unknown_or_missing_fail():
    cfg = validate_config({"experiments": [{"name": "a", "preset": "tiny"}]})
    e = settings.ExperimentConfig.from_section(cfg["experiments"][0])
    assert (e.name, e.preset, e.model_from, e.streaming, e.overrides) == ("a", "tiny", None, None, {})
    v = settings.VoiceConfig.from_section({"voice": "en-us"})  # the schema's item defaults
    assert v.rate == load_schema()["properties"]["synth"]["properties"]["voices"]["items"]["properties"]["rate"]["default"]
    with pytest.raises(ConfigError, match="config key mel.nfft: unknown key"):
        settings.MelConfig.from_section({**cfg["mel"], "nfft": 3})
    with pytest.raises(ConfigError, match="config key mel.fmax: missing"):
        settings.MelConfig.from_section({k: v for k, v in cfg["mel"].items() if k != "fmax"})
    with pytest.raises(ConfigError, match="config key vocoder.train.device: missing"):
        settings.VocoderConfig.from_section({**cfg["vocoder"], "train": {"seed": 1}})
    m = settings.MelConfig.from_section(cfg["mel"])
    assert settings.MelConfig.from_section(m) is m
