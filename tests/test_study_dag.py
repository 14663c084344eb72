"""The paper profiles' DAG, resolved by DVC itself: every input of a stage is made upstream (and,
under data/<profile>/, written by the data builder) or is a file in the repository; and the
evaluate stage reads the benchmark suite that the data stage writes (data/<profile>/eval)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from rho.data.paper import EVAL_DIR, hub_layout
from rho.evaluate.builtin_suite import build_builtin_suite
from rho.evaluate.tasks import resolve_tasks
from rho.study import Study, stages

ROOT = Path(__file__).resolve().parents[1]
#: Folders of stage outputs (DVC-cached or results); every other dependency is a repository file.
MADE = ("data", "runs", "scores", "evals", "results")


def _stages(profile: str, tmp_path: Path) -> dict[str, tuple[list[str], list[str]]]:
    """``{stage: (deps, outs)}`` of dvc.yaml with ``profile`` set, as DVC resolves the templates."""
    repo_mod = pytest.importorskip("dvc.repo")
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    params = (ROOT / "params.yaml").read_text()
    params, n = re.subn(r"^profile: *\w+", f"profile: {profile}", params, count=1, flags=re.M)
    assert n == 1, "params.yaml has no top-level `profile:` line"
    (tmp_path / "params.yaml").write_text(params)
    repo = repo_mod.Repo.init(tmp_path, no_scm=True)
    try:
        return {
            s.addressing.split(":")[-1]: (
                [str(d.def_path) for d in s.deps],
                [str(o.def_path) for o in s.outs],
            )
            for s in repo.index.stages
        }
    finally:
        repo.close()


def _producer(dep: str, outs: dict[str, str]) -> str | None:
    return next((o for o in outs if dep == o or dep.startswith(o + "/")), None)


def _upstream(stages: dict, targets: tuple[str, ...], outs: dict[str, str]) -> set[str]:
    todo, seen = list(targets), set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += [outs[o] for d in stages[name][0] if (o := _producer(d, outs)) is not None]
    return seen


@pytest.mark.parametrize(
    "profile, targets",
    [
        ("paper", None),  # the whole study
        # paper_7b runs only the 7B rows of Table 1 (params.yaml): those evaluations and what they need
        ("paper_7b", ("evaluate@base", "evaluate@math_clm", "evaluate@math_slm_70")),
    ],
)
def test_paper_dag_inputs_are_made_upstream(tmp_path, profile, targets):
    stages = _stages(profile, tmp_path)
    outs = {o: name for name, (_, os_) in stages.items() for o in os_}
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    groups = ("clm_runs", "slm_runs", "slm_variants", "random_runs")
    n_runs = sum(len(params[g] or {}) for g in groups)
    # base, base_large, reference, the runs, the scorers, one evaluation each, 8 notebooks (01: data)
    expected = 3 + n_runs + len(params["scorers"]) + len(params["eval_runs"]) + 8
    assert f"data/{profile}" in outs and len(stages) == expected
    layout = hub_layout(profile)
    assert "eval" in layout
    run = _upstream(stages, targets, outs) if targets else set(stages)
    unmade, not_written, absent = [], [], []
    for name in sorted(run):
        for dep in stages[name][0]:
            if dep.split("/")[0] not in MADE:
                if not (ROOT / dep).exists():
                    absent.append((name, dep))
                continue
            assert dep.split("/")[1] == profile, (name, dep)
            producer = _producer(dep, outs)
            if producer is None:
                unmade.append((name, dep))
            elif producer == f"data/{profile}" and dep != producer:
                rel = dep.removeprefix(producer + "/")
                if not any(rel == p or rel.startswith(p + "/") for p in layout):
                    not_written.append((name, dep))
    assert not unmade, f"inputs no stage makes: {unmade}"
    assert not not_written, f"inputs the {profile} data build does not write ({layout}): {not_written}"
    assert not absent, f"repository inputs that do not exist: {absent}"
    evaluate = [d for d in stages["evaluate@math_clm"][0] if d.startswith("data/")]
    assert evaluate == [f"data/{profile}/eval"]


def test_paper_evaluate_reads_the_suite_the_data_stage_writes(tmp_path, monkeypatch):
    """``evaluate_run`` on the paper profile: the nine-task suite (here two of them) from
    data/paper/eval with the harness's grading, lm-eval's own general tasks, and no downstream
    loss on the paper's benchmarks (five of the nine have no reference solutions)."""
    import rho.evaluate as ev

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["profile"] = "paper"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    study = Study.load(tmp_path / "params.yaml")
    build_builtin_suite(study.world_dir / EVAL_DIR, ["sat", "math"])
    seen: dict = {}

    def evaluate_model(model, tasks, out_dir=None, **kw):
        specs = resolve_tasks(tasks, kw["data_root"])  # offline: the folder's problems
        seen["math"] = {s.name: (s.local_dir, s.grading, s.max_new_tokens) for s in specs}
        return pd.DataFrame({"task": tasks, "role": tasks, "metric": "exact_match", "value": 0.5})

    def run_lm_eval(model, names, include_path=None, **kw):
        seen["general"] = (list(names), include_path)
        return pd.DataFrame({"task": ["mmlu"], "role": "general", "metric": "acc", "value": 0.3})

    def downstream_loss(*args, **kw):
        raise AssertionError("downstream loss asked for on the paper's benchmarks")

    monkeypatch.setattr(ev, "evaluate_model", evaluate_model)
    monkeypatch.setattr(ev, "run_lm_eval", run_lm_eval)
    monkeypatch.setattr(ev, "downstream_loss", downstream_loss)
    monkeypatch.setattr(stages, "snapshots", lambda study, run: [(0, tmp_path / "final")])
    out = stages.evaluate_run(study, "general_slm")
    suite = study.world_dir / EVAL_DIR
    assert seen["math"] == {
        "math": (str(suite / "math"), "harness", 1024),
        "sat": (str(suite / "sat"), "harness", 1024),
    }
    assert seen["general"] == (list(ev.PAPER_GENERAL_TASKS), None)
    assert pd.read_csv(out / "results.csv")["task"].tolist() == ["sat", "math"]
    assert (out / "downstream.csv").read_text() == "run,tokens,task,downstream_loss\n"
    assert pd.read_csv(out / "general.csv")["task"].tolist() == ["mmlu"]
