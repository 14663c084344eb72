"""dvc.yaml lists every ``rho/`` file a stage runs, so no result goes stale without DVC noticing.

Each stage's command (``python -m rho.study <stage> <name> [--part PART]``) is followed from the
branch of :func:`rho.study.__main__._run_stage` that it takes; a notebook stage also runs the code
cells of ``notebooks/<name>.ipynb``.  The ``rho`` modules that path imports (module-level imports
of every module loaded, function-level imports of every function it calls: see
``tests/_helpers_imports.py``) must each be a dependency of the stage, by file or by a folder
holding it.  The ``evaluate`` stage loops over ``eval_runs`` of params.yaml, which must name every
model the study trains.
"""

from __future__ import annotations

import ast
import functools
import shlex
from pathlib import Path

import pytest
import yaml
from _helpers_imports import Closure, notebook_code

ROOT = Path(__file__).resolve().parents[1]

#: What every stage passes through but which computes no result: the package markers and the
#: command line / fork server that only choose the stage function.  Listing them would rerun the
#: whole study for an edit of the launcher.
LAUNCHER = frozenset(
    {"rho/__init__.py", "rho/study/__init__.py", "rho/study/__main__.py", "rho/study/server.py"}
)
ENTRY_MODULE = "rho.study.__main__"
DISPATCH = "_run_stage"


def dispatch_branch(tree_fn: ast.FunctionDef, stage: str) -> list[ast.stmt]:
    """The statements ``_run_stage`` runs for ``stage``: all but the ``if args.stage == ...`` chain, plus its branch."""
    out: list[ast.stmt] = []
    for stmt in tree_fn.body:
        if not isinstance(stmt, ast.If):
            out.append(stmt)
            continue
        cur = stmt
        while True:
            t = cur.test
            if (
                isinstance(t, ast.Compare)
                and isinstance(t.comparators[0], ast.Constant)
                and t.comparators[0].value == stage
            ):
                out.extend(cur.body)
                break
            if len(cur.orelse) == 1 and isinstance(cur.orelse[0], ast.If):
                cur = cur.orelse[0]
                continue
            out.extend(cur.orelse)
            break
    return out


def stage_files(root: Path, cmd: str) -> set[str]:
    """The ``rho/`` files (relative, posix) that ``cmd`` runs; raise ValueError for another command shape.

    Besides the modules: the data folders of their packages (templates, task YAMLs, assets: a
    package's sub-folders without ``__init__.py``), which those modules read.
    """
    argv = shlex.split(cmd)
    if argv[:3] != ["python", "-m", "rho.study"] or len(argv) < 4:
        raise ValueError(f"not a `python -m rho.study <stage> ...` command: {cmd!r}")
    notebook = argv[4] if argv[3] == "notebook" else None
    return set(_closure_files(root, argv[3], notebook))


def package_data(root: Path, files: set[str]) -> set[str]:
    """The files in the data folders of the packages that hold ``files``."""
    out = set()
    for pkg in {(root / f).parent for f in files}:
        for sub in pkg.iterdir():
            if sub.is_dir() and sub.name != "__pycache__" and not (sub / "__init__.py").exists():
                out.update(
                    p.relative_to(root).as_posix()
                    for p in sub.rglob("*")
                    if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
                )
    return out


@functools.cache
def _closure_files(root: Path, stage: str, notebook: str | None) -> frozenset[str]:
    closure = Closure(root)
    closure.add_module(ENTRY_MODULE)
    fn = closure.info(ENTRY_MODULE).defs[DISPATCH]
    assert isinstance(fn, ast.FunctionDef)
    closure.add_code(ENTRY_MODULE, dispatch_branch(fn, stage))
    if notebook is not None:
        nb = root / "notebooks" / f"{notebook}.ipynb"
        closure.add_source(str(nb), notebook_code(nb))
    files = closure.files()
    return frozenset(files | package_data(root, files))


def missing_deps(root: Path, stages: dict[str, tuple[str, list[str]]]) -> list[str]:
    """One line per (stage, file) where a ``rho/`` file the stage runs is not covered by its deps."""
    problems = []
    for name, (cmd, deps) in sorted(stages.items()):
        dirs = [d.rstrip("/") + "/" for d in deps]
        for f in sorted(stage_files(root, cmd) - LAUNCHER):
            if f not in deps and not any(f.startswith(d) for d in dirs):
                problems.append(
                    f"stage `{name}` runs {f}: add it (or a folder holding it) to its deps in dvc.yaml"
                )
    return problems


def unused_deps(root: Path, stages: dict[str, tuple[str, list[str]]]) -> list[str]:
    """One line per ``rho/`` dependency (file or folder) that holds no file the stage runs."""
    problems = []
    for name, (cmd, deps) in sorted(stages.items()):
        files = stage_files(root, cmd)
        for d in deps:
            if d.startswith("rho/") and not any(f == d or f.startswith(d.rstrip("/") + "/") for f in files):
                problems.append(f"stage `{name}` lists {d} but runs nothing in it: remove it from its deps")
    return problems


