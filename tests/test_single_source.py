"""One source for every setting: the schema (and the presets files it checks) is the only place a
default value is written. This test reads every Python file of the package and fails on a
function parameter default, a dataclass field default, a dict-literal entry or a call keyword
whose name is a config key and whose value is that key's default: a second copy that would
silently disagree with the schema the day one of them changes."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, Iterator

from lipspeech.core.config import load_schema, preset_config, preset_names

PACKAGE = Path(__file__).resolve().parents[1] / "lipspeech"

# (file, name): why the same name and value there is not the config key's default restated
NOT_A_COPY = {
    ("training/bundle.py", "frontend_downsample"):
        "ADDED_MODEL_KEYS: the value that reproduces checkpoints written before the key existed",
    ("data/synth/face.py", "seed"): "a generated face's seed (callers pass the speaker's), not vocoder.griffin_lim.seed",
    ("training/data.py", "seed"): "synthetic_utterances' data seed (tests, benchmarks), not vocoder.griffin_lim.seed",
    ("training/synthesis.py", "seed"): "the post-net's z seed, not vocoder.griffin_lim.seed",
    ("training/stage.py", "split"): "run_synthesize's split argument, not units_analysis.split",
    ("vocoder/stage.py", "split"): "run_vocode's split argument, not units_analysis.split",
    ("training/stage.py", "batch_size"): "synthesis's inference batch (no config key), not train.batch_size",
    ("training/synthesis.py", "batch_size"): "synthesis's inference batch (no config key), not train.batch_size",
    ("commands/speak.py", "seed"): "the post-net's z seed of speak, not vocoder.griffin_lim.seed",
    ("commands/liveengine.py", "seed"): "the post-net's z seed of live (EngineOptions), not vocoder.griffin_lim.seed",
    ("commands/speak.py", "device"): "speak's own --device (no config key), not ssl.device",
    ("commands/speak.py", "kind"): "--vocoder griffin-lim picks the Griffin-Lim vocoder, not vocoder.kind's default",
    ("models/ltbs.py", "enabled"): "torch.autocast(enabled=False) around the flow, not units_analysis.enabled",
    ("vocoder/train.py", "drop_last"): "the vocoder keeps its last smaller batch (vocoder.train has no drop_last)",
}


def _schema_defaults() -> dict[str, list[tuple[str, Any]]]:
    """Config key name -> [(where, default)], over every section, the definitions and the presets."""
    out: dict[str, list[tuple[str, Any]]] = {}

    def walk(node: Any, path: list[str]) -> None:
        if not isinstance(node, dict):
            return
        for key, sub in (node.get("properties") or {}).items():
            if isinstance(sub, dict) and "default" in sub and not isinstance(sub["default"], (dict, type(None))):
                out.setdefault(key, []).append((".".join(path + [key]), sub["default"]))
            walk(sub, path + [key])
        walk(node.get("items"), path + ["[]"])

    walk(load_schema(), [])
    for family in ("model", "vocoder"):
        for preset in preset_names(family):
            for key, value in preset_config(family, preset).items():
                out.setdefault(key, []).append((f"{family} preset {preset}", value))
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return type(a) in (int, float, str) and type(b) in (int, float, str) and a == b


def _named_values(tree: ast.AST) -> Iterator[tuple[str, ast.expr, str]]:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args.posonlyargs + node.args.args
            for arg, default in zip(args[len(args) - len(node.args.defaults):], node.args.defaults):
                yield arg.arg, default, "parameter default"
            for arg, default in zip(node.args.kwonlyargs, node.args.kw_defaults):
                if default is not None:
                    yield arg.arg, default, "parameter default"
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and item.value is not None and isinstance(item.target, ast.Name):
                    yield item.target.id, item.value, "field default"
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    yield key.value, value, "dict entry"
        elif isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg:
                    yield kw.arg, kw.value, "call keyword"


def copies_of_defaults(package: Path = PACKAGE) -> list[str]:
    defaults = _schema_defaults()
    found = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        for name, node, kind in _named_values(ast.parse(path.read_text())):
            if name not in defaults or (rel, name) in NOT_A_COPY:
                continue
            try:
                value = ast.literal_eval(node)
            except ValueError:
                continue
            where = next((w for w, d in defaults[name] if _same(value, d)), None)
            if where is not None:
                found.append(f"lipspeech/{rel}:{node.lineno}: {kind} {name}={value!r} restates {where}")
    return found


def test_no_default_is_written_twice():
    found = copies_of_defaults()
    assert not found, "defaults written outside the schema:\n" + "\n".join(found)


def test_the_scan_finds_a_restated_default(tmp_path):
    """The scan is not blind: a parameter restating mel.n_fft, a dataclass field restating a model
    preset's d_model and a dict entry restating train.lr are each found; other values are not."""
    pkg = tmp_path / "lipspeech"
    pkg.mkdir()
    (pkg / "x.py").write_text(
        "from dataclasses import dataclass\n"
        "def stft(x, n_fft=1024, hop=7):\n    return x\n"
        "@dataclass\nclass C:\n    d_model: int = 384\n    other: int = 384\n"
        "CFG = {'lr': 0.001, 'batch_size': 9}\n"
    )
    found = copies_of_defaults(pkg)
    assert [f.split(": ")[1].split(" restates")[0] for f in found] == [
        "parameter default n_fft=1024", "field default d_model=384", "dict entry lr=0.001"]
