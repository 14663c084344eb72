"""Source adapters on local stand-ins of the hub corpora (never contacting a hub), and mixing."""

import json

import pytest

from rho.data.sources import (
    PAPER_CORPORA,
    PAPER_GENERAL_MIX,
    EmptySourceError,
    SourceError,
    SourceSpec,
    UnknownSourceError,
    iter_documents,
    mix_by_tokens,
    resolve_source,
)

OWM_ROWS = [
    {"url": f"https://x/{i}", "text": f"Let x = {i}. Then 2x = {2 * i}.", "date": "2023"} for i in range(5)
]
STAR_ROWS = [
    {"max_stars_repo_name": "a/b", "content": f"def f{i}():\n    return {i}\n", "id": str(i)}
    for i in range(4)
]


def test_paper_corpora_use_real_names_and_columns():
    assert (
        PAPER_CORPORA["owm"].name == "open-web-math/open-web-math"
        and PAPER_CORPORA["owm"].text_column == "text"
    )
    assert PAPER_CORPORA["starcoderdata"].text_column == "content"
    assert (
        PAPER_CORPORA["slimpajama"].text_column == "text"
        and PAPER_CORPORA["proof_pile_2"].text_column == "text"
    )
    assert PAPER_GENERAL_MIX == {"slimpajama": 6.0, "starcoderdata": 3.0, "owm": 1.0}
    assert all(s.kind == "hf" and s.streaming for s in PAPER_CORPORA.values())


def test_hub_code_path_on_local_parquet_dataset(tmp_path):
    """The ``hf`` kind (datasets.load_dataset, streaming) on a folder laid out like a hub dataset."""
    import datasets

    datasets.Dataset.from_list(OWM_ROWS).to_parquet(str(tmp_path / "owm" / "data" / "train-00000.parquet"))
    datasets.Dataset.from_list(STAR_ROWS).to_parquet(str(tmp_path / "star" / "data" / "train-00000.parquet"))
    docs = list(iter_documents(SourceSpec("hf", str(tmp_path / "owm"), "text")))
    assert [d["text"] for d in docs] == [r["text"] for r in OWM_ROWS]
    code = list(iter_documents(SourceSpec("hf", str(tmp_path / "star"), "content", streaming=False)))
    assert [d["text"] for d in code] == [r["content"] for r in STAR_ROWS]
    with pytest.raises(SourceError, match="no column 'text'.*content"):
        list(iter_documents(SourceSpec("hf", str(tmp_path / "star"), "text")))


def test_local_jsonl_parquet_text_folder_and_save_to_disk(tmp_path):
    import datasets

    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in OWM_ROWS))
    assert [d["text"] for d in iter_documents(str(tmp_path / "a.jsonl"))] == [r["text"] for r in OWM_ROWS]
    datasets.Dataset.from_list(STAR_ROWS).to_parquet(str(tmp_path / "s.parquet"))
    spec = SourceSpec("local", str(tmp_path / "s.parquet"), "content", limit=2)
    assert [d["text"] for d in iter_documents(spec)] == [r["content"] for r in STAR_ROWS[:2]]
    (tmp_path / "txt").mkdir()
    for i in range(3):
        (tmp_path / "txt" / f"{i}.txt").write_text(f"document {i}")
    assert [d["text"] for d in iter_documents(str(tmp_path / "txt"))] == [
        "document 0",
        "document 1",
        "document 2",
    ]
    datasets.Dataset.from_list(OWM_ROWS).save_to_disk(str(tmp_path / "saved"))
    assert len(list(iter_documents(str(tmp_path / "saved")))) == 5
    datasets.DatasetDict({"train": datasets.Dataset.from_list(STAR_ROWS)}).save_to_disk(str(tmp_path / "dd"))
    got = list(iter_documents({"kind": "local", "name": str(tmp_path / "dd"), "text_column": "content"}))
    assert [d["text"] for d in got] == [r["content"] for r in STAR_ROWS]


