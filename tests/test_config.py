"""Config schema: defaults, unknown keys and bad values named in the message."""

import pytest
import yaml

from lipspeech.core.config import (
    ConfigError,
    config_hash,
    describe_config,
    load_config,
    read_config_file,
    validate_config,
)


def test_defaults_fill_every_section():
    cfg = validate_config({})
    assert cfg["corpus"]["kind"] == "synthgrid"
    assert cfg["manifest"]["shards"] >= 1
    assert cfg["synth"]["jitter"]["pitch"] >= 0


def _leaves(data, path=()):
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _leaves(value, (*path, key))
    else:
        yield path, data


def test_repo_config_yaml_restates_no_default(repo_root):
    """config.yaml holds what the default run changes, nothing the schema already says; the shipped
    configs/ likewise (each over config.yaml: a key set to its default there is a second copy)."""
    defaults = validate_config({})
    for path in [repo_root / "config.yaml", *sorted((repo_root / "configs").glob("*.yaml"))]:
        for keys, value in _leaves(read_config_file(path)):
            node = defaults
            for key in keys:
                node = node.get(key, {}) if isinstance(node, dict) else {}
            if keys and keys[-1] != "experiments":
                assert node != value, f"{path.name}: {'.'.join(keys)} = {value!r} is the schema's default"
    assert load_config(repo_root / "config.yaml") == defaults


def test_describe_config_comments_every_key_from_the_schema():
    text = describe_config(validate_config({}))
    assert yaml.safe_load(text) == validate_config({})  # still the config, as YAML
    assert "  n_fft: 1024" in text and "# FFT size" in text.split("  n_fft: 1024")[1].split("\n")[0]
    train = describe_config(validate_config({})["vocoder"]["train"], "vocoder.train")
    assert train.startswith("seed: ") and "# Seeds" in train.splitlines()[0]


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


@pytest.mark.parametrize(
    "bad,needle",
    [
        ({"model": {"overrides": {"d_modle": 3}}}, "model.overrides.d_modle: unknown key"),
        ({"experiments": [{"name": "a", "overrides": {"enc_kernel": 4}}]},
         "experiments.0.overrides.enc_kernel: must be odd"),
        ({"model": {"overrides": {"d_model": 64.0}}}, "model.overrides.d_model: expected int, got 64.0"),
        ({"model": {"streaming": {"restrictions": ["causal_ears"]}}},
         "model.streaming.restrictions.0: 'causal_ears' is not one of"),
        ({"train": {"lr": -1}}, "train.lr: must be >= 0, got -1"),
        ({"experiments": [{"name": "a", "init_from": "b"}]}, "a.init_from 'b' must name another experiment"),
        ({"experiments": [{"name": "a", "init_from": "b"}, {"name": "b", "init_from": "a"}]},
         "init_from goes round in a circle"),
        ({"experiments": [{"name": "a", "distill_from": "a"}]}, "a.distill_from 'a' must name another experiment"),
        ({"experiments": [{"name": "a", "distill_from": "b"}, {"name": "b", "init_from": "a"}]},
         "goes round in a circle"),
        ({"experiments": [{"name": "a", "distill_weight": 1.5}]}, "experiments.0.distill_weight: must be <= 1"),
        ({"experiments": [{"name": "a", "distill_mel_weight": 0.5}]}, "a.distill_mel_weight needs distill_from"),
        ({"experiments": [{"name": "a", "init_align": True}]}, "a.init_align needs init_from"),
    ],
)
def test_model_keys_are_checked_when_the_config_is_validated(bad, needle):
    """Overrides are checked by the schema's description of the model keys, before any stage runs."""
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        validate_config(bad)


