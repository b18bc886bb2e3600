"""Config schema: defaults, unknown keys and bad values named in the message."""

import pytest

from lipspeech.core.config import ConfigError, config_hash, load_config, validate_config


def test_defaults_fill_every_section():
    cfg = validate_config({})
    assert cfg["corpus"]["kind"] == "synthgrid"
    assert cfg["manifest"]["shards"] >= 1
    assert cfg["synth"]["jitter"]["pitch"] >= 0


def test_repo_config_yaml_is_valid_and_equals_defaults(repo_root):
    cfg = load_config(repo_root / "config.yaml")
    # config.yaml spells out the defaults: the schema and the commented file agree
    assert cfg == validate_config({})


@pytest.mark.parametrize(
    "bad,needle",
    [
        ({"manifest": {"shardz": 3}}, "manifest.shardz: unknown key"),
        ({"decoed": {}}, "decoed: unknown key"),
        ({"manifest": {"shards": 0}}, "manifest.shards"),
        ({"synth": {"container": "avi"}}, "synth.container"),
        ({"corpus": {"kind": "grid"}}, "corpus.root: required"),
        ({"corpus": {"kind": "lrs3"}}, "corpus.root: required"),
        ({"corpus": {"kind": "lrs3", "root": "x", "lrs3": {"subset": "400h"}}}, "corpus.lrs3.subset"),
        ({"corpus": {"lrs3": {"val_speakers": -1}}}, "corpus.lrs3.val_speakers"),
        ({"corpus": {"split_ratios": [0.5, 0.5, 0.5]}}, "corpus.split_ratios"),
        ({"synth": {"voices": [{"voice": "en", "pitch": 300}]}}, "synth.voices.0.pitch"),
    ],
)
def test_bad_config_names_the_key(bad, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        validate_config(bad)


def test_bad_yaml_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("corpus: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)


def test_config_hash_is_stable_and_sensitive():
    a = {"x": 1, "y": [1, 2]}
    assert config_hash(a) == config_hash({"y": [1, 2], "x": 1})
    assert config_hash(a) != config_hash({"x": 2, "y": [1, 2]})
