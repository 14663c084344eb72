"""The paper's corpora read exactly as on the hub, from local copies in the hub's own layout.

Each corpus is written into a temporary folder with the real dataset's folder layout, file names
and extensions (``<subset>/train/*.jsonl.zst``, ``train/chunkN/*.jsonl.zst``, ``<lang>/*.parquet``,
``data/train-*.parquet``) and the columns of its dataset card; the loaders are pointed at it with
``root=`` (or a folder given as a source), the same code that reads ``hf://datasets/<name>``.
Never a hub: ``HF_HUB_OFFLINE=1`` (tests/conftest.py).
"""

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from rho.data.sources import (
    PAPER_CORPORA,
    PROOF_PILE_2_SUBSETS,
    STARCODER_NON_CODE,
    SourceError,
    SourceSpec,
    iter_documents,
    source_parts,
)

ZSTD_MISSING = "zstandard is not installed: the .jsonl.zst corpora (Proof-Pile-2, SlimPajama) need it"


def _words(text: str) -> int:
    return len(text.split())


def _write_zst(path: Path, rows: list[dict]) -> None:
    zstandard = pytest.importorskip("zstandard", reason=ZSTD_MISSING)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = "".join(json.dumps(r) + "\n" for r in rows).encode()
    path.write_bytes(zstandard.ZstdCompressor().compress(raw))


