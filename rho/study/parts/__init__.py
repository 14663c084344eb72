"""The study's parts, one module per notebook: read what the stages wrote, make tables and figures.

=====================  ====================  ===================================================
notebook               module                final function (writes ``results/<profile>/<part>/``)
=====================  ====================  ===================================================
``01_data``            :mod:`.data`            :func:`data_part`
``02_token_dynamics``  :mod:`.token_dynamics`  :func:`token_dynamics_part`
``03_reference_model`` :mod:`.reference_model` :func:`reference_part`
``04_math_cpt``        :mod:`.math_cpt`        :func:`math_cpt_part`
``05_general_cpt``     :mod:`.general_cpt`     :func:`general_cpt_part`
``06_self_reference``  :mod:`.self_reference`  :func:`self_reference_part`
``07_analysis``        :mod:`.analysis`        :func:`analysis_part` (incl. ratio ablation, weak-to-strong)
``08_report``          :mod:`.report`          :func:`report_part`
=====================  ====================  ===================================================

:mod:`.reader` holds what they share: evaluation results, averages, training curves, completions,
claim verdicts and the writers.  Each module's other functions are the notebook's steps, one each.

The names of every module are re-exported here lazily (``from rho.study import parts;
parts.math_cpt_part(study)``): importing the package imports no part, so a notebook stage runs
only its own module and what that imports (its ``dvc.yaml`` deps).
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> module of this package that defines it.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        (
            "TABLE1_ROLES",
            "HELDOUT_TASKS",
            "PRIMARY",
            "write_table3",
            "part_dir",
            "write_measured",
            "titled",
            "runs_table",
            "CURVE_METRICS",
            "with_all_token_loss",
            "training_curves",
            "plot_training_curves",
            "selected_fraction",
            "tokens_label",
            "trained_tokens",
            "eval_results",
            "mean_stderr",
            "average_accuracy",
            "accuracy_wide",
            "task_accuracy",
            "paper_rows",
            "avg_curve",
            "read_completions",
            "sample_completions",
            "claim_verdicts",
        ),
        "reader",
    ),
    "data_part": "data",
    "token_dynamics_part": "token_dynamics",
    "reference_part": "reference_model",
    **dict.fromkeys(
        ("math_cpt_part", "tokens_to_reach", "run_step_time_ratio", "STEP_TIME_FILE"), "math_cpt"
    ),
    "general_cpt_part": "general_cpt",
    "self_reference_part": "self_reference",
    "analysis_part": "analysis",
    **dict.fromkeys(("report_part", "collect_measured", "PARTS"), "report"),
}
_ALIASES = {"_ours": ("reader", "paper_rows"), "_fixed_selection": ("analysis", "fixed_selection")}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` on first use and return the name."""
    if name in _EXPORTS:
        module, attr = _EXPORTS[name], name
    elif name in _ALIASES:
        module, attr = _ALIASES[name]
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), attr)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
