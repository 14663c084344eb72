"""Fault injection in the data a run reads: shards and reference scores, damaged or crafted.

Flipped bytes are caught by the stored SHA-256 before the first step; crafted files with a
consistent checksum (or written before checksums existed) are caught by range checks: token ids
outside the vocabulary, losses that no model gives, entropies above log V, all-NaN scores.  Each
refusal happens before the run directory is created.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from _helpers_train import base_config, make_slm_world

from rho.data.shards import ShardError, TokenShard
from rho.io import JSONFileError, sha256_file
from rho.models import build_model
from rho.scoring import ScoringError, load_scores, score_corpus
from rho.train import train


@pytest.fixture()
def world(tmp_path) -> Path:
    """A tokenizer, a shard and its reference scores (block size 16)."""
    return make_slm_world(tmp_path)


def _slm(tmp: Path) -> dict:
    return base_config(
        tmp, objective="slm", scores=str(tmp / "scores"), selection={"ratio": 0.6}, max_steps=2
    )


def _flip(path: Path, offset: int, mask: int = 1) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


def _rewrite_tokens(shard_dir: Path, position: int, token: int) -> None:
    """Set one token id and restore a consistent ``tokens_sha256``: a crafted, not a damaged, shard."""
    meta = json.loads((shard_dir / "meta.json").read_text())
    tokens = np.fromfile(shard_dir / "tokens.bin", dtype=meta["dtype"])
    tokens[position] = token
    tokens.tofile(shard_dir / "tokens.bin")
    meta["tokens_sha256"] = sha256_file(shard_dir / "tokens.bin")
    (shard_dir / "meta.json").write_text(json.dumps(meta))


def _rewrite_scores(scores_dir: Path, name: str, edit) -> None:
    """Edit a score array and store its new checksum (as a crafted file would)."""
    meta = json.loads((scores_dir / "meta.json").read_text())
    arr = np.fromfile(scores_dir / name, dtype=np.float32)
    edit(arr)
    arr.tofile(scores_dir / name)
    meta.setdefault("sha256", {})[name] = sha256_file(scores_dir / name)
    (scores_dir / "meta.json").write_text(json.dumps(meta))


# ------------------------------------------------------------------ shards
def test_flipped_byte_in_tokens_bin_is_refused_before_training(world) -> None:
    _flip(world / "shard" / "tokens.bin", 101)  # an id changes by one: still inside the vocabulary
    with pytest.raises(ShardError, match="SHA-256"):
        train(base_config(world))
    assert not (world / "run").exists()


def test_flipped_byte_in_tokens_bin_is_refused_before_scoring(world) -> None:
    _flip(world / "shard" / "tokens.bin", 7)
    ref = build_model("llama-smoke", vocab_size=320, seed=0)
    with pytest.raises(ShardError, match="SHA-256"):
        score_corpus(ref, TokenShard.open(world / "shard"), world / "s2", block_size=16, progress=False)
    assert not (world / "s2").exists()


def test_out_of_vocabulary_id_is_refused_with_the_id_and_the_shard(world) -> None:
    _rewrite_tokens(world / "shard", 37, 400)  # the model has 320 embeddings
    with pytest.raises(ShardError, match=r"token id 400 at position 37") as err:
        train(base_config(world))
    assert str(world / "shard") in str(err.value)
    assert not (world / "run").exists()


def test_corrupt_shard_meta_json_names_the_file(world) -> None:
    (world / "shard" / "meta.json").write_text('{"format": "rho-shard-v1", ')
    with pytest.raises(JSONFileError, match=str(world / "shard" / "meta.json")):
        TokenShard.open(world / "shard")


def test_damaged_doc_offsets_name_the_file(world) -> None:
    (world / "shard" / "doc_offsets.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ShardError, match="doc_offsets.npy"):
        TokenShard.open(world / "shard")


# ------------------------------------------------------------------ scores
def test_scores_store_checksums_of_their_arrays(world) -> None:
    meta = json.loads((world / "scores" / "meta.json").read_text())
    assert meta["sha256"] == {n: sha256_file(world / "scores" / n) for n in ("loss.bin", "entropy.bin")}


@pytest.mark.parametrize("name", ["loss.bin", "entropy.bin"])
def test_flipped_byte_in_a_score_array_is_refused(world, name) -> None:
    _flip(world / "scores" / name, 4 * 20)  # the lowest mantissa bit of token 20: a plausible value
    with pytest.raises(ScoringError, match=f"{name}.*SHA-256"):
        train(_slm(world))
    assert not (world / "run").exists()


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("loss.bin", -1e30, "outside"),
        ("loss.bin", 1e30, "outside"),
        ("loss.bin", -0.5, "outside"),
        ("loss.bin", np.inf, "finite loss is expected"),
        ("entropy.bin", 7.0, "outside"),  # log(320) = 5.77
        ("entropy.bin", np.nan, "finite entropy is expected"),
    ],
)
def test_scores_outside_their_range_are_refused(world, name, value, match) -> None:
    _rewrite_scores(world / "scores", name, lambda a: a.__setitem__(35, value))
    with pytest.raises(ScoringError, match=match):
        train(_slm(world))
    assert not (world / "run").exists()


def test_all_nan_scores_are_refused_as_such(world) -> None:
    _rewrite_scores(world / "scores", "loss.bin", lambda a: a.fill(np.nan))
    with pytest.raises(ScoringError, match="no finite value"):
        train(_slm(world))
    assert not (world / "run").exists()


def test_scores_without_checksums_still_load_after_a_range_check(world) -> None:
    meta = json.loads((world / "scores" / "meta.json").read_text())
    del meta["sha256"]
    (world / "scores" / "meta.json").write_text(json.dumps(meta))
    shard = TokenShard.open(world / "shard")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scores = load_scores(world / "scores", shard, block_size=16)
    assert any("no checksums" in str(w.message) for w in caught)
    assert np.isfinite(scores.loss[1:16]).all()


def test_corrupt_scores_meta_json_names_the_file(world) -> None:
    (world / "scores" / "meta.json").write_text("{")
    with pytest.raises(JSONFileError, match=str(world / "scores" / "meta.json")):
        load_scores(world / "scores", TokenShard.open(world / "shard"))