def dvc_stages(root: Path) -> dict[str, tuple[str, list[str]]]:
    """``{stage address: (cmd, deps)}`` of dvc.yaml, templates resolved by DVC itself."""
    repo_mod = pytest.importorskip("dvc.repo")
    with repo_mod.Repo(str(root)) as repo:
        return {s.addressing: (s.cmd, [d.def_path for d in s.deps]) for s in repo.index.stages}


def test_every_stage_lists_the_rho_files_it_runs() -> None:
    stages = dvc_stages(ROOT)
    assert len(stages) > 20 and {"evaluate@base", "report", "train_slm@math_slm"} <= set(stages)
    problems = missing_deps(ROOT, stages)
    assert not problems, "\n".join(problems)


def test_no_stage_lists_rho_code_it_does_not_run() -> None:
    """A stale code dependency reruns a stage for nothing (e.g. after a module moved)."""
    problems = unused_deps(ROOT, dvc_stages(ROOT))
    assert not problems, "\n".join(problems)


def test_notebook_stage_closure_follows_the_part_it_calls() -> None:
    """The report notebook runs the token page code; the data notebook does not run training code."""
    stages = dvc_stages(ROOT)
    report = stage_files(ROOT, stages["report"][0])
    assert {"rho/report/token_html.py", "rho/selection.py", "rho/study/probes.py"} <= report
    assert not any(f.startswith("rho/train/loop") for f in stage_files(ROOT, stages["data"][0]))
    train = stage_files(ROOT, stages["train_slm@math_slm"][0])
    assert {"rho/train/loop.py", "rho/loss.py", "rho/selection.py"} <= train
    assert not any(f.startswith("rho/evaluate/") for f in train)


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path


def test_closure_follows_called_functions_only(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "rho/__init__.py": "",
            "rho/a.py": "from rho.b import used\n\ndef f():\n    from rho.c import g\n    return g() + used()\n\n"
            "def unused():\n    import rho.d\n",
            "rho/b.py": "def used():\n    import rho.e as e\n    return e.x\n",
            "rho/c.py": "from rho.pkg import lazy\n\ndef g():\n    return lazy()\n",
            "rho/d.py": "",
            "rho/e.py": "x = 1\n",
            "rho/pkg/__init__.py": "def __getattr__(name):\n    raise AttributeError(name)\n",
            "rho/pkg/impl.py": "def lazy():\n    return 2\n",
            "rho/pkg/other.py": "",
        },
    )
    c = Closure(root)
    c.add_module("rho.a")
    assert c.files() == {"rho/__init__.py", "rho/a.py", "rho/b.py"}  # module level only
    c.add_symbol("rho.a", "f")
    assert c.files() == {
        "rho/__init__.py",
        "rho/a.py",
        "rho/b.py",
        "rho/c.py",
        "rho/e.py",
        "rho/pkg/__init__.py",
        "rho/pkg/impl.py",
    }


def test_missing_dep_is_named(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "rho/__init__.py": "",
            "rho/study/__init__.py": "",
            "rho/study/__main__.py": "def _run_stage(args):\n    if args.stage == 'train':\n"
            "        from rho.work import train\n        train()\n    else:\n        from rho.nb import run\n"
            "        run()\n",
            "rho/work.py": "import rho.helper\n\ndef train():\n    pass\n",
            "rho/helper.py": "",
            "rho/assets/words.txt": "data read by rho's modules\n",
            "rho/parts/data/x.yaml": "a: 1\n",
            "rho/nb.py": "",
            "rho/parts/__init__.py": "",
            "rho/parts/p1.py": "def go():\n    import rho.helper\n",
            "notebooks/n1.ipynb": '{"cells": [{"cell_type": "code", "source": ["%matplotlib inline\\n", '
            '"from rho.parts import p1\\n", "p1.go()"]}]}',
        },
    )
    stages = {
        "train": ("python -m rho.study train x", ["rho/work.py"]),
        "part": ("python -m rho.study notebook n1 --part p", ["rho/nb.py", "rho/parts"]),
    }
    assert missing_deps(root, stages) == [
        "stage `part` runs rho/assets/words.txt: add it (or a folder holding it) to its deps in dvc.yaml",
        "stage `part` runs rho/helper.py: add it (or a folder holding it) to its deps in dvc.yaml",
        "stage `train` runs rho/assets/words.txt: add it (or a folder holding it) to its deps in dvc.yaml",
        "stage `train` runs rho/helper.py: add it (or a folder holding it) to its deps in dvc.yaml",
    ]  # rho/parts/data/x.yaml: in the `rho/parts` folder the part stage lists
    assert unused_deps(root, stages) == []
    stages["train"][1].extend(["rho/helper.py", "rho/assets", "rho/parts/p1.py"])
    assert unused_deps(root, stages) == [
        "stage `train` lists rho/parts/p1.py but runs nothing in it: remove it from its deps"
    ]
    stages["train"][1].pop()
    stages["part"][1].append("rho/")
    assert missing_deps(root, stages) == []
    with pytest.raises(ValueError, match="not a `python -m rho.study"):
        stage_files(root, "python scripts/x.py")


