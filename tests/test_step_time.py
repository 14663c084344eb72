"""C13: the SLM/CLM step-time ratio of a study's own runs, read from their log.jsonl files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rho.analysis import median_step_time, step_time_ratio
from rho.analysis.errors import AnalysisInputError
from rho.report.claims import CLAIMS


def _log(run: Path, times: list[float | None]) -> Path:
    run.mkdir(parents=True)
    lines = []
    for i, t in enumerate(times, start=1):
        rec = {"step": i, "tokens": 100 * i}
        if t is not None:
            rec["step_time_s"] = t
        lines.append(json.dumps(rec))
    (run / "log.jsonl").write_text("\n".join(lines) + "\n")
    return run


def test_ratio_of_median_step_times_without_the_warm_up_step(tmp_path) -> None:
    clm = _log(tmp_path / "clm", [9.0, 1.0, 1.2, 1.1])
    slm = _log(tmp_path / "slm", [5.0, 1.0, 0.9, 0.8])
    assert median_step_time(clm) == pytest.approx(1.1)
    assert median_step_time(slm / "log.jsonl", skip=0) == pytest.approx(0.95)
    assert step_time_ratio(slm, clm) == pytest.approx(0.9 / 1.1)
    c13 = next(c for c in CLAIMS if c.id == "C13")
    v = c13.evaluate(
        {"target_ratio": 0.6, "selected_frac": 0.6, "step_time_ratio": step_time_ratio(slm, clm)}
    )
    assert v.status == "reproduced" and "SLM/CLM step time 0.82x" in v.ours


def test_logs_without_step_times_are_refused(tmp_path) -> None:
    run = _log(tmp_path / "old", [None, None])
    with pytest.raises(AnalysisInputError, match="no step_time_s"):
        median_step_time(run)


def test_the_study_part_reports_none_when_a_log_lacks_step_times(tmp_path) -> None:
    from rho.study.parts import run_step_time_ratio

    class FakeStudy:
        def run_dir(self, run: str) -> Path:
            return tmp_path / run

    _log(tmp_path / "math_clm", [2.0, 1.0, 1.0])
    _log(tmp_path / "math_slm", [2.0, 1.5, 1.5])
    _log(tmp_path / "old", [None])
    assert run_step_time_ratio(FakeStudy(), "math_slm", "math_clm") == pytest.approx(1.5)
    assert run_step_time_ratio(FakeStudy(), "old", "math_clm") is None
