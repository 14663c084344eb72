"""The paper's benchmarks written as a suite folder (data/<profile>/eval) and read back by the
evaluation exactly as the shipped harness sets are read: same problems, prompts and grading."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from rho.evaluate import builtin_suite
from rho.evaluate.builtin_suite import build_builtin_suite, load_builtin_suite, write_builtin_suite
from rho.evaluate.prompts import build_prompt
from rho.evaluate.sources import load_test_records
from rho.evaluate.tasks import TaskError, load_fewshot, load_task_spec, resolve_tasks

#: The harness's problem counts (rho/evaluate/benchmarks/README.md) and its shots per prompt file.
SHIPPED = {
    "gsm8k": (1319, 8),
    "math": (500, 4),
    "svamp": (1000, 8),
    "asdiv": (2215, 8),
    "mawps": (2065, 8),
    "mathqa": (1000, 4),
    "mmlu_stem": (3018, 4),
    "sat": (32, 4),
}

#: Two problems of TabMWP's problems_test1k.json, in the release's format (an object keyed by id).
TABMWP = {
    "8": {
        "question": "Is the number of kites even or odd?",
        "choices": ["even", "odd"],
        "answer": "odd",
        "unit": None,
        "table_title": "Toys sold",
        "table": "Toy | Number\nkite | 7",
        "solution": "7 is odd.",
        "ques_type": "multi_choice",
        "ans_type": "boolean_text",
    },
    "21": {
        "question": "How many kites and balls were sold in all?",
        "choices": None,
        "answer": "1,012",
        "unit": None,
        "table_title": "Toys sold",
        "table": "Toy | Number\nkite | 7\nball | 1,005",
        "solution": "7 + 1,005 = 1,012.",
        "ques_type": "free_text",
        "ans_type": "integer_number",
    },
}


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    tab = root / "problems_test1k.json"
    tab.write_text(json.dumps(TABMWP))
    manifest = build_builtin_suite(root / "eval", [*SHIPPED, "tabmwp"], {"tabmwp": tab})
    return root, manifest


def test_folders_counts_and_manifest(suite):
    root, manifest = suite
    ev = root / "eval"
    tasks = {*SHIPPED, "tabmwp"}
    assert {p.name for p in ev.iterdir() if p.is_dir()} == tasks
    assert not list(root.glob(".eval.*")), "temporary folder left behind"
    want = {t: {"n_test": n, "n_fewshot": k} for t, (n, k) in SHIPPED.items()} | {
        "tabmwp": {"n_test": 2, "n_fewshot": 8}
    }
    assert manifest["tasks"] == want and manifest["format"] == "rho-builtin-suite-v1"
    assert json.loads((ev / "manifest.json").read_text()) == manifest
    on_disk = {p.relative_to(ev).as_posix() for p in ev.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest["files"]) == on_disk and len(on_disk) == 2 * len(tasks) + 1
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256((ev / rel).read_bytes()).hexdigest() == digest
    for t, counts in want.items():
        assert len((ev / t / "test.jsonl").read_text().splitlines()) == counts["n_test"]
    entries = {e["name"]: e for e in json.loads((ev / "tasks.json").read_text())}
    assert entries["gsm8k"]["data"] == {"harness": "gsm8k/test.jsonl.gz"}
    assert entries["tabmwp"]["data"] == {
        "files": {"problems_test1k.json": hashlib.sha256(json.dumps(TABMWP).encode()).hexdigest()}
    }
    assert entries["math"]["source"]["prompt"] == "prompts/minerva_math.md"


@pytest.mark.parametrize("task", [*SHIPPED, "tabmwp"])
def test_read_back_as_the_shipped_task(suite, task):
    """The suite's spec is the built-in spec (prompt, stops, budget, harness grading) reading the
    folder, and gives the same problems and byte-identical prompts as the shipped set."""
    root, _ = suite
    (spec,) = resolve_tasks([task], root)
    builtin = load_task_spec(task)
    assert spec.local_dir == str(root / "eval" / task)
    assert (spec.grading, spec.max_new_tokens, spec.separator) == ("harness", 1024, "\n\n\n")
    assert (spec.template, spec.stop, spec.n_shots) == (builtin.template, builtin.stop, builtin.n_shots)
    files = root / "problems_test1k.json" if task == "tabmwp" else None
    recs, want = load_test_records(spec), load_test_records(builtin, data_files=files)
    assert recs == want
    shots = load_fewshot(spec)
    assert shots == load_fewshot(builtin)
    for r, w in zip(recs[:3], want[:3]):
        assert build_prompt(spec, shots, r).text == build_prompt(builtin, load_fewshot(builtin), w).text


def test_stale_folder_refused(suite, tmp_path):
    root, _ = suite
    index = json.loads((root / "eval" / "tasks.json").read_text())
    for key, value, match in [
        ("n_shots", 5, "n_shots=5.*rebuild"),
        ("source", {"set": "harness", "file": "sat/test.jsonl.gz"}, "other shipped files.*rebuild"),
    ]:
        world = tmp_path / key
        (world / "eval").mkdir(parents=True)
        bad = [dict(e, **{key: value}) if e["name"] == "sat" else e for e in index]
        (world / "eval" / "tasks.json").write_text(json.dumps(bad))
        with pytest.raises(TaskError, match=match):
            resolve_tasks(["sat"], world)


def test_bad_input_and_unreadable_source(monkeypatch, tmp_path):
    with pytest.raises(TaskError, match="unknown task 'gsm9k'"):
        load_builtin_suite(["gsm9k"])
    with pytest.raises(TaskError, match=r"data files given for \['tabmwp'\]"):
        load_builtin_suite(["sat"], {"tabmwp": "x.json"})

    def offline(spec, limit=None, data_files=None):
        raise OSError("Cannot connect to host raw.githubusercontent.com")

    monkeypatch.setattr(builtin_suite, "load_test_records", offline)
    with pytest.raises(TaskError, match="could not be read.*--eval-file tabmwp=PATH"):
        load_builtin_suite(["tabmwp"])


def test_failed_write_leaves_the_old_folder(monkeypatch, tmp_path):
    out = tmp_path / "eval"
    build_builtin_suite(out, ["sat"])
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    loaded = load_builtin_suite(["sat", "math"])
    calls = []

    def fail_second(path, records):
        calls.append(path)
        if len(calls) > 1:
            raise OSError("disk full")
        Path(path).write_text("")

    monkeypatch.setattr(builtin_suite, "_write_jsonl", fail_second)
    with pytest.raises(OSError, match="disk full"):
        write_builtin_suite(out, loaded)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]
