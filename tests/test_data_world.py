"""The miniature world, built once (smoke profile) for this module."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from rho.data.contamination import build_index
from rho.data.miniature.problems import HELDOUT_TEMPLATES
from rho.data.miniature.world import WorldExistsError, build_world, world_fingerprint
from rho.data.provenance import char_labels
from rho.data.shards import TokenShard
from rho.data.stats import corpus_table
from rho.io import read_json, sha256_file

TRAIN_CORPORA = ("owm", "owm_val", "ref", "ppile", "general", "base", "val_math")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world") / "smoke"
    build_world(out, "smoke", seed=0, progress=False)
    return out


def _raw(world: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (world / "raw" / f"{name}.jsonl").read_text().splitlines()]


def _fingerprint(world: Path) -> dict:
    """Hashes of everything a build writes (no file embeds the folder it was built in)."""
    out = {}
    for p in sorted(world.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(world))] = sha256_file(p)
    return out


def test_layout_manifest_and_eval_records(world):
    m = read_json(world / "world.json")
    assert m["seed"] == 0 and m["profile"]["name"] == "smoke"
    assert set(m["corpora"]) == set(TRAIN_CORPORA)
    tasks = read_json(world / "eval" / "tasks.json")
    roles = {t["role"] for t in tasks}
    assert roles == {"gsm8k", "math", "svamp", "asdiv", "mawps", "tabmwp", "mathqa", "mmlu_stem", "sat"}
    assert {t["name"]: t["kind"] for t in tasks if t["kind"] == "multiple_choice"}.keys() == {
        "mathqa",
        "mmlu_stem",
        "sat",
    }
    ids = set()
    for t in tasks:
        for split, n in (("fewshot", 2), ("test", 10)):
            recs = [
                json.loads(x)
                for x in (world / "eval" / t["name"] / f"{split}.jsonl").read_text().splitlines()
            ]
            assert len(recs) == n
            for r in recs:
                assert set(r) == {"id", "question", "solution", "answer", "choices", "label", "template"}
                assert r["solution"].endswith((f"The answer is {r['answer']}.", f"\\boxed{{{r['answer']}}}."))
                if t["kind"] == "multiple_choice":
                    assert r["choices"][r["label"]] == r["solution"] and len(set(r["choices"])) == len(
                        r["choices"]
                    )
                else:
                    assert r["choices"] is None and r["label"] is None
                ids.add(r["id"])
    assert len(ids) == sum(12 for _ in tasks)
    unseen = [json.loads(x) for x in (world / "eval" / "gsm_unseen" / "test.jsonl").read_text().splitlines()]
    assert all(r["template"].split("/")[1] in HELDOUT_TEMPLATES for r in unseen)


def test_smoke_world_equals_the_committed_fingerprint(world):
    """The world depends only on params, seed and repository files: its fingerprint is pinned."""
    expected = read_json(Path(__file__).parent / "data" / "world_fingerprints.json")["smoke"]
    manifest = read_json(world / "world.json")
    assert "build_seconds" not in manifest  # timings are returned, never stored
    assert manifest["fingerprint"] == world_fingerprint(manifest)
    assert manifest["fingerprint"] == expected, (
        "the smoke world changed: if on purpose (generators, tokenizer, frozen text, lock), re-run the "
        "study and update tests/data/world_fingerprints.json; otherwise something leaks into the world"
    )


def test_world_refuses_a_general_text_pool_with_another_hash(tmp_path, monkeypatch):
    from rho.data.miniature import general

    fake = tmp_path / "general_text.jsonl.xz"
    fake.write_bytes(general.GENERAL_SOURCE.read_bytes()[:-1] + b"\0")
    monkeypatch.setattr(general, "GENERAL_SOURCE", fake)
    monkeypatch.setattr("rho.data.miniature.world.GENERAL_SOURCE", fake)
    general._items.cache_clear()
    with pytest.raises(general.GeneralSourceError, match="SHA-256"):
        build_world(tmp_path / "w", "smoke", seed=0, progress=False)
    assert not (tmp_path / "w" / "world.json").exists()
    with pytest.raises(general.GeneralSourceError, match="missing"):
        general.check_general_source(tmp_path / "absent.xz")


def test_same_seed_same_bytes_other_seed_differs(world, tmp_path):
    again = tmp_path / "again"
    build_world(again, "smoke", seed=0, progress=False)
    assert _fingerprint(again) == _fingerprint(world)
    other = tmp_path / "other"
    build_world(other, "smoke", seed=1, progress=False)
    fa, fb = _fingerprint(world), _fingerprint(other)
    assert fa.keys() == fb.keys()
    for name in (
        "raw/owm.jsonl",
        "raw/ref.jsonl",
        "shards/owm/tokens.bin",
        "eval/gsm/test.jsonl",
        "eval/sat/test.jsonl",
    ):
        assert fa[name] != fb[name], name


def test_token_labels_line_up_with_char_spans(world):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(world / "tokenizer"))
    shard = TokenShard.open(world / "shards" / "owm")
    names = shard.label_names
    checked = {k: 0 for k in names}
    for d, doc in enumerate(_raw(world, "owm")[:40]):
        text = doc["text"]
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = shard.document(d)[:-1]
        labels = np.asarray(shard.labels[shard.doc_offsets[d] : shard.doc_offsets[d + 1] - 1])
        assert ids.tolist() == enc["input_ids"]
        by_char = char_labels(text, doc["spans"], names)
        for (s, e), lab, tid in zip(enc["offset_mapping"], labels, ids):
            piece = text[s:e]
            assert tok.decode([int(tid)]) == piece or "\ufffd" in tok.decode([int(tid)])
            nonws = [by_char[i] for i in range(s, e) if not text[i].isspace()]
            assert all(x == lab for x in nonws), (piece, names[lab])
            if nonws:
                span = next(sp for sp in doc["spans"] if sp[0] <= s + piece.index(piece.strip()[0]) < sp[1])
                assert span[2] == names[lab] and text[s:e].strip() in text[span[0] : span[1]]
            checked[names[lab]] += 1
    assert all(v > 20 for v in checked.values()), checked


def test_noise_shares_and_clean_reference(world, capsys):
    table = corpus_table(world)
    owm = table.loc["owm"]
    assert 0.3 <= owm["noise share"] <= 0.7  # smoke: noise scale 1 (mini: 0.6, ~40% noise)
    for kind in ("forum", "navigation", "timestamp_url", "gibberish", "off_topic"):
        assert owm[kind] >= 0.03, kind
    ref = TokenShard.open(world / "shards" / "ref")
    assert int(np.count_nonzero(ref.labels)) == 0
    assert all(doc["spans"] == [[0, len(doc["text"]), "content"]] for doc in _raw(world, "ref"))
    val = TokenShard.open(world / "shards" / "val_math")
    assert val.label_names == ["content", "prompt"] and 0.2 < float(np.mean(val.labels == 1)) < 0.8
    assert table.loc["owm", "documents"] == 120 and table.loc["ref", "tokens"] == ref.n_tokens
    from rho.data.__main__ import main

    assert main(["stats", str(world)]) == 0
    assert "owm" in capsys.readouterr().out


def test_ppile_contains_owm(world):
    owm = {d["text"] for d in _raw(world, "owm")}
    ppile = [d["text"] for d in _raw(world, "ppile")]
    assert owm <= set(ppile) and len(ppile) == 120 + 80
    assert (
        TokenShard.open(world / "shards" / "ppile").n_tokens
        > TokenShard.open(world / "shards" / "owm").n_tokens
    )


def test_no_eval_problem_in_any_training_corpus_and_planted_leak_found(world):
    recs = []
    for t in read_json(world / "eval" / "tasks.json"):
        for split in ("fewshot", "test"):
            recs += [
                json.loads(x)
                for x in (world / "eval" / t["name"] / f"{split}.jsonl").read_text().splitlines()
            ]
    index = build_index((r["id"], r["question"]) for r in recs)
    for name in TRAIN_CORPORA:
        text = "\n".join(d["text"] for d in _raw(world, name))
        assert index.find(text) == [], name
        templates = {t for d in _raw(world, name) for t in d["meta"].get("templates", [])}
        assert not HELDOUT_TEMPLATES & templates, name
    leak = recs[len(recs) // 2]
    doc = _raw(world, "owm")[3]["text"]
    planted = doc[:200] + "\nQuestion: " + leak["question"] + "\n" + doc[200:]
    assert [h[0] for h in index.find(planted)][:1] == [leak["id"]]


def test_general_mix_is_six_three_one_by_tokens(world):
    docs = _raw(world, "general")
    tokens = {"prose": 0, "code": 0, "owm": 0}
    for d in docs:
        tokens[d["meta"]["mix"]] += d["meta"]["n_tokens"]
    total = sum(tokens.values())
    shard = TokenShard.open(world / "shards" / "general")
    assert total + len(docs) == shard.n_tokens  # + one EOS per document
    largest = max(d["meta"]["n_tokens"] for d in docs)
    for name, w in (("prose", 0.6), ("code", 0.3), ("owm", 0.1)):
        assert abs(tokens[name] - w * total) <= largest, (name, tokens)
    assert all(
        d["source"].startswith(
            (
                "stdlib:",
                "pydoc_data",
                "numpy:",
                "pandas:",
                "torch:",
                "transformers:",
                "datasets:",
                "miniature:",
            )
        )
        for d in docs
    )


def test_tokenizer_folder_roundtrips(world):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(world / "tokenizer"))
    assert tok.eos_token == "<|endoftext|>" and tok.bos_token == "<s>" and tok.pad_token == "<pad>"
    assert len(tok) == TokenShard.open(world / "shards" / "owm").vocab_size == 512
    for name in ("owm", "general"):
        for d in _raw(world, name)[:5]:
            assert tok.decode(tok(d["text"], add_special_tokens=False)["input_ids"]) == d["text"]
    pieces = tok.convert_ids_to_tokens(tok("x = 12345", add_special_tokens=False)["input_ids"])
    assert [p for p in pieces if re.fullmatch(r"\d+", p)] == list("12345")


def test_lm_eval_suite_loads(world):
    from lm_eval.tasks import TaskManager, get_task_dict

    from rho.evaluate.harness import local_task_config

    assert sorted(p.stem for p in (world / "eval" / "lm_eval").glob("*.yaml")) == sorted(
        ["rho_code_next", "rho_prose_next", "rho_prose_ppl"]
    )
    # the YAMLs name their data relative to themselves; rho reads them as data and resolves it
    names = ["rho_prose_next", "rho_code_next", "rho_prose_ppl"]
    configs = [local_task_config(world / "eval" / "lm_eval", n) for n in names]
    assert all(Path(c["dataset_kwargs"]["data_files"]["test"]).is_file() for c in configs)
    tasks = get_task_dict(configs, TaskManager())
    by_name = {t.config.task: t for t in tasks.values()}
    mc = by_name["rho_prose_next"]
    docs = list(mc.test_docs())
    assert len(docs) == 12
    assert len(mc.doc_to_choice(docs[0])) == 4 and 0 <= mc.doc_to_target(docs[0]) < 4
    assert len(list(by_name["rho_code_next"].test_docs())) == 12
    assert by_name["rho_prose_ppl"].doc_to_target(next(iter(by_name["rho_prose_ppl"].test_docs())))


def test_rebuild_with_other_settings_refused_world_untouched(world):
    before = _fingerprint(world)
    manifest = (world / "world.json").read_bytes()
    with pytest.raises(WorldExistsError, match="overwrite=True"):
        build_world(world, "smoke", seed=5, progress=False)
    with pytest.raises(WorldExistsError, match="another tokenizer"):
        build_world(world, "smoke", seed=0, vocab_size=600, progress=False)
    assert _fingerprint(world) == before and (world / "world.json").read_bytes() == manifest
