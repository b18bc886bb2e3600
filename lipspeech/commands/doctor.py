"""``lipspeech doctor``: is everything the configured pipeline needs on this machine?

One line per check: ``ok``, ``MISSING`` (needed by this config: what to do follows the
arrow), ``warn`` (works, but worth knowing) or ``--`` (not needed by this config).
Exit status 0 when nothing the config needs is missing, 1 otherwise.

Only the standard library is imported at module level, so the doctor runs (and says
what to install) in an environment where the pipeline's own dependencies are broken.
Nothing is downloaded and nothing is written.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import importlib
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # the config's classes import its dependencies: read in run_checks, once the config loaded
    from lipspeech.core.settings import EvaluateConfig, SslConfig, TrainConfig

OK, MISSING, WARN, NOT_NEEDED = "ok", "MISSING", "warn", "--"
DEPS_HINT = "pip install -r requirements.lock && pip install --no-deps -e . (or `make venv`)"
# located by find_spec only: face_recognition_models' __init__ needs pkg_resources (the pipeline never
# imports it), importing snakemake sets up its shell, with warnings when PATH is incomplete, and importing
# the SLURM executor plugin runs `which sacct` (it raises where PATH has no `which`; only
# `snakemake --executor slurm` imports it, on a cluster's login node)
NOT_IMPORTED = {"face_recognition_models", "snakemake", "snakemake_executor_plugin_slurm"}
# distribution -> module, for when the installed metadata cannot say (lipspeech run from a source tree)
FALLBACK_DEPS = {
    "numpy": "numpy", "pandas": "pandas", "pyarrow": "pyarrow", "pyyaml": "yaml", "jsonschema": "jsonschema",
    "tqdm": "tqdm", "ffmpeg-python": "ffmpeg", "soundfile": "soundfile", "scipy": "scipy",
    "opencv-python-headless": "cv2", "scikit-image": "skimage", "matplotlib": "matplotlib", "dlib-bin": "dlib",
    "face_recognition_models": "face_recognition_models", "torch": "torch", "snakemake": "snakemake",
    "transformers": "transformers", "faiss-cpu": "faiss", "pyworld-prebuilt": "pyworld", "librosa": "librosa",
    "tensorboard": "tensorboard", "pocketsphinx": "pocketsphinx", "jiwer": "jiwer", "pystoi": "pystoi",
    "pesq": "pesq", "onnxruntime": "onnxruntime", "speechmos": "speechmos", "praatio": "praatio",
    "ai-edge-litert": "ai_edge_litert", "aiohttp": "aiohttp",
}


@dataclass
class Check:
    """The outcome of one check: ``status`` is OK, MISSING, WARN or NOT_NEEDED."""

    name: str
    status: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"  {self.status:<8} {self.name:<16} {self.detail}"
        return text + (f" -> {self.fix}" if self.fix and self.status in (MISSING, WARN) else "")


def _need(needed: bool, name: str, detail: str, fix: str) -> Check:
    """A check that failed: MISSING where this config needs it, else only a note."""
    return Check(name, MISSING if needed else NOT_NEEDED, detail + ("" if needed else " (not needed by this config)"),
                 fix)


# --------------------------------------------------------------------------- checks
def check_python_deps() -> list[Check]:
    """Every runtime dependency of the lipspeech distribution installed and importable."""
    try:
        reqs = importlib.metadata.requires("lipspeech") or []
        names = [r.split(";")[0] for r in reqs if "extra ==" not in r]
        names = [n.split("[")[0].strip() for n in names]
        dists = [_dist_name(n) for n in names]
    except importlib.metadata.PackageNotFoundError:
        dists = list(FALLBACK_DEPS)
    try:
        modules_of = _modules_by_dist()
    except Exception:  # broken metadata of some unrelated package
        modules_of = {}
    bad: list[Check] = []
    for dist in dists:
        key = _norm(dist)
        try:
            importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            if FALLBACK_DEPS.get(dist) and importlib.util.find_spec(FALLBACK_DEPS[dist]) is not None:
                pass  # importable without metadata (e.g. a system package)
            else:
                bad.append(Check(f"python: {dist}", MISSING, "not installed", DEPS_HINT))
                continue
        module = _main_module(dist, modules_of.get(key, []))
        try:
            if module in NOT_IMPORTED:
                if importlib.util.find_spec(module) is None:
                    raise ImportError(f"no module named {module}")
            else:
                importlib.import_module(module)
        except Exception as exc:  # a broken binary wheel raises all sorts
            bad.append(Check(f"python: {dist}", MISSING, f"import {module} fails: {_one_line(exc)}", DEPS_HINT))
    if bad:
        return bad
    return [Check("python packages", OK, f"{len(dists)} dependencies importable (Python {sys.version.split()[0]})")]


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _dist_name(requirement: str) -> str:
    for i, ch in enumerate(requirement):
        if ch in "<>=!~ (":
            return requirement[:i].strip()
    return requirement.strip()


def _main_module(dist: str, listed: list[str]) -> str:
    """The module that stands for a distribution (its metadata may list stale extra names)."""
    if dist in FALLBACK_DEPS:
        return FALLBACK_DEPS[dist]
    own = _norm(dist).replace("-", "_")
    if own in listed or not listed:
        return own
    return listed[0]


def _modules_by_dist() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        if module.startswith("_") or "." in module:
            continue
        for dist in dists:
            out.setdefault(_norm(dist), []).append(module)
    for mods in out.values():
        mods.sort()
    return out


def check_console_script() -> Check:
    """The ``lipspeech`` the workflow's rules run, found as their shell prefix finds it
    (workflow/rules/common.smk): the console script beside the interpreter that runs Snakemake
    (this one, for ``.venv/bin/snakemake``), whatever PATH holds; else ``python -m lipspeech.cli``
    with this checkout on PYTHONPATH, which works where the job's ``python`` has the dependencies
    (a conda environment of envs/lipspeech.yaml), hence only a warning here."""
    beside = Path(sys.executable).parent / "lipspeech"
    if beside.exists():
        return Check("lipspeech cmd", OK, f"{beside} (beside this Python: what the rules run)")
    on_path = shutil.which("lipspeech")
    return Check("lipspeech cmd", WARN,
                 f"no console script beside {sys.executable}"
                 + (f" ({on_path} on PATH is not what the rules run)" if on_path else "")
                 + "; the rules then run `python -m lipspeech.cli` with the python on the job's PATH",
                 "pip install --no-deps -e . into this environment, or run Snakemake with --sdm conda")


def check_ffmpeg() -> Check:
    missing = [tool for tool in ("ffmpeg", "ffprobe") if shutil.which(tool) is None]
    if missing:
        return Check("ffmpeg", MISSING, f"{' and '.join(missing)} not on PATH",
                     "make deps (or: apt-get install ffmpeg)")
    try:
        first = subprocess.run(["ffmpeg", "-hide_banner", "-version"], capture_output=True, text=True,
                               timeout=30).stdout.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError) as exc:
        return Check("ffmpeg", MISSING, f"ffmpeg does not run: {_one_line(exc)}", "make deps (or: apt-get install ffmpeg)")
    return Check("ffmpeg", OK, f"{' '.join(first.split()[:3])} ({shutil.which('ffmpeg')})")


def check_espeak(needed: bool) -> Check:
    """espeak-ng: the SynthGRID voices (the program, and its library for phoneme timings)."""
    fix = "make deps (or: apt-get install espeak-ng libespeak-ng1)"
    if shutil.which("espeak-ng") is None:
        return _need(needed, "espeak-ng", "espeak-ng not on PATH", fix)
    for name in ("libespeak-ng.so.1", "libespeak-ng.so", ctypes.util.find_library("espeak-ng")):
        if not name:
            continue
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        return Check("espeak-ng", OK, f"{shutil.which('espeak-ng')}, {name}")
    return _need(needed, "espeak-ng", "libespeak-ng.so.1 cannot be loaded", fix)


def check_dlib(needed: bool) -> Check:
    """dlib and the 68-point model of face_recognition_models (found without importing the package)."""
    fix = "pip install dlib-bin face_recognition_models (both in requirements.lock)"
    if importlib.util.find_spec("dlib") is None:
        return _need(needed, "dlib landmarks", "dlib not installed", fix)
    spec = importlib.util.find_spec("face_recognition_models")
    locs = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locs:
        model = Path(loc) / "models" / "shape_predictor_68_face_landmarks.dat"
        if model.is_file():
            return Check("dlib landmarks", OK, str(model))
    return _need(needed, "dlib landmarks", "shape_predictor_68_face_landmarks.dat not found", fix)


def check_mediapipe(needed: bool) -> Check:
    """The default face backend: the LiteRT interpreter and the face models of the mediapipe 0.10 wheel."""
    fix = ("pip install ai-edge-litert and pip install --no-deps mediapipe==0.10.21 (requirements.lock, "
           "requirements-nodeps.lock), or set roi.backend: dlib")
    if importlib.util.find_spec("ai_edge_litert") is None:
        return _need(needed, "mediapipe faces", "ai-edge-litert (the LiteRT interpreter) not installed", fix)
    from lipspeech.vision.backends import BackendError
    from lipspeech.vision.facemesh import model_path

    try:
        paths = [model_path(m) for m in ("face_detection/face_detection_full_range_sparse.tflite",
                                          "face_detection/face_detection_short_range.tflite",
                                          "face_landmark/face_landmark.tflite")]
    except BackendError as exc:
        return _need(needed, "mediapipe faces", str(exc).split(": ", 1)[-1], fix)
    return Check("mediapipe faces", OK if needed else NOT_NEEDED, str(paths[0].parent.parent))


def check_face_alignment(needed: bool) -> Check:
    """The optional FAN backend: the package and its weights, which lipspeech never downloads."""
    how = ("pip install face-alignment and put 2DFAN4*.zip and s3fd*.pth into $TORCH_HOME/hub/checkpoints "
           "(or set roi.backend: dlib)")
    if importlib.util.find_spec("face_alignment") is None:
        return _need(needed, "face_alignment", "package not installed (optional backend)", how)
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch")
    ckpt = Path(home) / "hub" / "checkpoints"
    missing = [w for w in ("2DFAN4", "s3fd") if not any(ckpt.glob(w + "*"))]
    if missing:
        return _need(needed, "face_alignment", f"weights {', '.join(missing)} not in {ckpt}", how)
    return Check("face_alignment", OK if needed else NOT_NEEDED, f"package and weights in {ckpt}"
                 + ("" if needed else " (roi.backend is not face_alignment)"))


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache folder, by the environment variables huggingface_hub reads."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(xdg) / "huggingface" / "hub"


def _has_weights(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(
        any(folder.glob(pattern)) for pattern in ("*.safetensors", "pytorch_model*.bin"))


def check_hubert(ssl: SslConfig) -> Check:
    """HuBERT weights where ssl.source is hubert: ssl.model as a local folder or in the HF cache."""
    if ssl.source != "hubert":
        return Check("HuBERT weights", NOT_NEEDED, f"not needed (ssl.source is {ssl.source})")
    name = str(ssl.model)
    fix = (f"save the model with save_pretrained into a folder and give it as ssl.model, or on a machine with "
           f"internet `huggingface-cli download {name}` into {hf_hub_cache()}; or set ssl.source: mfcc")
    local = Path(name).expanduser()
    if local.is_dir():
        if _has_weights(local):
            return Check("HuBERT weights", OK, f"{local} (local folder)")
        return Check("HuBERT weights", MISSING, f"{local} has no config.json and weights", fix)
    if name.startswith((os.sep, ".", "~")) or name.count("/") > 1:
        return Check("HuBERT weights", MISSING, f"{name}: no such folder", fix)
    repo = hf_hub_cache() / ("models--" + name.replace("/", "--"))
    for snapshot in sorted((repo / "snapshots").glob("*")):
        if _has_weights(snapshot):
            return Check("HuBERT weights", OK, f"{name} in the Hugging Face cache ({snapshot})")
    return Check("HuBERT weights", MISSING, f"{name} not in the Hugging Face cache {hf_hub_cache()}", fix)


def check_pocketsphinx(needed: bool) -> Check:
    """The offline ASR of the evaluation: pocketsphinx and its bundled en-us model."""
    fix = "pip install pocketsphinx (in requirements.lock; its wheel bundles the en-us model)"
    spec = importlib.util.find_spec("pocketsphinx")
    if spec is None:
        return _need(needed, "pocketsphinx", "package not installed", fix)
    try:
        import pocketsphinx

        model = Path(pocketsphinx.get_model_path()) / "en-us"
    except Exception as exc:
        return _need(needed, "pocketsphinx", f"import fails: {_one_line(exc)}", fix)
    if not model.is_dir() or not any(model.iterdir()):
        return _need(needed, "pocketsphinx", f"en-us model not found at {model}", fix)
    return Check("pocketsphinx", OK, str(model))


def check_metric_families(evaluate: EvaluateConfig) -> list[Check]:
    """The evaluation's metric families that need a package of their own (DNSMOS, speaker similarity):
    needed when evaluate.metrics selects them."""
    from lipspeech.evaluation.families import MetricUnavailable, locate_models

    selected = set(evaluate.metrics)
    out = []
    for family, name, fix in (("dnsmos", "DNSMOS models", "pip install speechmos onnxruntime"),
                              ("speaker", "speaker encoder", "pip install --no-deps resemblyzer")):
        try:
            where = locate_models(family)
        except MetricUnavailable as exc:
            out.append(_need(family in selected, name, str(exc).split(":")[0],
                             f"{fix} (make installs it), or remove {family} from evaluate.metrics"))
            continue
        out.append(Check(name, OK, str(where) + ("" if family in selected else " (not in evaluate.metrics)")))
    return out


def check_gpu(train: TrainConfig, ssl: SslConfig) -> Check:
    """A CUDA GPU: required only where the config asks for cuda explicitly."""
    wants = [f"{section}.device: {device}" for section, device in (("train", train.device), ("ssl", ssl.device))
             if str(device).startswith("cuda")]
    try:
        import torch
    except Exception as exc:
        return Check("GPU", MISSING if wants else WARN, f"torch not importable ({_one_line(exc)})", DEPS_HINT)
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return Check("GPU", OK, f"CUDA {torch.version.cuda}: {names}")
    if wants:
        return Check("GPU", MISSING, f"no CUDA device, but {', '.join(wants)}",
                     "run on a GPU machine (a CUDA build of torch), or set the device to auto or cpu")
    return Check("GPU", WARN, "no CUDA device: everything runs on the CPU",
                 "fine for the SynthGRID demo; GRID/Lip2Wav training wants a GPU")


def check_disk(results: Path, min_free_gb: float) -> Check:
    """Free space where the results go (the nearest existing folder above results/{corpus})."""
    where = results.absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free / 1e9
    detail = f"{free:.1f} GB free under {where} (want at least {min_free_gb:g} GB for this corpus)"
    if free < min_free_gb:
        return Check("disk", MISSING, detail, f"free some space or point results/{results.name} elsewhere (a symlink)")
    return Check("disk", OK, detail)


def _one_line(exc: object) -> str:
    return " ".join(str(exc).split())[:200]


# --------------------------------------------------------------------------- driver
def run_checks(cfg: dict[str, Any], results: Path, min_free_gb: float | None = None) -> list[Check]:
    """Every check, for a validated config."""
    from lipspeech.core.settings import Settings

    settings = Settings.from_section(cfg)
    kind, backend, evaluate = settings.corpus.kind, settings.roi.backend, settings.evaluate
    if min_free_gb is None:
        min_free_gb = 2.0 if kind == "synthgrid" else 20.0
    checks: list[Callable[[], Check | list[Check]]] = [
        check_python_deps,
        check_console_script,
        check_ffmpeg,
        lambda: check_espeak(kind == "synthgrid"),
        lambda: check_dlib(backend in ("dlib", "mediapipe")),  # mediapipe refines with dlib
        lambda: check_mediapipe(backend == "mediapipe"),
        lambda: check_face_alignment(backend == "face_alignment"),
        lambda: check_hubert(settings.ssl),
        lambda: check_pocketsphinx(evaluate.asr == "pocketsphinx" and "asr" in evaluate.metrics),
        lambda: check_metric_families(evaluate),
        lambda: check_gpu(settings.train, settings.ssl),
        lambda: check_disk(results, min_free_gb),
    ]
    out: list[Check] = []
    for check in checks:
        res = check()
        out.extend(res if isinstance(res, list) else [res])
    return out


def doctor(config_path: str | None, results: str | None = None, min_free_gb: float | None = None,
           out: Any = None) -> int:
    """Run the checks for a config file (None: ./config.yaml when present, else the defaults); print; 0 or 1."""
    out = out or sys.stdout
    if config_path is None and Path("config.yaml").is_file():
        config_path = "config.yaml"
    print(f"lipspeech doctor (config: {config_path or 'defaults'})", file=out)
    try:
        from lipspeech.core.config import load_config

        cfg = load_config(config_path)
    except ImportError as exc:
        print(Check("config", MISSING, f"cannot be read: {_one_line(exc)}", DEPS_HINT).line(), file=out)
        for c in check_python_deps():
            print(c.line(), file=out)
        return 1
    except Exception as exc:  # ConfigError: names the key
        print(Check("config", MISSING, _one_line(exc), "fix the config file").line(), file=out)
        return 1
    from lipspeech.core.settings import CorpusConfig

    res_dir = Path(results) if results else Path("results") / CorpusConfig.from_section(cfg["corpus"]).name
    checks = run_checks(cfg, res_dir, min_free_gb)
    for c in checks:
        print(c.line(), file=out)
    missing = [c.name for c in checks if c.status == MISSING]
    print(f"missing: {', '.join(missing)}" if missing else "everything this config needs is here", file=out)
    return 1 if missing else 0


def cmd_doctor(args: argparse.Namespace) -> int:
    return doctor(args.config, args.results, args.min_free_gb)


def register(sub: Any) -> None:
    p = sub.add_parser("doctor", help="check that this machine has what the configured pipeline needs")
    p.add_argument("--config", help="config.yaml to check against (default: ./config.yaml, else the defaults)")
    p.add_argument("--results", help="results folder whose disk is checked (default: results/{corpus.name})")
    p.add_argument("--min-free-gb", type=float,
                   help="free disk wanted (default: 2 GB for the synthgrid demo, 20 GB for a real corpus)")
    p.set_defaults(func=cmd_doctor)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m lipspeech.commands.doctor")
    register(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args(["doctor", *sys.argv[1:]])
    sys.exit(ns.func(ns))
