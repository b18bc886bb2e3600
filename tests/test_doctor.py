"""lipspeech doctor: one line per requirement, what to do for each missing one, exit 1 when the
configured pipeline lacks something."""

import io
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from lipspeech.cli import main as cli_main
from lipspeech.commands.doctor import MISSING, NOT_NEEDED, OK, WARN, check_console_script, check_gpu, check_hubert, doctor
from lipspeech.core.settings import SslConfig, TrainConfig

BIN = Path(sys.executable).parent


def _run(tmp_path, monkeypatch, config=None, path=None, **kw):
    monkeypatch.chdir(tmp_path)  # no config.yaml here unless written: the defaults
    if path is not None:
        monkeypatch.setenv("PATH", path)
    cfg = None
    if config is not None:
        cfg = tmp_path / "cfg.yaml"
        cfg.write_text(yaml.safe_dump(config))
    out = io.StringIO()
    code = doctor(str(cfg) if cfg else None, results=str(tmp_path / "results"), out=out, **kw)
    lines = out.getvalue().splitlines()
    return code, {ln.split()[1]: ln for ln in lines[1:-1]}, lines


def _path_with(tmp_path, *tools) -> str:
    """A PATH of links to just these tools (and the venv's lipspeech)."""
    d = tmp_path / "bin"
    d.mkdir(parents=True, exist_ok=True)
    for tool in tools:
        if shutil.which(tool):
            os.symlink(shutil.which(tool), d / tool)
    os.symlink(BIN / "lipspeech", d / "lipspeech")
    return str(d)


