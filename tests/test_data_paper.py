"""build_hub_data (the paper profile's data) on local stand-ins of the hub corpora, never a hub."""

import json

import numpy as np
import pytest

from rho.data.__main__ import main
from rho.data.paper import DEFAULT_REF_SOURCE, HubDataError, build_hub_data, hub_layout
from rho.data.shards import TokenShard, tokenizer_fingerprint
from rho.data.sources import EmptySourceError, SourceError, UnknownSourceError
from rho.data.tokenize import TokenizerMismatchError
from rho.data.tokenizer import load_tokenizer, train_bpe_tokenizer

N_OWM, VAL = 40, 6
#: One problem of TabMWP's problems_test1k.json (its release format), read instead of its URL.
TABMWP = {
    "8": {"question": "Is 7 even or odd?", "choices": ["even", "odd"], "answer": "odd", "table": "n | 7"}
}


def _owm(i: int) -> str:
    return f"math page {i}: let x = {i}. Then 2x = {2 * i} and x^2 = {i * i}. " * (1 + i % 3)


def _prose(i: int) -> str:
    return f"prose document {i} tells a story about the river and the town. " * (1 + i % 4)


def _code(i: int) -> str:
    return f"def code_{i}(a, b):\n    return a * {i} + b\n" * (1 + i % 3)


def _write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory):
    """Local files in the hub corpora's own column formats, plus a tiny BPE tokenizer folder."""
    import datasets

    root = tmp_path_factory.mktemp("hub")
    owm = _write_jsonl(
        root / "owm.jsonl",
        [{"url": f"https://m/{i}", "date": "2023", "metadata": "{}", "text": _owm(i)} for i in range(N_OWM)],
    )
    slim = _write_jsonl(
        root / "slimpajama.jsonl",
        [{"text": _prose(i), "meta": {"redpajama_set_name": "RedPajamaC4"}} for i in range(400)],
    )
    star = root / "starcoderdata.parquet"
    datasets.Dataset.from_list(
        [
            {"max_stars_repo_name": "a/b", "max_stars_count": 1, "id": str(i), "content": _code(i)}
            for i in range(300)
        ]
    ).to_parquet(str(star))
    ppile = root / "proof_pile_2"  # hub layout: a dataset folder of parquet files
    datasets.Dataset.from_list(
        [{"text": f"Theorem {i}. For all n, n + {i} > n. Proof: trivial.", "meta": "{}"} for i in range(25)]
    ).to_parquet(str(ppile / "data" / "train-00000.parquet"))
    ref = root / "ref_txt"
    ref.mkdir()
    for i in range(12):
        (ref / f"{i:03d}.txt").write_text(
            f"Question: what is {i} + {i}? Answer: {i} + {i} = {2 * i}. The answer is {2 * i}."
        )
    (root / "tabmwp.json").write_text(json.dumps(TABMWP))
    texts = [_owm(i) for i in range(N_OWM)] + [_prose(i) for i in range(50)] + [_code(i) for i in range(50)]
    train_bpe_tokenizer(texts, 400, root / "tok")
    return {
        "root": root,
        "tokenizer": str(root / "tok"),
        "tabmwp": str(root / "tabmwp.json"),
        "sources": {
            "owm": str(owm),
            "slimpajama": str(slim),
            "starcoderdata": str(star),
            "ppile": {"kind": "hf", "name": str(ppile), "text_column": "text"},
            "ref": str(ref),
        },
    }


def _build(stand_ins, out, **kw):
    kw.setdefault("limits", {"general": {"tokens": 4000}})
    kw.setdefault("sources", stand_ins["sources"])
    kw.setdefault("eval_tasks", ("sat", "tabmwp"))  # the nine in `built` only: fewer files to write
    kw.setdefault("eval_files", {"tabmwp": stand_ins["tabmwp"]})
    return build_hub_data(
        out, "paper", 0, val_docs=VAL, tokenizer=stand_ins["tokenizer"], num_proc=1, progress=False, **kw
    )


def _doc_texts(shard: TokenShard, tok) -> list[str]:
    off = shard.doc_offsets
    toks = np.asarray(shard.tokens)
    return [tok.decode(toks[off[d] : off[d + 1] - 1].tolist()) for d in range(len(off) - 1)]


@pytest.fixture(scope="module")
def built(stand_ins, tmp_path_factory):
    out = tmp_path_factory.mktemp("paper")
    manifest = _build(stand_ins, out, eval_tasks=None)
    return out, manifest