def test_miniature_source_keeps_spans(tmp_path):
    (tmp_path / "raw").mkdir()
    doc = {
        "id": "owm-0",
        "text": "Home | Log in\nQ\n",
        "spans": [[0, 14, "navigation"], [14, 16, "content"]],
        "source": "miniature:owm",
    }
    (tmp_path / "raw" / "owm.jsonl").write_text(json.dumps(doc) + "\n")
    got = list(iter_documents(SourceSpec("miniature", f"{tmp_path}:owm")))
    assert got == [{"text": doc["text"], "spans": doc["spans"], "source": "miniature:owm"}]
    with pytest.raises(UnknownSourceError, match="rho.data build"):
        iter_documents(SourceSpec("miniature", f"{tmp_path}:nope"))


def test_bad_sources_fail_clearly_before_reading(tmp_path):
    with pytest.raises(UnknownSourceError, match="unknown dataset 'open-web-mathh'"):
        resolve_source("open-web-mathh")
    with pytest.raises(SourceError, match="unknown source kind"):
        SourceSpec("ftp", "x")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(EmptySourceError, match="no documents"):
        iter_documents(str(tmp_path / "empty.jsonl"))
    (tmp_path / "blank.jsonl").write_text(json.dumps({"text": ""}) + "\n")
    with pytest.raises(EmptySourceError):
        iter_documents(str(tmp_path / "blank.jsonl"))
    with pytest.raises(UnknownSourceError, match="does not exist"):
        iter_documents(SourceSpec("local", str(tmp_path / "missing")))


def test_mix_by_tokens_follows_six_three_one():
    def stream(name, size):
        return ({"text": " ".join([name] * size), "spans": None, "source": name} for _ in range(10_000))

    docs = list(
        mix_by_tokens(
            {"a": stream("a", 7), "b": stream("b", 13), "c": stream("c", 29)},
            {"a": 6, "b": 3, "c": 1},
            lambda t: len(t.split()),
            20_000,
        )
    )
    got = {k: sum(d["n_tokens"] for d in docs if d["mix"] == k) for k in "abc"}
    total = sum(got.values())
    assert 20_000 <= total < 20_000 + 29
    assert (
        abs(got["a"] - 0.6 * total) <= 29
        and abs(got["b"] - 0.3 * total) <= 29
        and abs(got["c"] - 0.1 * total) <= 29
    )
    # a source that runs out ends the mix, keeping the ratio
    short = list(
        mix_by_tokens(
            {"a": iter([{"text": "a a"}] * 3), "b": stream("b", 2)},
            {"a": 1, "b": 1},
            lambda t: len(t.split()),
            1000,
        )
    )
    assert sum(d["mix"] == "a" for d in short) == 3 and sum(d["mix"] == "b" for d in short) <= 4
    with pytest.raises(SourceError, match="must name exactly"):
        list(mix_by_tokens({"a": []}, {"b": 1}, len, 10))


def test_cli_tokenize_local_source(tmp_path, capsys):
    from rho.data.__main__ import main
    from rho.data.shards import TokenShard
    from rho.data.tokenizer import train_bpe_tokenizer

    train_bpe_tokenizer(
        [r["text"] for r in OWM_ROWS] + [r["content"] for r in STAR_ROWS], 300, tmp_path / "tok"
    )
    (tmp_path / "owm.jsonl").write_text("".join(json.dumps(r) + "\n" for r in OWM_ROWS))
    (tmp_path / "star.jsonl").write_text("".join(json.dumps(r) + "\n" for r in STAR_ROWS))
    assert (
        main(
            [
                "tokenize",
                "--source",
                str(tmp_path / "owm.jsonl"),
                "--tokenizer",
                str(tmp_path / "tok"),
                "--out",
                str(tmp_path / "s"),
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["n_docs"] == 5
    assert TokenShard.open(tmp_path / "s").meta["source"] == {"source": str(tmp_path / "owm.jsonl")}
    with pytest.raises(UnknownSourceError):
        main(
            [
                "tokenize",
                "--source",
                "no-such-corpus",
                "--tokenizer",
                str(tmp_path / "tok"),
                "--out",
                str(tmp_path / "x"),
            ]
        )
    assert not (tmp_path / "x").exists()