def test_everything_here_with_the_venv_not_activated(tmp_path):
    """This machine (make test installs ffmpeg, espeak-ng and the locked packages) has all the demo needs, and
    the venv's `lipspeech doctor` says so with the venv not activated (its bin/ not on PATH, as in a fresh
    checkout): the rules run the lipspeech beside Snakemake's interpreter, not PATH's (issue #29)."""
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p and Path(p).resolve() != BIN.resolve())
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"} | {"PATH": path}
    proc = subprocess.run([str(BIN / "lipspeech"), "doctor", "--results", str(tmp_path / "results")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert lines[-1] == "everything this config needs is here"
    checks = {ln.split()[1]: ln for ln in lines[1:-1]}
    for name in ("python", "lipspeech", "ffmpeg", "espeak-ng", "dlib", "mediapipe", "pocketsphinx", "disk"):
        assert checks[name].split()[0] == OK, checks[name]
    assert f"{BIN / 'lipspeech'} (beside this Python: what the rules run)" in checks["lipspeech"]
    assert "not needed (ssl.source is mfcc)" in checks["HuBERT"]


def test_lipspeech_command_is_the_one_the_rules_run(tmp_path, monkeypatch):
    """The rules run the console script beside Snakemake's interpreter whatever PATH holds
    (workflow/rules/common.smk): an unactivated venv is fine; an interpreter without one only warns."""
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    check = check_console_script()
    assert check.status == OK and str(BIN / "lipspeech") in check.detail
    bare = tmp_path / "bare" / "python"
    bare.parent.mkdir()
    monkeypatch.setattr(sys, "executable", str(bare))
    monkeypatch.setenv("PATH", str(BIN))
    check = check_console_script()
    assert check.status == WARN and f"no console script beside {bare}" in check.detail
    assert "is not what the rules run" in check.detail and "python -m lipspeech.cli" in check.detail


def test_missing_ffmpeg_is_reported_with_what_to_do(tmp_path, monkeypatch):
    code, checks, lines = _run(tmp_path, monkeypatch, path=_path_with(tmp_path, "espeak-ng"))
    assert code == 1
    assert checks["ffmpeg"].split()[0] == MISSING
    assert "ffmpeg and ffprobe not on PATH -> make deps (or: apt-get install ffmpeg)" in checks["ffmpeg"]
    assert checks["espeak-ng"].split()[0] == OK
    assert lines[-1] == "missing: ffmpeg"
    assert all(len(ln) < 400 for ln in lines)  # one line each


def test_what_the_config_does_not_need_does_not_fail(tmp_path, monkeypatch, fixtures_dir):
    """espeak-ng only matters for the synthgrid corpus."""
    config = {"corpus": {"kind": "grid", "root": str(fixtures_dir / "grid")}}
    code, checks, _ = _run(tmp_path, monkeypatch, config, path=_path_with(tmp_path, "ffmpeg", "ffprobe"),
                           min_free_gb=0.001)
    assert checks["espeak-ng"].split()[0] == NOT_NEEDED and "not needed by this config" in checks["espeak-ng"]
    assert code == 0
    code, _, _ = _run(tmp_path, monkeypatch, {}, path=_path_with(tmp_path / "x", "ffmpeg", "ffprobe"))
    assert code == 1  # the synthgrid demo does need it


def test_hubert_weights_local_folder_or_hf_cache(tmp_path, monkeypatch):
    ssl = SslConfig.default()
    assert check_hubert(replace(ssl, source="mfcc")).status == NOT_NEEDED
    missing = check_hubert(replace(ssl, source="hubert", model=str(tmp_path / "no_such_model")))
    assert missing.status == MISSING and "no such folder" in missing.detail and "ssl.source: mfcc" in missing.fix
    local = tmp_path / "hubert"
    local.mkdir()
    (local / "config.json").write_text("{}")
    assert check_hubert(replace(ssl, source="hubert", model=str(local))).status == MISSING  # no weights
    (local / "model.safetensors").write_bytes(b"x")
    assert check_hubert(replace(ssl, source="hubert", model=str(local))).status == OK
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    hub = check_hubert(replace(ssl, source="hubert", model="facebook/hubert-large-ll60k"))
    assert hub.status == MISSING and str(tmp_path / "hub") in hub.detail and "huggingface-cli download" in hub.fix
    snap = tmp_path / "hub" / "models--facebook--hubert-large-ll60k" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (snap / "pytorch_model.bin").write_bytes(b"x")
    assert check_hubert(replace(ssl, source="hubert", model="facebook/hubert-large-ll60k")).status == OK


def test_gpu_needed_only_when_asked_for(monkeypatch):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    train, ssl = replace(TrainConfig.default(), device="auto"), replace(SslConfig.default(), device="auto")
    assert check_gpu(train, ssl).status != MISSING
    gpu = check_gpu(replace(train, device="cuda"), ssl)
    assert gpu.status == MISSING and "train.device: cuda" in gpu.detail


def test_bad_config_and_full_disk(tmp_path, monkeypatch):
    code, _, lines = _run(tmp_path, monkeypatch, {"roi": {"smothing": 3}})
    assert code == 1 and "config key roi.smothing: unknown key" in lines[1]
    code, checks, _ = _run(tmp_path, monkeypatch, min_free_gb=1e9)
    assert code == 1 and checks["disk"].split()[0] == MISSING


def test_cli_subcommand(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", _path_with(tmp_path, "espeak-ng"))
    assert cli_main(["doctor", "--results", str(tmp_path)]) == 1
    assert "MISSING  ffmpeg" in capsys.readouterr().out


def test_mediapipe_models_missing(monkeypatch):
    """The default face backend without the mediapipe wheel's model files: MISSING, with what to install;
    with roi.backend: dlib the same finding is only a note."""
    import importlib.util

    from lipspeech.commands.doctor import MISSING, NOT_NEEDED, check_mediapipe

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mediapipe" else real(name, *a))
    check = check_mediapipe(True)
    assert check.status == MISSING and "face_detection_full_range_sparse.tflite not found" in check.detail
    assert "--no-deps mediapipe==0.10.21" in check.fix
    assert check_mediapipe(False).status == NOT_NEEDED
