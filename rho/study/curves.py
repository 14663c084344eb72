"""The training-loss CSV of each notebook part: the runs it reports, from their training logs.

``python -m rho.study notebook <name> --part <part>`` writes
``results/<profile>/<part>/training_losses.csv`` before the notebook runs (see
:func:`rho.analysis.curves_export.write_training_losses`); ``dvc.yaml`` declares it as a plot and
the notebook stage depends on those runs' ``log.jsonl``.
"""

from __future__ import annotations

from pathlib import Path

from rho.analysis.curves_export import write_training_losses
from rho.study.config import Study

TRAINING_LOSSES = "training_losses.csv"
#: Notebook part -> the ``part`` values (params.yaml runs) or special runs whose training it shows.
PART_RUN_GROUPS: dict[str, tuple[str, ...]] = {
    "reference_model": ("reference",),
    "math_cpt": ("math_cpt",),
    "general_cpt": ("general_cpt",),
    "self_reference": ("self_reference",),
    "analysis": ("ratio_ablation", "weak_to_strong", "sparse_backward"),
}
SPECIAL_RUNS = ("base", "base_large", "reference")


def part_runs(study: Study, part: str) -> list[str]:
    """The runs whose training losses the part exports (empty for parts that show no training)."""
    runs: list[str] = []
    for group in PART_RUN_GROUPS.get(part, ()):
        runs.extend([group] if group in SPECIAL_RUNS else study.runs_of(group))
    return runs


def export_training_losses(study: Study, part: str) -> Path | None:
    """Write ``results/<profile>/<part>/training_losses.csv`` (None: the part shows no training)."""
    runs = part_runs(study, part)
    if not runs:
        return None
    logs = {run: study.run_dir(run) / "log.jsonl" for run in runs}
    return write_training_losses(logs, study.results_dir / part / TRAINING_LOSSES)