def test_presets_are_data_checked_by_the_schema():
    from lipspeech.core.config import load_schema, preset_config, preset_names

    schema = load_schema()
    props = schema["properties"]
    # the schema's preset names are the presets files' (one list of names each)
    assert tuple(props["model"]["properties"]["preset"]["enum"]) == tuple(sorted(preset_names("model")))
    assert set(props["experiments"]["items"]["properties"]["preset"]["enum"]) == set(preset_names("model"))
    assert set(props["vocoder"]["properties"]["preset"]["enum"]) == set(preset_names("vocoder"))
    for family, definition in (("model", "model_keys"), ("vocoder", "hifigan_keys")):
        for name in preset_names(family):  # each preset names every key the schema describes
            assert set(preset_config(family, name)) == set(schema["definitions"][definition]["properties"])
    # a preset that starts from another takes its keys and changes some
    tiny, small = preset_config("model", "tiny"), preset_config("model", "small")
    assert tiny["frontend"] == small["frontend"] == "tiny" and (tiny["d_model"], small["d_model"]) == (64, 128)
    assert preset_config("vocoder", "v2")["upsample_initial_channel"] == 128
    assert preset_config("vocoder", "v2")["mpd_channels"] == preset_config("vocoder", "v1")["mpd_channels"]
    with pytest.raises(ConfigError, match="vocoder config key resblock: 3 is not one of 1, 2"):
        preset_config("vocoder", "tiny", {"resblock": 3})
    with pytest.raises(ConfigError, match="model preset 'huge': unknown"):
        preset_config("model", "huge")


def test_section_config_is_the_schema_defaults_with_overrides():
    from lipspeech.core.config import default_section, load_schema, section_config
    from lipspeech.training.config import LOSS_NAMES

    assert section_config("train") == default_section("train")
    assert section_config("vocoder.train", {"lr": 0.5})["lr"] == 0.5
    with pytest.raises(ConfigError, match="vocoder.train config key lr_max: unknown key"):
        section_config("vocoder.train", {"lr_max": 1})
    with pytest.raises(ConfigError, match="train config key seed: missing"):
        section_config("train", {"lr": 1e-3}, complete=True)
    with pytest.raises(ConfigError, match="train config key batch_size: must be >= 1, got 0"):
        section_config("train", {"batch_size": 0})
    # the model's loss names are the ones the schema lets best_metric pick
    train_schema = load_schema()["properties"]["train"]["properties"]
    assert set(LOSS_NAMES) == set(train_schema["best_metric"]["enum"])


def test_config_files_merge_as_snakemake_merges_them(tmp_path, capsys):
    """Later files over earlier, mappings key by key, lists whole; `lipspeech config` prints the
    validated result, a section of it, and each experiment's resolved model config."""
    import yaml

    from lipspeech.cli import main as cli_main
    from lipspeech.core.config import merge_config

    assert merge_config({"a": {"x": 1, "y": [1, 2]}, "b": 1}, {"a": {"y": [3]}, "c": 2}) == \
        {"a": {"x": 1, "y": [3]}, "b": 1, "c": 2}
    base, over = tmp_path / "base.yaml", tmp_path / "over.yaml"
    base.write_text("train: {max_steps: 50, lr: 0.002, val_every: 10}\nexperiments: [{name: a, preset: tiny}]\n")
    over.write_text("train: {max_steps: 60}\nexperiments: [{name: b, preset: tiny, overrides: {d_model: 32}}]\n")
    merged = load_config(base, over)
    assert (merged["train"]["max_steps"], merged["train"]["lr"]) == (60, 0.002)
    assert [e["name"] for e in merged["experiments"]] == ["b"]
    assert cli_main(["config", str(base), str(over), "--section", "train"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == merged["train"]
    assert cli_main(["config", str(base), str(over), "--resolve", "--section", "resolved_models.b"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["d_model"] == 32 and resolved["frontend"] == "tiny" and len(resolved) == 54
    assert cli_main(["config", str(base), str(over), "--describe", "--section", "train"]) == 0
    described = capsys.readouterr().out
    assert yaml.safe_load(described) == merged["train"] and "max_steps: 60" in described
    assert "# Peak learning rate" in described.split("lr: 0.002")[1].splitlines()[0]
    assert cli_main(["config", "--section", "trian"]) != 0
    assert "no such section" in capsys.readouterr().err
