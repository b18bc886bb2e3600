"""The base of the typed config sections (:mod:`lipspeech.core.settings`): reading a validated
mapping into a frozen dataclass whose fields are the schema's keys, and back."""

from __future__ import annotations

import copy
import dataclasses
import typing
from functools import lru_cache
from typing import Any, ClassVar, Mapping, TypeVar

from lipspeech.core.config import ConfigError, load_schema, validate_config

S = TypeVar("S", bound="Section")


class Section:
    """Base of the typed sections: :meth:`from_section` and :meth:`as_dict`."""

    SECTION: ClassVar[str]

    @classmethod
    def from_section(cls: type[S], cfg: Mapping[str, Any]) -> S:
        """This section of a validated config (missing or unknown key: :class:`ConfigError`). The
        items of a list (``synth.voices[]``, ``experiments[]``) take the schema's item defaults for
        the keys they leave out: validation fills none there."""
        if isinstance(cfg, cls):
            return cfg
        if not isinstance(cfg, Mapping):
            raise ConfigError(f"config section {cls.SECTION or '(root)'}: expected a mapping, got {cfg!r}")
        hints = _hints(cls)
        unknown = sorted(set(cfg) - set(hints))
        if unknown:
            raise ConfigError(f"{_where(cls, unknown[0])}: unknown key (known: {', '.join(hints)})")
        values = {}
        defaults = _item_defaults(cls.SECTION)
        for name, hint in hints.items():
            if name in cfg:
                values[name] = _read(hint, cfg[name])
            elif name in defaults:  # an item of a list: validation fills no defaults there
                values[name] = _read(hint, copy.deepcopy(defaults[name]))
            elif _optional(hint):
                values[name] = None
            else:
                raise ConfigError(f"{_where(cls, name)}: missing (read sections from a validated config)")
        return cls(**values)

    @classmethod
    def default(cls: type[S]) -> S:
        """The schema's defaults of this section (one that sits in a list or a definition has none)."""
        if "[]" in cls.SECTION or cls.SECTION.startswith("#"):
            raise ConfigError(f"config section {cls.SECTION}: has no defaults of its own")
        node: Any = validate_config({})
        for name in filter(None, cls.SECTION.split(".")):
            node = node[name]
        return cls.from_section(node)

    def as_dict(self) -> dict[str, Any]:
        """Back to a plain mapping: every key (one the mapping left out as None), sections as
        mappings. Hash and store the validated mapping itself, not this."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


def _where(cls: type, key: str) -> str:
    return f"config key {cls.SECTION + '.' if cls.SECTION else ''}{key}"


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    names = [f.name for f in dataclasses.fields(cls)]
    hints = typing.get_type_hints(cls)
    return {name: hints[name] for name in names}


@lru_cache(maxsize=None)
def _item_defaults(section: str) -> dict[str, Any]:
    """The schema's defaults of the keys of a list's items (``synth.voices[]``); {} elsewhere."""
    if "[]" not in section:
        return {}
    node: Any = load_schema()
    for part in section.split("."):
        node = node["properties"][part.removesuffix("[]")]
        if part.endswith("[]"):
            node = node["items"]
    return {k: v["default"] for k, v in node["properties"].items() if "default" in v}


def _optional(hint: Any) -> bool:
    return typing.get_origin(hint) is typing.Union and type(None) in typing.get_args(hint)


def _read(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    if _optional(hint):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if isinstance(hint, type) and issubclass(hint, Section):
        return hint.from_section(value)
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        if isinstance(item, type) and issubclass(item, Section):
            return [item.from_section(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Section):
        return value.as_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