def test_evaluate_stage_loops_over_eval_runs() -> None:
    """dvc.yaml's evaluate loops over params.yaml's eval_runs: the base, reference and every trained run."""
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert dvc["stages"]["evaluate"]["foreach"] == "${eval_runs}"
    runs = [
        "base",
        "reference",
        *params["clm_runs"],
        *params["slm_runs"],
        *params["slm_variants"],
        *params["random_runs"],
    ]
    assert params["eval_runs"] == runs  # also the order of the group listing


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r.remove("ratio_50"), "add ratio_50"),
        (lambda r: r.append("nope"), "remove nope"),
        (lambda r: r.append("base"), "names base more than once"),
    ],
)
def test_eval_runs_must_name_every_model(tmp_path: Path, edit, message: str) -> None:
    from rho.study.config import Study, StudyError

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    edit(params["eval_runs"])
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(StudyError, match=message):
        Study.load(path)


def _notebook_parts(stages: dict[str, tuple[str, list[str]]]) -> dict[str, tuple[str, list[str]]]:
    """``{part: (stage, deps)}`` of the notebook stages."""
    out = {}
    for name, (cmd, deps) in stages.items():
        argv = shlex.split(cmd)
        if argv[3:4] == ["notebook"] and "--part" in argv:
            out[argv[argv.index("--part") + 1]] = (name, deps)
    return out


def test_notebook_stages_depend_on_the_logs_they_export() -> None:
    from rho.study import Study
    from rho.study.curves import part_runs

    study = Study.load(ROOT / "params.yaml")
    parts = _notebook_parts(dvc_stages(ROOT))
    assert {"math_cpt", "analysis", "reference_model"} <= set(parts)
    problems = []
    for part, (stage, deps) in sorted(parts.items()):
        for run in part_runs(study, part):
            run_dir = f"runs/{study.profile}/{run}"
            if run_dir not in deps and f"{run_dir}/log.jsonl" not in deps:
                problems.append(
                    f"stage `{stage}` exports the training losses of {run}: add {run_dir}/log.jsonl"
                )
    assert not problems, "\n".join(problems)


BUILTIN_TEMPLATES = {
    "linear",
    "simple",
    "scatter",
    "smooth",
    "confusion",
    "confusion_normalized",
    "bar_horizontal",
}


def _plots(profile: str) -> tuple[set[str], dict[str, str]]:
    """``(image paths, {data file: template})`` of dvc.yaml's top-level plots for ``profile``."""
    text = (ROOT / "dvc.yaml").read_text().replace("${profile}", profile)
    images, data = set(), {}
    for entry in yaml.safe_load(text)["plots"]:
        if isinstance(entry, str):
            images.add(entry)
            continue
        ((name, spec),) = entry.items()
        for path in spec["y"]:
            data[path] = spec.get("template", "linear")
    return images, data


@pytest.mark.parametrize(
    "profile", sorted(p.name for p in (ROOT / "results").iterdir() if p.is_dir() and p.name != "paper")
)
def test_every_figure_is_a_dvc_plot(profile: str) -> None:
    images, data = _plots(profile)
    figures = {p.relative_to(ROOT).as_posix() for p in (ROOT / "results" / profile).rglob("*.png")}
    assert figures, f"no figures in results/{profile}"
    assert not figures - images, f"figures not declared under plots: in dvc.yaml: {sorted(figures - images)}"
    for path, template in data.items():
        if Path(path).name != "training_losses.csv":  # written by the notebook stages since the plots came
            assert (ROOT / path).is_file(), f"plot data {path} does not exist"
        assert template in BUILTIN_TEMPLATES or (ROOT / ".dvc" / "plots" / f"{template}.json").is_file(), (
            template
        )


def test_plot_templates_draw_one_line_per_run_and_revision() -> None:
    import json

    for name in ("runs", "runs_by_metric"):
        spec = json.loads((ROOT / ".dvc" / "plots" / f"{name}.json").read_text())
        enc = spec["encoding"]
        assert enc["color"]["field"] == "run" and enc["strokeDash"]["field"] == "rev"
        assert spec["data"]["values"] == "<DVC_METRIC_DATA>" and enc["x"]["field"] == "<DVC_METRIC_X>"