def test_layout_and_owm_split(built, stand_ins):
    out, manifest = built
    tok = load_tokenizer(out / "tokenizer")
    assert tokenizer_fingerprint(tok) == tokenizer_fingerprint(load_tokenizer(stand_ins["tokenizer"]))
    for name in ("owm", "owm_val", "ppile", "general", "ref"):
        shard = TokenShard.open(out / "shards" / name)
        assert shard.tokenizer_hash == manifest["tokenizer"]["hash"]
    val = _doc_texts(TokenShard.open(out / "shards" / "owm_val"), tok)
    train = _doc_texts(TokenShard.open(out / "shards" / "owm"), tok)
    source = [_owm(i) for i in range(N_OWM)]
    assert val == source[:VAL] and train == source[VAL:]
    assert not set(val) & set(train)
    ref = _doc_texts(TokenShard.open(out / "shards" / "ref"), tok)
    assert len(ref) == 12 and ref[0].startswith("Question: what is 0 + 0?")
    assert len(_doc_texts(TokenShard.open(out / "shards" / "ppile"), tok)) == 25
    assert not list(out.glob(".build-hub-*")), "staging folder left behind"
    written = {p.relative_to(out).as_posix() for p in out.glob("*")} | {
        p.relative_to(out).as_posix() for p in out.glob("shards/*")
    }
    assert written == set(hub_layout("paper")) | {"shards"}  # what dvc.yaml may depend on
    assert json.loads((out / "shards" / "base" / "released.json").read_text())["corpus"] == "base"


def test_general_mix_is_6_3_1_by_tokens(built):
    out, manifest = built
    shard = TokenShard.open(out / "shards" / "general")
    tok = load_tokenizer(out / "tokenizer")
    got = {"slimpajama": 0, "starcoderdata": 0, "owm": 0}
    longest = 0
    off = shard.doc_offsets
    for d, text in enumerate(_doc_texts(shard, tok)):
        kind = (
            "slimpajama" if text.startswith("prose") else "starcoderdata" if text.startswith("def") else "owm"
        )
        assert kind != "owm" or text in {_owm(i) for i in range(VAL, N_OWM)}, (
            "general used a held-out owm doc"
        )
        n = int(off[d + 1] - off[d] - 1)
        got[kind] += n
        longest = max(longest, n)
    total = sum(got.values())
    assert total >= 4000 and got == manifest["corpora"]["general"]["mix_tokens"]
    for kind, w in {"slimpajama": 0.6, "starcoderdata": 0.3, "owm": 0.1}.items():
        assert abs(got[kind] - w * total) <= longest, (kind, got)


def test_manifest(built, stand_ins):
    out, manifest = built
    on_disk = json.loads((out / "world.json").read_text())
    assert "build_seconds" not in on_disk and set(manifest["build_seconds"]) >= {"owm", "ref"}
    assert on_disk == json.loads(json.dumps({k: v for k, v in manifest.items() if k != "build_seconds"}))
    assert manifest["format"] == "rho-hub-world-v1" and manifest["seed"] == 0
    assert manifest["profile"]["name"] == "paper" and manifest["val_docs"] == VAL
    assert (
        manifest["tokenizer"]["path"] == "tokenizer"
        and manifest["tokenizer"]["name"] == stand_ins["tokenizer"]
    )
    assert set(manifest["corpora"]) == {"owm", "owm_val", "ppile", "general", "ref"}
    for info in manifest["corpora"].values():
        shard = TokenShard.open(out / info["shard"])
        assert info["n_docs"] == shard.meta["n_docs"] and info["n_tokens"] == shard.n_tokens
        assert info["tokens_sha256"] == shard.shard_hash
    c = manifest["corpora"]
    assert c["owm"]["skip_docs"] == VAL and c["owm_val"]["first_docs"] == VAL
    assert c["owm"]["source"]["name"] == stand_ins["sources"]["owm"]
    assert c["general"]["mix"] == {"slimpajama": 6.0, "starcoderdata": 3.0, "owm": 1.0}
    assert c["general"]["sources"]["starcoderdata"]["text_column"] == "content"
    assert c["ref"]["substitute"] is False and c["ref"]["limit"] == {"tokens": 500_000_000}
    ev = manifest["eval"]
    assert ev["path"] == "eval" and ev["format"] == "rho-builtin-suite-v1"
    assert ev["tasks"]["gsm8k"] == {"n_test": 1319, "n_fewshot": 8} and ev["tasks"]["tabmwp"]["n_test"] == 1
    assert len(ev["tasks"]) == 9 and json.loads((out / "eval" / "manifest.json").read_text()) == {
        k: v for k, v in ev.items() if k != "path"
    }
    assert "not public" in manifest["reference_note"]
    from rho.data.stats import corpus_table

    assert set(corpus_table(out).index) == set(c)


def test_limits_docs_and_tokens(stand_ins, tmp_path):
    m = _build(
        stand_ins,
        tmp_path,
        limits={"owm": 5, "ppile": {"tokens": 60}, "ref": {"docs": 3}, "general": {"tokens": 500, "docs": 4}},
    )
    c = m["corpora"]
    assert c["owm"]["n_docs"] == 5 and c["owm_val"]["n_docs"] == VAL and c["ref"]["n_docs"] == 3
    assert c["general"]["n_docs"] == 4
    pp = TokenShard.open(tmp_path / "shards" / "ppile")
    per_doc = np.diff(pp.doc_offsets) - 1
    assert (per_doc[:-1].sum() < 60 <= per_doc.sum()) and pp.meta["n_docs"] < 25