def _write_parquet(path: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


@pytest.fixture(scope="module")
def ppile(tmp_path_factory) -> Path:
    """Proof-Pile-2: <subset>/{train,validation,test}/*.jsonl.zst with fields text, meta."""
    root = tmp_path_factory.mktemp("proof-pile-2")
    files = {
        "arxiv": ["arXiv_000.jsonl.zst", "arXiv_001.jsonl.zst"],
        "open-web-math": ["shard-0000.jsonl.zst"],
        "algebraic-stack": ["c0000.jsonl.zst", "python0007.jsonl.zst"],
    }
    for subset, names in files.items():
        for j, name in enumerate(names):
            rows = [
                {"text": " ".join([f"{subset}-{j}-{i}"] * (5 + i % 7)), "meta": {"subset": subset, "i": i}}
                for i in range(300)
            ]
            _write_zst(root / subset / "train" / name, rows)
        _write_zst(root / subset / "validation" / names[0], [{"text": "HELD OUT validation", "meta": {}}])
        _write_zst(root / subset / "test" / names[0], [{"text": "HELD OUT test", "meta": {}}])
    return root


def test_real_specs_name_the_hub_files():
    pp = PAPER_CORPORA["proof_pile_2"]
    assert (pp.name, pp.builder, pp.data_files) == (
        "EleutherAI/proof-pile-2",
        "json",
        "{part}/train/*.jsonl.zst",
    )
    assert pp.parts == ("arxiv", "open-web-math", "algebraic-stack") and pp.weights == (29.0, 15.0, 11.0)
    assert pp.data_root == "hf://datasets/EleutherAI/proof-pile-2"
    slim = PAPER_CORPORA["slimpajama"]
    assert (slim.name, slim.data_files, slim.text_column) == (
        "cerebras/SlimPajama-627B",
        "train/chunk*/*.jsonl.zst",
        "text",
    )
    star = PAPER_CORPORA["starcoderdata"]
    assert (star.name, star.builder, star.data_files, star.parts) == (
        "bigcode/starcoderdata",
        "parquet",
        "{part}/*.parquet",
        ("*",),
    )
    assert star.text_column == "content" and "github-issues-filtered-structured" in star.exclude_parts
    owm = PAPER_CORPORA["owm"]
    assert (owm.name, owm.data_files, owm.text_column) == (
        "open-web-math/open-web-math",
        "data/train-*.parquet",
        "text",
    )


def test_proof_pile_2_is_mixed_by_tokens_not_arxiv_first(ppile):
    spec = replace(PAPER_CORPORA["proof_pile_2"], root=str(ppile))
    docs = []
    for d in iter_documents(spec, _words):
        docs.append(d)
        if len(docs) == 400:
            break
    subset = [d["source"].split("/")[-1].split("#")[0] for d in docs]
    assert set(subset[:3]) == set(PROOF_PILE_2_SUBSETS), subset[:3]  # every subset from the start
    assert not any("HELD OUT" in d["text"] for d in docs)  # only the train split
    got = {
        s: sum(_words(d["text"]) for d, k in zip(docs, subset, strict=True) if k == s)
        for s in PROOF_PILE_2_SUBSETS
    }
    total = sum(got.values())
    for s, w in PROOF_PILE_2_SUBSETS.items():
        share = w / sum(PROOF_PILE_2_SUBSETS.values())
        assert abs(got[s] - share * total) <= 12, (s, got)  # within one document (<= 11 words)
    assert docs[0]["source"].startswith("EleutherAI/proof-pile-2/")


def test_a_mixed_source_stops_when_a_subset_runs_out(ppile):
    spec = replace(PAPER_CORPORA["proof_pile_2"], root=str(ppile), weights=(1.0, 1.0, 1.0))
    docs = list(iter_documents(spec, _words))
    owm = [d for d in docs if "/open-web-math#" in d["source"]]
    assert len(owm) == 300 and len(docs) < 3 * 300 * 2  # open-web-math (one file) ran out first


def test_slimpajama_reads_the_train_chunks_only(tmp_path):
    for c in (1, 2):
        for k in (0, 1):
            rows = [
                {"text": f"chunk{c} file{k} doc{i}", "meta": {"redpajama_set_name": "RedPajamaC4"}}
                for i in range(4)
            ]
            _write_zst(tmp_path / "train" / f"chunk{c}" / f"example_train_{k}.jsonl.zst", rows)
    _write_zst(
        tmp_path / "validation" / "chunk1" / "example_holdout_0.jsonl.zst", [{"text": "held out", "meta": {}}]
    )
    docs = list(iter_documents(replace(PAPER_CORPORA["slimpajama"], root=str(tmp_path))))
    assert [d["text"] for d in docs[:5]] == [f"chunk1 file0 doc{i}" for i in range(4)] + ["chunk1 file1 doc0"]
    assert len(docs) == 16 and all(d["text"] != "held out" for d in docs)


@pytest.fixture(scope="module")
def starcoder(tmp_path_factory) -> Path:
    """StarCoderData: <lang>/train-*.parquet (content, ...) and non-code folders of other schemas."""
    root = tmp_path_factory.mktemp("starcoderdata")
    sizes = {"python": 600, "java": 200, "lua": 40}
    for lang, n in sizes.items():
        for f in range(2):
            rows = [
                {
                    "max_stars_repo_path": f"src/{i}.{lang}",
                    "max_stars_repo_name": "a/b",
                    "max_stars_count": i,
                    "id": f"{lang}-{f}-{i}",
                    "content": f"{lang} code {f} {i} " + "x = 1; " * 40,
                }
                for i in range(n // 2)
            ]
            _write_parquet(root / lang / f"train-0000{f}-of-00002.parquet", rows)
    _write_parquet(
        root / "github-issues-filtered-structured" / "train-00000-of-00001.parquet",
        [{"repo": "a/b", "issue_id": 1, "events": "opened"}],
    )
    _write_parquet(
        root / "jupyter-structured-clean-dedup" / "train-00000-of-00001.parquet",
        [{"repo": "a/b", "cells": "print(1)"}],
    )
    (root / "README.md").write_text("card")
    return root


def test_starcoderdata_interleaves_languages_and_leaves_out_non_code(starcoder):
    spec = replace(PAPER_CORPORA["starcoderdata"], root=str(starcoder))
    assert source_parts(spec) == ["java", "lua", "python"]
    docs = list(iter_documents(spec, _words))
    langs = [d["text"].split()[0] for d in docs]
    assert set(langs[:3]) == {"java", "lua", "python"}  # interleaved, not folder after folder
    # weights = folder sizes in bytes (the corpus's own proportions), not one document each in turn
    size = {
        lang: sum(f.stat().st_size for f in (starcoder / lang).iterdir())
        for lang in ("java", "lua", "python")
    }
    got = {
        lang: sum(_words(d["text"]) for d, k in zip(docs, langs, strict=True) if k == lang) for lang in size
    }
    total = sum(got.values())
    for lang in size:
        assert abs(got[lang] - size[lang] / sum(size.values()) * total) <= 124, (
            got,
            size,
        )  # within one document (124 words)
    assert size["python"] > size["lua"] and got["python"] > got["lua"]
    assert all(d["text"] for d in docs) and set(STARCODER_NON_CODE) >= {"jupyter-structured-clean-dedup"}


def test_starcoderdata_named_languages(starcoder):
    spec = replace(
        PAPER_CORPORA["starcoderdata"], root=str(starcoder), parts=("lua", "java"), weights=(1.0, 1.0)
    )
    langs = [d["text"].split()[0] for d in iter_documents(spec, _words)]
    assert langs[:2] == ["lua", "java"] and "python" not in langs and langs.count("lua") == 40


def test_openwebmath_reads_its_parquet_shards(tmp_path):
    for k in range(2):
        rows = [
            {
                "url": f"https://m/{k}/{i}",
                "text": f"page {k} {i}: x^2",
                "date": "2023-01-01",
                "metadata": "{}",
            }
            for i in range(3)
        ]
        _write_parquet(tmp_path / "data" / f"train-0000{k}-of-00114-a1b2.parquet", rows)
    docs = list(iter_documents(replace(PAPER_CORPORA["owm"], root=str(tmp_path))))
    assert [d["text"] for d in docs] == [f"page {k} {i}: x^2" for k in range(2) for i in range(3)]


def test_a_local_copy_given_as_a_source_is_read_as_the_hub(ppile, tmp_path):
    from rho.data.paper import _resolve

    spec = _resolve("ppile", str(ppile), PAPER_CORPORA["proof_pile_2"])
    assert spec.root == str(ppile) and spec.data_files == "{part}/train/*.jsonl.zst" and spec.kind == "hf"
    (tmp_path / "x.jsonl").write_text(json.dumps({"text": "t"}) + "\n")
    assert _resolve("ppile", str(tmp_path), PAPER_CORPORA["proof_pile_2"]).kind == "local"


def test_bad_layout_specs_are_refused():
    with pytest.raises(SourceError, match="needs parts"):
        SourceSpec("hf", "x/y", data_files="{part}/train/*.jsonl")
    with pytest.raises(SourceError, match="one weight per named part"):
        SourceSpec("hf", "x/y", data_files="{part}/*.parquet", parts=("a", "b"), weights=(1.0,))
    with pytest.raises(SourceError, match="builder"):
        SourceSpec("hf", "x/y", data_files="*.csv", builder="csv")
    with pytest.raises(SourceError, match="kind 'hf' only"):
        SourceSpec("local", "x", data_files="*.parquet")
    assert SourceSpec("hf", "x/y", data_files="{part}/*", parts=["a"]).parts == ("a",)  # from YAML lists


def test_missing_zstandard_is_named(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "zstandard", None)  # import zstandard now raises ImportError
    with pytest.raises(SourceError, match="install the `zstandard` package"):
        iter_documents(replace(PAPER_CORPORA["proof_pile_2"], root=str(tmp_path)))


def test_no_test_reaches_the_hub():
    assert os.environ.get("HF_HUB_OFFLINE") == "1"


def test_build_hub_data_reads_local_copies_in_hub_layout(ppile, starcoder, tmp_path):
    """The paper build with every corpus given as a folder in its hub layout (read via ``root``)."""
    from rho.data.paper import build_hub_data
    from rho.data.shards import TokenShard
    from rho.data.tokenizer import train_bpe_tokenizer

    owm = tmp_path / "owm"
    _write_parquet(
        owm / "data" / "train-00000-of-00114-a1b2.parquet",
        [
            {"url": f"u{i}", "text": f"math page {i}: x = {i}", "date": "2023", "metadata": "{}"}
            for i in range(30)
        ],
    )
    slim = tmp_path / "slim"
    _write_zst(
        slim / "train" / "chunk1" / "example_train_0.jsonl.zst",
        [
            {"text": f"prose {i} about a river", "meta": {"redpajama_set_name": "RedPajamaC4"}}
            for i in range(200)
        ],
    )
    (tmp_path / "ref.jsonl").write_text(
        "".join(json.dumps({"text": f"q {i} = {i}"}) + "\n" for i in range(5))
    )
    train_bpe_tokenizer(
        ["math page x = 1", "prose about a river", "python code x = 1;"] * 20, 300, tmp_path / "tok"
    )
    sources = {
        "owm": owm,
        "ppile": ppile,
        "slimpajama": slim,
        "starcoderdata": starcoder,
        "ref": tmp_path / "ref.jsonl",
    }
    m = build_hub_data(
        tmp_path / "out",
        "paper",
        sources={k: str(v) for k, v in sources.items()},
        limits={"ppile": {"tokens": 3000}, "general": {"tokens": 3000}},
        val_docs=5,
        tokenizer=str(tmp_path / "tok"),
        num_proc=1,
        progress=False,
        eval_tasks=("sat",),  # one in-repo benchmark set: no network for TabMWP
    )
    c = m["corpora"]
    assert c["ppile"]["source"]["root"] == str(ppile) and c["ppile"]["source"]["builder"] == "json"
    assert c["general"]["sources"]["starcoderdata"]["root"] == str(starcoder)
    assert all(v > 0 for v in c["general"]["mix_tokens"].values())
    assert c["owm"]["n_docs"] == 25 and c["owm_val"]["n_docs"] == 5
    assert TokenShard.open(tmp_path / "out" / "shards" / "ppile").n_tokens >= 3000


def test_paper_7b_builds_only_owm_and_ref(tmp_path):
    """``paper_7b`` (hub_shards): owm_val, owm and ref only; the other corpora are not even probed (offline)."""
    from rho.data.paper import build_hub_data
    from rho.data.tokenizer import train_bpe_tokenizer

    owm = tmp_path / "owm"
    _write_parquet(
        owm / "data" / "train-00000-of-00114-a1b2.parquet",
        [
            {"url": f"u{i}", "text": f"math page {i}: x = {i}", "date": "2023", "metadata": "{}"}
            for i in range(12)
        ],
    )
    (tmp_path / "ref.jsonl").write_text(
        "".join(json.dumps({"text": f"q {i} = {i}"}) + "\n" for i in range(5))
    )
    train_bpe_tokenizer(["math page x = 1", "q 1 = 1"] * 20, 300, tmp_path / "tok")
    m = build_hub_data(
        tmp_path / "out",
        "paper_7b",
        sources={"owm": str(owm), "ref": str(tmp_path / "ref.jsonl")},
        val_docs=4,
        tokenizer=str(tmp_path / "tok"),
        num_proc=1,
        progress=False,
        eval_tasks=("sat",),  # one in-repo benchmark set: no network for TabMWP
    )
    assert set(m["corpora"]) == {"owm_val", "owm", "ref"}
    assert json.loads((tmp_path / "out" / "world.json").read_text())["profile"]["hub_shards"] == [
        "owm_val",
        "owm",
        "ref",
    ]
    assert sorted(p.name for p in (tmp_path / "out" / "shards").iterdir()) == [
        "base",
        "owm",
        "owm_val",
        "ref",
    ]  # base: released.json (no corpus)
