"""The evaluation's metric families (config ``evaluate.metrics``) and what each needs installed.

Checked where a missing package should be said: by the Snakefile when it loads the config (before
any job runs), by ``lipspeech doctor``, and by the evaluate stage before it scores anything. The
checks only look packages up (:func:`importlib.util.find_spec`); nothing heavy is imported.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from lipspeech.core.settings import EvaluateConfig

FAMILIES = ("asr", "signal", "dnsmos", "speaker")
#: each family's figures (summary.json keys, metrics.parquet columns), in table order
ASR_METRICS = ("wer", "cer")
SIGNAL_METRICS = ("stoi", "estoi", "pesq_nb", "mcd", "f0_mean", "f0_std", "f0_skew", "f0_kurt", "vuv_error",
                  "f0_rmse_cents", "energy_mae")
DNSMOS_METRICS = ("dnsmos_p808", "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl")
SPEAKER_METRICS = ("speaker_sim", "speaker_sim_other")
FIGURES = (*ASR_METRICS, *SIGNAL_METRICS, *DNSMOS_METRICS, *SPEAKER_METRICS)


def _packages(*names: str) -> Callable[[], str | None]:
    def check() -> str | None:
        missing = [n for n in names if importlib.util.find_spec(n) is None]
        return f"package(s) {', '.join(missing)} not installed" if missing else None
    return check


class MetricUnavailable(RuntimeError):
    """A metric family's package or the model files it ships are not installed (one line)."""


#: families whose models ship inside a package: family -> (module, function returning their path)
MODEL_LOCATORS: Mapping[str, tuple[str, str]] = {
    "dnsmos": ("lipspeech.evaluation.dnsmos", "model_dir"),
    "speaker": ("lipspeech.evaluation.speaker", "weights_path"),
}


def locate_models(family: str) -> Path:
    """Where a family's model files are installed; :class:`MetricUnavailable` when they are not."""
    module, function = MODEL_LOCATORS[family]
    return getattr(importlib.import_module(module), function)()


def _models(family: str) -> Callable[[], str | None]:
    def check() -> str | None:
        try:
            locate_models(family)
        except MetricUnavailable as exc:
            return str(exc)
        return None
    return check


#: family -> a check returning None when usable, else the one-line reason
CHECKS: Mapping[str, Callable[[], str | None]] = {
    "asr": lambda: None,  # the recogniser is checked by build_asr (evaluate.asr says which, or none)
    "signal": _packages("pystoi", "pesq", "pyworld"),
    "dnsmos": _models("dnsmos"),
    "speaker": _models("speaker"),
}


def family_problems(families: Sequence[str]) -> dict[str, str]:
    """family -> why it cannot run, for the selected ``families`` that cannot."""
    out = {}
    for fam in families:
        reason = CHECKS[fam]()
        if reason:
            out[fam] = reason
    return out


def check_families(eval_cfg: Mapping[str, Any] | EvaluateConfig) -> None:
    """Raise a one-line :class:`RuntimeError` naming the first family ``evaluate.metrics`` selects
    that cannot run."""
    problems = family_problems(EvaluateConfig.from_section(eval_cfg).metrics)
    if problems:
        fam, reason = next(iter(problems.items()))
        raise RuntimeError(f"config key evaluate.metrics: family {fam} cannot run: {reason}")