def test_default_ref_is_the_documented_substitute(stand_ins, tmp_path):
    with pytest.raises(UnknownSourceError):  # offline: the hub substitute cannot load; nothing written
        _build(
            stand_ins, tmp_path / "w", sources={k: v for k, v in stand_ins["sources"].items() if k != "ref"}
        )
    assert not (tmp_path / "w").exists()
    assert DEFAULT_REF_SOURCE.name == "HuggingFaceTB/finemath" and DEFAULT_REF_SOURCE.text_column == "text"


@pytest.fixture
def existing(stand_ins, tmp_path):
    """A built world to refuse against, with a snapshot of every file's bytes."""
    out = tmp_path / "w"
    _build(stand_ins, out, limits={"owm": 3, "ppile": 3, "ref": 3, "general": {"tokens": 300}})
    snap = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    return out, snap


def _unchanged(out, snap):
    now = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    return now == snap


@pytest.mark.parametrize(
    "kw, err, match",
    [
        ({"sources": {"owm_typo": "x"}}, HubDataError, "unknown corpus.*owm_typo"),
        ({"sources": {"general": "x"}}, HubDataError, "unknown corpus"),
        ({"limits": {"owmm": 3}}, HubDataError, "unknown corpus 'owmm' in limits"),
        ({"limits": {"owm_val": 3}}, HubDataError, "val_docs"),
        ({"limits": {"owm": -1}}, HubDataError, ">= 1"),
        ({"val_docs": 0}, HubDataError, "val_docs"),
        ({"val_docs": N_OWM}, SourceError, "leave none for owm"),
        ({"sources": {"ref": ""}}, SourceError, "empty"),
        ({"sources": {"ref": "/no/such/dir/x.jsonl"}}, UnknownSourceError, "not an existing local path"),
        ({"profile": "mini"}, HubDataError, "miniature"),
    ],
)
def test_bad_input_refused_before_writing(stand_ins, existing, kw, err, match):
    out, snap = existing
    args = {"sources": {**stand_ins["sources"], **kw.pop("sources", {})}, **kw}
    profile = args.pop("profile", "paper")
    args.setdefault("val_docs", VAL)
    with pytest.raises(err, match=match):
        build_hub_data(out, profile, 0, tokenizer=stand_ins["tokenizer"], num_proc=1, progress=False, **args)
    assert _unchanged(out, snap)


def test_empty_source_and_tokenizer_mismatch_leave_shards_intact(stand_ins, existing, tmp_path):
    out, snap = existing
    empty = _write_jsonl(tmp_path / "empty.jsonl", [{"content": ""}, {"content": ""}])
    with pytest.raises(EmptySourceError):
        _build(stand_ins, out, sources={**stand_ins["sources"], "starcoderdata": str(empty)})
    assert _unchanged(out, snap)
    other = train_bpe_tokenizer([_prose(i) for i in range(30)], 320, tmp_path / "other_tok")
    assert tokenizer_fingerprint(other) != tokenizer_fingerprint(load_tokenizer(stand_ins["tokenizer"]))
    with pytest.raises(TokenizerMismatchError, match="overwrite"):
        build_hub_data(
            out,
            tokenizer=tmp_path / "other_tok",
            sources=stand_ins["sources"],
            val_docs=VAL,
            num_proc=1,
            progress=False,
        )
    assert _unchanged(out, snap)
    assert isinstance(TokenizerMismatchError("x"), ValueError)


def test_cli_build_hub(stand_ins, tmp_path, capsys):
    src = stand_ins["sources"]
    argv = [
        "build-hub",
        "--out",
        str(tmp_path / "w"),
        "--tokenizer",
        stand_ins["tokenizer"],
        "--val-docs",
        "4",
    ]
    for k in ("owm", "slimpajama", "starcoderdata", "ref"):
        argv += ["--source", f"{k}={src[k]}"]
    argv += ["--source", f"ppile={src['ppile']['name']}/data/train-00000.parquet"]
    argv += ["--limit", "owm=7", "--limit", "general=tokens:600", "--limit", "ref=none", "--no-progress"]
    argv += ["--eval-file", f"tabmwp={stand_ins['tabmwp']}"]
    assert main(argv) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["owm"]["docs"] == 7 and counts["owm_val"]["docs"] == 4 and counts["ppile"]["docs"] == 25
    assert counts["general"]["tokens"] >= 600
    manifest = json.loads((tmp_path / "w" / "world.json").read_text())
    assert manifest["corpora"]["ref"]["limit"] is None
    with pytest.raises(SystemExit, match="CORPUS=VALUE"):
        main(["build-hub", "--out", str(tmp_path / "x"), "--source", "owm"])
