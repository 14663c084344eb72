"""Tokenizer training, tokenization into shards with provenance labels, and shard safety."""

import numpy as np
import pytest

from rho.data.provenance import DocBuilder, ProvenanceError, char_labels, check_spans, token_labels
from rho.data.shards import ShardError, TokenShard
from rho.data.tokenize import TokenizerMismatchError, tokenize_documents
from rho.data.tokenizer import TokenizerError, load_tokenizer, train_bpe_tokenizer

NAMES = ["content", "forum", "navigation"]
TEXTS = [
    "Question: What is 12 + 7?\nAnswer: 12 + 7 = 19. The answer is 19.\n",
    "Home | Forums | Log in\nPosted by tutor42 » Mar 3, 2011\nSolve for x: 3x + 4 = 19.\n",
    "def add(a, b):\n    return a + b\n",
] * 20


def _docs():
    out = []
    for i in range(30):
        b = DocBuilder()
        b.add(f"Home | Forums | Page {i}", "navigation")
        b.add(f"Posted by user{i} » Joined: Mar {i % 28 + 1}, 2011", "forum")
        b.add(
            f"Question: What is {i} + {i + 3}?\nAnswer: {i} + {i + 3} = {2 * i + 3}. The answer is {2 * i + 3}."
        )
        text, spans = b.build()
        out.append({"text": text, "spans": spans})
    return out


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return train_bpe_tokenizer(TEXTS, 320, tmp_path_factory.mktemp("tok") / "t")


@pytest.fixture(scope="module")
def tok_b(tmp_path_factory):
    return train_bpe_tokenizer(TEXTS[:1] * 5, 300, tmp_path_factory.mktemp("tokb") / "t")


def test_trained_tokenizer_is_a_standard_folder(tok, tmp_path):
    from transformers import AutoTokenizer

    again = AutoTokenizer.from_pretrained(str(tok.name_or_path))
    assert (
        again.eos_token_id == tok.eos_token_id == 0
        and again.pad_token == "<pad>"
        and again.bos_token == "<s>"
    )
    assert len(again) == 320
    for t in TEXTS[:3] + ["unseen ünïcödé ✓ 9876"]:
        assert again.decode(again(t, add_special_tokens=False)["input_ids"]) == t
    with pytest.raises(TokenizerError, match="too small"):
        train_bpe_tokenizer(TEXTS, 100, tmp_path / "x")
    with pytest.raises(TokenizerError, match="cannot load tokenizer"):
        load_tokenizer(tmp_path / "nothing-here")


def test_token_labels_from_offsets():
    text = "ab cd\nxy z\n"
    by_char = char_labels(text, [[0, 6, "content"], [6, 11, "forum"]], NAMES)
    offsets = np.array([[0, 2], [2, 5], [5, 6], [6, 8], [8, 10], [10, 11]])
    # " cd" -> 'c' (content); "\n" whitespace only -> its first char (content); " z" -> 'z' (forum)
    assert token_labels(text, offsets, by_char).tolist() == [0, 0, 0, 1, 1, 1]
    # a token starting with the newline of the content span takes the label of its first visible char
    assert token_labels(text, np.array([[5, 8]]), by_char).tolist() == [1]
    with pytest.raises(ProvenanceError, match="unknown provenance label"):
        check_spans(text, [[0, 3, "spam"]], NAMES)
    with pytest.raises(ProvenanceError, match="out of order"):
        check_spans(text, [[4, 6, "content"], [0, 3, "content"]], NAMES)


def test_tokenize_documents_labels_and_multiprocess_identical(tok, tmp_path):
    docs = _docs()
    one = tokenize_documents(docs, tok, tmp_path / "one", label_names=NAMES, batch_size=7)
    assert one.meta["n_docs"] == 30 and one.label_names == NAMES and one.meta["eos_id"] == tok.eos_token_id
    for d, doc in enumerate(docs):
        ids = one.document(d)
        assert ids[-1] == tok.eos_token_id
        assert tok.decode(ids[:-1].tolist()) == doc["text"]
        lab = np.asarray(one.labels[one.doc_offsets[d] : one.doc_offsets[d + 1]])
        assert lab[-1] == lab[-2]  # the appended EOS takes the label of the last token
        for name, value in (("navigation", 2), ("forum", 1), ("content", 0)):
            decoded = tok.decode(ids[:-1][lab[:-1] == value].tolist())
            span = next(doc["text"][s:e] for s, e, n in doc["spans"] if n == name)
            assert "".join(decoded.split()) == "".join(span.split())
    two = tokenize_documents(docs, tok, tmp_path / "two", label_names=NAMES, num_proc=2, batch_size=4)
    assert two.shard_hash == one.shard_hash
    assert np.array_equal(np.asarray(two.labels), np.asarray(one.labels))


def test_tokenizer_mismatch_and_empty_source_leave_shard_untouched(tok, tok_b, tmp_path):
    path = tmp_path / "s"
    first = tokenize_documents(_docs(), tok, path, label_names=NAMES)
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    with pytest.raises(TokenizerMismatchError, match="overwrite=True"):
        tokenize_documents(_docs(), tok_b, path, label_names=NAMES)
    with pytest.raises(ShardError, match="empty"):
        tokenize_documents([], tok, path, label_names=NAMES)
    with pytest.raises(ProvenanceError, match="unknown provenance label"):
        tokenize_documents([{"text": "abc", "spans": [[0, 3, "nope"]]}], tok, path, label_names=NAMES)
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    assert TokenShard.open(path).shard_hash == first.shard_hash
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]
    replaced = tokenize_documents(_docs(), tok_b, path, label_names=NAMES, overwrite=True)
    assert replaced.tokenizer_hash != first.tokenizer_hash


def test_unlabelled_tokenization(tok, tmp_path):
    shard = tokenize_documents(({"text": t} for t in TEXTS[:3]), tok, tmp_path / "u")
    assert shard.labels is None and shard.meta["n_docs"] == 3
    assert shard.n_tokens == sum(len(tok(t, add_special_tokens=False)["input_ids"]) + 1 for t in TEXTS[:3])
