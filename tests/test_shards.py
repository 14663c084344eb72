import numpy as np
import pytest

from rho.data.shards import ShardError, TokenShard, write_shard


def test_write_and_read_roundtrip(tmp_path):
    s = write_shard(
        tmp_path / "s",
        [[1, 2, 3], [4, 5]],
        vocab_size=10,
        eos_id=0,
        tokenizer_hash="h",
        labels=[[0, 1, 1], [2, 2]],
        label_names=["content", "a", "b"],
    )
    assert s.tokens.tolist() == [1, 2, 3, 0, 4, 5, 0]
    assert s.labels.tolist() == [0, 1, 1, 1, 2, 2, 2]
    assert s.doc_offsets.tolist() == [0, 4, 7]
    assert s.n_blocks(3) == 2
    assert s.blocks(np.array([1, 0]), 3).tolist() == [[0, 4, 5], [1, 2, 3]]
    assert s.document(1).tolist() == [4, 5, 0]
    again = TokenShard.open(tmp_path / "s")
    assert again.shard_hash == s.shard_hash


def test_bad_input_leaves_existing_shard(tmp_path):
    write_shard(tmp_path / "s", [[1, 2]], vocab_size=10, eos_id=0, tokenizer_hash="h")
    before = TokenShard.open(tmp_path / "s").shard_hash
    with pytest.raises(ShardError, match="outside"):
        write_shard(tmp_path / "s", [[1, 99]], vocab_size=10, eos_id=0, tokenizer_hash="h")
    with pytest.raises(ShardError, match="empty"):
        write_shard(tmp_path / "s", [], vocab_size=10, eos_id=0, tokenizer_hash="h")
    assert TokenShard.open(tmp_path / "s").shard_hash == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_open_missing_names_fix(tmp_path):
    with pytest.raises(ShardError, match="build it first"):
        TokenShard.open(tmp_path / "nope")
