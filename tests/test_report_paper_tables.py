"""Paper tables beside ours: exact paper numbers, our rows in the paper's layout, atomic CSV/Markdown."""

import numpy as np
import pandas as pd
import pytest

from rho.analysis import AnalysisInputError
from rho.report import (
    add_delta_row,
    comparison_table,
    load_paper_table,
    paper_value,
    to_markdown,
    write_table,
)
from rho.report.paper_tables import PAPER_DIR, TABLE1_TASKS, TABLE3_TASKS

OURS = pd.DataFrame(
    {
        "run": ["clm", "clm", "clm", "slm", "slm", "slm", "slm"],
        "task": ["gsm8k", "math", "mmlu_stem", "gsm8k", "math", "mmlu_stem", "not_a_paper_task"],
        "value": [0.10, 0.02, 0.30, 0.20, 0.05, 0.35, 0.9],
    }
)


def test_paper_tables_hold_the_papers_numbers():
    t1 = load_paper_table("table1")
    rho = t1[(t1["model"] == "RHO-1-Math") & (t1["train_tokens"] == "9B")].iloc[0]
    assert [rho[t] for t in TABLE1_TASKS] == [29.8, 14.0, 49.2, 61.4, 79.8, 25.8, 30.4, 24.7, 28.1]
    assert rho["avg"] == 38.1
    assert paper_value("table1", {"model": "Tinyllama-CT"}, "avg") == 21.6
    assert paper_value("table3", {"score_function": "L_RM"}, "avg") == 23.9
    assert paper_value("table4", {"score_function": "L_delta", "select_ratio": "60%"}, "avg") == 23.0
    assert paper_value("table5", {"model": "Llama-2-7B-CT w/ 1B RM"}, "math") == 16.0
    assert load_paper_table("table5")["avg"].tolist() == [43.0, 44.0]  # printed "43." / "44." in the paper
    assert len(load_paper_table("table4")) == 22


def test_results_paper_is_a_verbatim_copy_of_the_shared_tables():
    shared = PAPER_DIR.parent.parent / ".." / "shared" / "paper" / "tables"
    src = shared if shared.is_dir() else None
    if src is None:
        pytest.skip("the shared paper tables are not on this machine")
    for f in sorted(src.iterdir()):
        assert (PAPER_DIR / f.name).read_bytes() == f.read_bytes(), f.name


def test_table1_layout_with_our_rows():
    t = comparison_table(
        "table1",
        OURS,
        profile="mini",
        run_info={"clm": {"model": "CLM", "train_tokens": "2M"}},
        paper_rows=[6, 7],
    )
    assert list(t.columns[:3]) == ["source", "profile", "group"]
    assert list(t.columns[-11:]) == [*TABLE1_TASKS, "avg", "n_tasks"]
    assert list(t["source"]) == ["paper", "paper", "ours", "ours"]
    assert list(t["profile"]) == ["paper", "paper", "mini", "mini"]
    ours = t[t["source"] == "ours"].set_index("model")
    assert ours.loc["CLM", "gsm8k"] == pytest.approx(10.0) and ours.loc["slm", "math"] == pytest.approx(5.0)
    assert ours.loc["CLM", "avg"] == pytest.approx(14.0) and ours.loc["CLM", "n_tasks"] == 3
    assert ours.loc["CLM", "train_tokens"] == "2M"
    assert np.isnan(ours.loc["slm", "svamp"])
    paper = t[t["source"] == "paper"]
    assert paper["avg"].tolist() == [21.6, 38.1] and paper["n_tasks"].tolist() == [9, 9]


def test_delta_row():
    t = comparison_table("table1", OURS, profile="mini", paper_rows=[])
    d = add_delta_row(t, "clm", "slm").iloc[-1]
    assert d["model"] == "Δ (slm - clm)"
    assert d["gsm8k"] == pytest.approx(10.0) and d["avg"] == pytest.approx(6.0)
    with pytest.raises(AnalysisInputError, match="exactly one row"):
        add_delta_row(t, "nope", "slm")


def test_table3_table4_table5_layouts():
    info = {"slm": {"score_function": "L_delta", "select_ratio": "60%", "effective_ratio": "60%"}}
    t4 = comparison_table("table4", OURS, profile="smoke", run_info=info)
    assert list(t4.columns) == [
        "source",
        "profile",
        "score_function",
        "select_ratio",
        "effective_ratio",
        *TABLE3_TASKS,
        "avg",
        "n_tasks",
    ]
    assert t4.iloc[-1]["select_ratio"] == "60%" and t4.iloc[-1]["avg"] == pytest.approx(12.5)
    t3 = comparison_table("table3", OURS.assign(value=OURS["value"] * 100), profile="mini", ours_in="percent")
    assert t3.iloc[-1]["gsm8k"] == pytest.approx(20.0)
    assert t3.iloc[0]["model"] == "Tinyllama-CT (RM)"
    t5 = comparison_table("table5", OURS, profile="mini")
    assert t5["avg"].iloc[:2].tolist() == [43.0, 44.0]


def test_comparison_input_errors():
    with pytest.raises(AnalysisInputError, match="ours_in='percent'"):
        comparison_table("table1", OURS.assign(value=OURS["value"] * 100), profile="mini")
    with pytest.raises(AnalysisInputError, match="run \\(or model\\), task, value"):
        comparison_table("table1", OURS.rename(columns={"task": "benchmark"}), profile="mini")
    with pytest.raises(AnalysisInputError, match="aggregate them first"):
        comparison_table("table1", pd.concat([OURS, OURS]), profile="mini")
    with pytest.raises(AnalysisInputError, match="not in this table's layout"):
        comparison_table("table5", OURS, profile="mini", run_info={"slm": {"score_function": "x"}})
    with pytest.raises(AnalysisInputError, match="unknown paper table"):
        load_paper_table("table9")


def test_write_table_csv_and_markdown(tmp_path):
    t = comparison_table("table1", OURS, profile="mini", paper_rows=[7])
    csv, md = write_table(t, tmp_path / "out" / "table1", title="Table 1", note="profile mini")
    back = pd.read_csv(csv)
    assert back.loc[0, "gsm8k"] == 29.8 and back.loc[1, "avg"] == pytest.approx(14.0)
    text = md.read_text()
    assert text.startswith("# Table 1\n") and "profile mini" in text
    assert "| ours | mini |" in text and "| 29.8 |" in text and "| 14.0 |" in text
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp files left


def test_to_markdown_escapes_and_formats():
    md = to_markdown(pd.DataFrame({"name": ["a|b", None], "x": [1.25, np.nan]}), floatfmt=".2f")
    lines = md.splitlines()
    assert lines[0] == "| name | x |" and lines[1] == "|---|---:|"
    assert lines[2] == "| a\\|b | 1.25 |" and lines[3] == "| - | - |"
